"""HTML report (distfold.report.html): page content, PNGs, input errors, and the
page rendered for real in headless Chromium (viewer canvas drawn, heatmaps
painted, table values, no network, no script error)."""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from distfold.errors import InputError
from distfold.structure.metrics import distance_matrix, lddt
from distfold.report.html import ASSETS, build_index, build_report, flatten_metrics, format_value, viewer_version
from distfold.structure.io import read_chain

DATA = Path(__file__).parent / "data"
HELIX = DATA / "chains" / "c55406f94174e.pdb.gz"  # 4GCN A, 127 residues
LONG = DATA / "report" / "cc769d32d3ae9_ca.pdb.gz"  # 4JSV A, 1058 residues, 2 chain breaks
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "report"


# ---------------------------------------------------------------- helpers


def _noisy_model(ref: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """A model in the reference frame (so already superposed): reference plus
    smooth (correlated) noise, as a real model's errors are."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(scale=scale, size=ref.shape)
    kernel = np.ones(7) / 7.0
    noise = np.stack([np.convolve(noise[:, k], kernel, mode="same") for k in range(3)], axis=1) * math.sqrt(7)
    return ref + noise


def _comparison(path: Path, scale: float = 1.5):
    chain = read_chain(path)
    ref = chain.ca
    model = _noisy_model(ref, scale)
    score, per_res = lddt(distance_matrix(model), distance_matrix(ref))
    rmsd = float(np.sqrt(((model - ref) ** 2).sum(1).mean()))
    metrics = {"rmsd": rmsd, "lddt": score, "n_residues": len(ref), "status": "ok",
               "distance_errors": {"mae": float(np.abs(distance_matrix(model) - distance_matrix(ref)).mean()),
                                   "pearson": float("nan")},
               "lddt_per_residue": [float(v) for v in per_res]}
    return chain, model, per_res, metrics


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("headless chromium is not installed, and CI=true: .ci/run must install Debian's chromium")
        pytest.skip("headless chromium not installed (apt-get install chromium); needed to render the HTML report")
    return exe


def _chromium_args(exe: str, profile: Path) -> list[str]:
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            "--enable-unsafe-swiftshader", f"--user-data-dir={profile}"]


def _artifact_dir(tmp_path: Path) -> Path:
    """Screenshots are test artifacts: artifacts/report/ (gitignored), or the tmp dir if not writable."""
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        return ARTIFACTS
    except OSError:
        return tmp_path


def render_selftest(page: Path, tmp_path: Path, screenshot: str | None = None, height: int = 2000) -> dict:
    """Open the page in headless Chromium and return the JSON its script wrote
    into <pre id="selftest"> after drawing; with ``screenshot``, the same launch
    also saves <artifacts>/<screenshot>.png (its path under the "screenshot" key)."""
    exe = _chromium()
    args = [*_chromium_args(exe, tmp_path / f"profile-{page.stem}"), "--dump-dom"]
    shot = None
    if screenshot:
        shot = _artifact_dir(tmp_path) / f"{screenshot}.png"
        shot.unlink(missing_ok=True)
        args += [f"--screenshot={shot}", f"--window-size=1280,{height}", "--hide-scrollbars"]
    proc = subprocess.run([*args, page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="selftest">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no selftest block in the rendered DOM (rc {proc.returncode}): {proc.stderr[-2000:]}"
    text = html.unescape(m.group(1))
    assert text != "pending", "the page's script did not finish (selftest still 'pending')"
    st = json.loads(text)
    if shot is not None:
        assert shot.exists() and shot.stat().st_size > 10_000, "chromium wrote no screenshot"
        st["screenshot"] = str(shot)
    return st


def assert_rendered(st: dict, *, n_model: int, n_reference: int, maps: tuple[str, ...]) -> None:
    assert st["errors"] == [], st["errors"]
    assert st["resources"] == [], f"the page fetched resources: {st['resources']}"
    v = st["viewer"]
    assert v["canvas"] and v["width"] > 0 and v["height"] > 0
    assert v["atoms"] == {"model": n_model, "reference": n_reference}
    # A drawn scene: a real share of the canvas differs from the white background,
    # in the model's colour (and the reference's, when there is one).
    assert v["nonBackground"] > 0.005 * v["pixels"], v
    if n_reference:
        assert v["modelColoured"] > 200 and v["referenceColoured"] > 200, v
    assert set(st["heatmaps"]) == set(maps)
    for name, h in st["heatmaps"].items():
        assert h["present"] and h["width"] == h["height"] == n_model, (name, h)
        assert h["painted"] == n_model * n_model, (name, h)
        assert h["distinctColours"] > 20, (name, h)  # a real map, not one flat colour


def assert_table_matches(st: dict, metrics: dict) -> None:
    """The table's exact values are those of json.dumps(metrics) (as --json writes),
    and every displayed number is that value rounded."""
    expected = dict(flatten_metrics(json.loads(json.dumps(metrics))))
    got = {row["key"]: row for row in st["table"]}
    assert set(got) == set(expected)
    for key, value in expected.items():
        exact = json.loads(got[key]["value"])
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(exact, float) and math.isnan(exact), key
            assert got[key]["text"] == "n/a"
            continue
        assert exact == value and type(exact) is type(value), (key, exact, value)
        if isinstance(value, float):
            assert float(got[key]["text"]) == pytest.approx(value, rel=1e-3, abs=1e-3), (key, got[key]["text"])
        else:
            assert got[key]["text"] == format_value(value)


# ---------------------------------------------------------------- no browser


def test_vendored_viewer_is_pinned_and_licensed():
    js = (ASSETS / "3Dmol-min.js").read_bytes()
    readme = (ASSETS / "README.md").read_text()
    assert viewer_version() == "2.5.5"
    assert "3dmol v2.5.5" in (ASSETS / "3Dmol-min.js.LICENSE.txt").read_text()
    # unmodified: the hash recorded in the README is the file's
    assert hashlib.sha256(js).hexdigest() in readme
    assert f"{len(js):,} bytes" in readme
    lic = (ASSETS / "LICENSE").read_text()
    assert "BSD-3-Clause" in lic and "Redistribution and use in source and binary forms" in lic


def test_package_data_ships_the_assets():
    """A non-editable install must carry report/assets/ (a data folder, not a package)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = cfg["package-data"]["distfold.report"]
    src = root / cfg["package-dir"]["distfold"] / "report"
    shipped = {p.relative_to(src).as_posix() for g in globs for p in src.glob(g) if p.is_file()}
    assert {"assets/3Dmol-min.js", "assets/LICENSE", "assets/VERSION",
            "assets/README.md", "assets/3Dmol-min.js.LICENSE.txt"} <= shipped


def test_compare_page_content_and_pngs(tmp_path):
    chain, model, per_res, metrics = _comparison(HELIX)
    out = build_report(tmp_path / "r" / "page.html", sequence=chain.sequence, model_coords=model,
                       reference_coords=chain.ca, lddt_per_residue=per_res, confidence=per_res * 100,
                       metrics=metrics, residue_ids=chain.residue_ids, title="4GCN A", info={"model": "m.pdb"})
    text = out.html.read_text()
    assert out.size_bytes == len(text.encode())
    # self-contained: no external src/href, a CSP that forbids fetching
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//)', text)
    assert "default-src 'none'" in text
    assert text.count("<script") == 4 and "3dmol v2.5.5" in text
    # every scalar metric in the table with its exact JSON text; lists are not tabulated
    for key, value in flatten_metrics(metrics):
        assert f'data-key="{key}" data-value="{html.escape(json.dumps(value), quote=True)}"' in text
    assert "lddt_per_residue" not in re.findall(r'data-key="([^"]+)"', text)
    names = sorted(p.name for p in out.pngs)
    assert names == ["page.distances.png", "page.per_residue.png", "page.traces.png"]
    for p in out.pngs:
        assert p.parent == out.html.parent and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_one_error_and_writes_nothing(tmp_path):
    chain = read_chain(HELIX)
    n = len(chain)
    page = tmp_path / "bad.html"
    cases = [
        (dict(model_coords=chain.ca[:-1]), "model coordinates"),
        (dict(model_coords=chain.ca, reference_coords=chain.ca[:, :2]), "reference coordinates"),
        (dict(model_coords=chain.ca, predicted_distances=np.zeros((n, n - 1))), "predicted distances"),
        (dict(model_coords=chain.ca, confidence=np.zeros(n + 1)), "confidence"),
        (dict(model_coords=chain.ca, lddt_per_residue=np.full(n, 80.0)), "lDDT"),
        (dict(model_coords=np.where(np.arange(n)[:, None] == 3, np.nan, chain.ca)), "NaN"),
    ]
    for kwargs, word in cases:
        with pytest.raises(InputError, match=word):
            build_report(page, sequence=chain.sequence, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_metric_flattening_and_format():
    m = {"rmsd": 1.23456, "gdt": {"ts": 87.5, "ha": 70.0}, "n": 5, "ok": True, "kind": "TM-score",
         "per_residue": [1.0, 2.0], "x": np.float32(0.5), "none": None}
    assert flatten_metrics(m) == [("rmsd", 1.23456), ("gdt.ts", 87.5), ("gdt.ha", 70.0), ("n", 5), ("ok", True),
                                  ("kind", "TM-score"), ("x", 0.5), ("none", None)]
    assert [format_value(v) for v in (1.23456, 87.5, 12345.67, 5, float("nan"), None, True)] == \
        ["1.235", "87.5", "12345.7", "5", "n/a", "null", "true"]


def test_index_page_links_records(tmp_path):
    out = build_index(tmp_path / "index.html",
                      [{"name": "a", "href": "a/report.html", "tm_score": 0.5, "rmsd": 2.0},
                       {"name": "b<", "href": None, "tm_score": 0.25, "rmsd": 4.0}], title="val")
    text = out.html.read_text()
    assert '<a href="a/report.html">a</a>' in text and "b&lt;" in text
    assert re.findall(r'data-key="([^"]+)"', text) == ["tm_score", "rmsd"] * 2
    assert 'data-value="0.25"' in text


# ---------------------------------------------------------------- browser


class OracleModel:
    """Stands in for a trained model in ``run_predict``: noisy true distances of
    the chains it knows, with a variance that grows with separation."""

    config = {"crop": 512}

    def __init__(self, chains):
        self.chains = {c.sequence: c for c in chains}

    def predict(self, seqs, lengths=None):
        out = []
        for k, seq in enumerate(seqs):
            d = distance_matrix(_noisy_model(self.chains[seq].ca, 1.0, seed=k))
            sep = np.abs(np.subtract.outer(np.arange(len(seq)), np.arange(len(seq))))
            out.append({"distance": d, "variance": (0.2 + 0.05 * sep).astype(np.float32)})
        return out


@pytest.mark.browser
def test_predict_record_page_renders_in_chromium(tmp_path):
    """A page from the files of a real `run_predict` record: no reference, the model
    coloured by confidence, the predicted map only, the scores file in the table."""
    from distfold.pipeline.predict import run_predict
    from distfold.report.html import write_prediction_reports
    from distfold.structure.sequence import parse_fasta_text

    chain = read_chain(HELIX)
    records = parse_fasta_text(f">helix 4GCN A\n{chain.sequence}\n")
    summary = run_predict(records, tmp_path / "out", model=OracleModel([chain]), reconstruct="classical")
    assert summary["counts"]["ok"] == 1
    pages = write_prediction_reports(summary)
    assert pages == {"helix": "helix.html"}
    page = tmp_path / "out" / "helix.html"
    assert sorted(p.name for p in page.parent.glob("helix.*.png")) == \
        ["helix.distances.png", "helix.per_residue.png", "helix.traces.png"]
    text = page.read_text()
    assert 'data-default-colour="confidence"' in text and 'id="show-ref"' not in text
    st = render_selftest(page, tmp_path, screenshot="predict_127")
    assert_rendered(st, n_model=len(chain), n_reference=0, maps=("map-pred",))
    # coloured by confidence bands, not the single model colour
    assert st["viewer"]["modelColoured"] < 0.05 * st["viewer"]["nonBackground"], st["viewer"]
    assert st["viewer"]["confidenceColoured"] > 0.5 * st["viewer"]["nonBackground"], st["viewer"]
    assert set(st["colourModes"]) == {"single", "confidence"}
    assert st["colourModes"]["single"]["modelColoured"] > 0.15 * st["viewer"]["nonBackground"], st["colourModes"]
    scores = json.loads((tmp_path / "out" / "helix.scores.json").read_text())
    assert_table_matches(st, {k: v for k, v in scores.items() if k != "sequence"})
    assert st["perResidue"]["series"] == ["confidence"]


def _model_file(chain, path: Path, scale: float, seed: int = 0) -> Path:
    """A model of ``chain`` as a distfold predict output would be: noisy, moved away
    (rotated and shifted), numbered 1..L, confidence 0-100 in the B-factor column."""
    from scipy.spatial.transform import Rotation

    from distfold.structure.io import write_ca_trace

    rng = np.random.default_rng(seed)
    moved = _noisy_model(chain.ca, scale, seed) @ Rotation.random(random_state=seed).as_matrix().T + [12.0, -30.0, 7.0]
    conf = np.clip(75 + rng.normal(scale=12, size=len(chain)), 0, 100)
    write_ca_trace(path, moved, chain.sequence, conf)
    return path


def _compare_cli(*args):
    from click.testing import CliRunner

    from distfold.cli.main import cli

    res = CliRunner().invoke(cli, ["compare", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def _page_data(page: Path) -> dict:
    m = re.search(r'<script type="application/json" id="distfold-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(m.group(1))


def _check_compare_page(page: Path, result: dict, tmp_path: Path, n: int, screenshot: str | None = None) -> dict:
    """Rendered without errors; the table equals --json; the page's model really is
    superposed onto its reference (its RMSD there is the --json RMSD)."""
    data = _page_data(page)
    x, y = np.array(data["model"]), np.array(data["reference"])
    assert len(x) == len(y) == n
    assert float(np.sqrt(((x - y) ** 2).sum(1).mean())) == pytest.approx(result["rmsd"], abs=2e-3)
    st = render_selftest(page, tmp_path, screenshot)
    assert_rendered(st, n_model=n, n_reference=n, maps=("map-pred", "map-true", "map-diff"))
    assert_table_matches(st, result)
    assert st["perResidue"] == {"present": True, "series": ["confidence", "lDDT × 100"]}
    # colouring on demand: model colour by default; by confidence / lDDT the model's
    # pixels take the band colours instead
    modes = st["colourModes"]
    assert set(modes) == {"single", "confidence", "lddt"}
    assert modes["single"]["modelColoured"] > 200
    for mode in ("confidence", "lddt"):
        assert modes[mode]["confidenceColoured"] > 200, modes
        assert modes[mode]["modelColoured"] < 0.2 * modes["single"]["modelColoured"], modes
    return st


@pytest.mark.browser
def test_compare_html_renders_and_matches_json(tmp_path):
    """`distfold compare MODEL REF --json --html page.html`: the page shows the same numbers."""
    ref = read_chain(HELIX)
    model = _model_file(ref, tmp_path / "model.pdb", scale=1.5)
    page = tmp_path / "report" / "page.html"
    res = _compare_cli(model, HELIX, "--json", "--html", page)
    result = json.loads(res.stdout)
    assert res.stderr == ""  # silent under --json
    assert sorted(p.name for p in page.parent.iterdir()) == \
        ["page.distances.png", "page.html", "page.per_residue.png", "page.traces.png"]
    st = _check_compare_page(page, result, tmp_path, len(ref), screenshot="compare_127")
    print(f"127-residue page: {page.stat().st_size} bytes; screenshot {st['screenshot']}")


@pytest.mark.browser
def test_1000_residue_comparison_page_renders(tmp_path):
    """A 1058-residue comparison page (two chain breaks in the reference) renders without
    errors. The scores come from the distance-matrix metrics here, not `compare`'s
    TM-score/GDT search, to keep the test fast; the compare path is tested above."""
    from distfold.report.html import comparison_report
    from distfold.geometry.superpose import superposed_rmsd

    ref = read_chain(LONG)
    assert len(ref) > 1000
    model = read_chain(_model_file(ref, tmp_path / "long.pdb", scale=2.0))
    score, per_res = lddt(distance_matrix(model.ca), distance_matrix(ref.ca))
    result = {"status": "ok", "rmsd": superposed_rmsd(model.ca, ref.ca), "lddt": score,
              "lddt_per_residue": [float(v) for v in per_res], "n_aligned": len(ref)}
    page = comparison_report(tmp_path / "long.html", model, ref, result).html
    st = _check_compare_page(page, result, tmp_path, len(ref), screenshot="compare_1058")
    print(f"{len(ref)}-residue page: {page.stat().st_size} bytes; viewer {st['viewer']}; screenshot {st['screenshot']}")


def test_compare_folders_html_index(tmp_path):
    """Two folders: one page per scored pair and an index linking them."""
    small = read_chain(DATA / "chains" / "c70b106ab8731.pdb.gz")
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    for name, seed in (("a", 0), ("b", 1)):
        _model_file(small, tmp_path / "m" / f"{name}.pdb", scale=1.0, seed=seed)
        shutil.copy(DATA / "chains" / "c70b106ab8731.pdb.gz", tmp_path / "r" / f"{name}.pdb.gz")
    _model_file(small, tmp_path / "m" / "lonely.pdb", scale=1.0)
    res = _compare_cli(tmp_path / "m", tmp_path / "r", "--json", "--html", tmp_path / "pages")
    rows = {r["model"].rsplit("/", 1)[-1]: r for r in json.loads(res.stdout)["rows"]}
    assert sorted(p.name for p in (tmp_path / "pages").glob("*.html")) == ["a.html", "b.html", "index.html"]
    index = (tmp_path / "pages" / "index.html").read_text()
    assert '<a href="a.html">a</a>' in index and '<a href="b.html">b</a>' in index and ">lonely</td>" in index
    assert f'data-key="tm_score" data-value="{json.dumps(rows["a.pdb"]["tm_score"])}"' in index
    page_a = (tmp_path / "pages" / "a.html").read_text()
    assert f'data-key="rmsd" data-value="{json.dumps(rows["a.pdb"]["rmsd"])}"' in page_a


def test_predict_cli_html_writes_one_page_per_record(tmp_path, monkeypatch):
    """`distfold predict --html`: one page (and its PNGs) per complete record, named in --json;
    a failed record gets none. The model is the oracle above (loading is not under test here)."""
    from click.testing import CliRunner

    import distfold.pipeline.predictor
    from distfold.cli.main import cli

    chains = [read_chain(HELIX), read_chain(DATA / "chains" / "c70b106ab8731.pdb.gz")]
    monkeypatch.setattr(distfold.pipeline.predictor, "load_model", lambda model_dir, device="cpu": (OracleModel(chains), tmp_path))
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">helix\n{chains[0].sequence}\n>small\n{chains[1].sequence}\n>bad\nMKT1AY\n")
    out = tmp_path / "out"
    args = ["predict", "-i", str(fasta), "-o", str(out), "--reconstruct", "classical", "--device", "cpu", "--html"]
    res = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert res.exit_code == 1  # the bad record
    summary = json.loads(res.stdout)
    pages = {r["id"]: r.get("html") for r in summary["records"]}
    assert pages == {"bad": None, "small": "small.html", "helix": "helix.html"}
    for rid in ("small", "helix"):
        text = (out / f"{rid}.html").read_text()
        scores = json.loads((out / f"{rid}.scores.json").read_text())
        assert f'data-key="mean_confidence" data-value="{json.dumps(scores["mean_confidence"])}"' in text
        assert (out / f"{rid}.distances.png").is_file() and (out / f"{rid}.per_residue.png").is_file()
    # a rerun skips the records and still (re)writes their pages; the text summary says nothing is wrong but 'bad'
    (out / "small.html").unlink()
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 1 and (out / "small.html").is_file()
    assert "report" in res.stderr and "failed: bad:" in res.stdout and "report:" not in res.stdout


def test_evaluate_html_index_links_one_page_per_chain(tmp_path, monkeypatch):
    """`distfold evaluate --html`: index.html links pages/<id>.html per chain; each page's
    table is the chain's row of metrics.json and its traces are superposed (page RMSD =
    the row's model.rmsd). A masked (unobserved) stretch is left out of the page."""
    from click.testing import CliRunner

    import distfold.pipeline.predictor
    from distfold.cli.main import cli
    from distfold.data.dataset import write_dataset

    uids = ("c70b106ab8731",)  # one small chain keeps evaluate fast; the index logic is per row
    chains = [read_chain(DATA / "chains" / f"{u}.pdb.gz") for u in uids]
    coords = [c.ca.astype(np.float32) for c in chains]
    coords[0][[10, 11, 12]] = np.nan  # unobserved residues
    records = [{"id": u, "sequence": c.sequence, "source": f"{u}.pdb.gz", "chain": c.chain_id, "family": u,
                "split": "val", "weight": 1.0, "duplicates": []} for u, c in zip(uids, chains)]
    ds = write_dataset(tmp_path / "ds", records, coords)
    monkeypatch.setattr(distfold.pipeline.predictor, "load_model", lambda model_dir, device="cpu": (OracleModel(chains), tmp_path))
    out = tmp_path / "eval"
    res = CliRunner().invoke(cli, ["evaluate", str(ds), "-o", str(out), "--no-prior", "--reconstruct", "classical",
                                   "--device", "cpu", "--html", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    index = (out / "index.html").read_text()
    for row in metrics["chains"]:
        cid = row["id"]
        assert f'<a href="pages/{cid}.html">{cid}</a>' in index
        page = out / "pages" / f"{cid}.html"
        text = page.read_text()
        for key, value in flatten_metrics(row):
            assert f'data-key="{key}" data-value="{html.escape(json.dumps(value), quote=True)}"' in text, key
        data = _page_data(page)
        x, y = np.array(data["model"]), np.array(data["reference"])
        assert len(x) == row["n_observed"]
        assert float(np.sqrt(((x - y) ** 2).sum(1).mean())) == pytest.approx(row["model"]["rmsd"], abs=2e-3)
    assert 'href="metrics.json"' in index and 'href="distance_maps.png"' in index


def test_browser_tests_skip_only_outside_ci(monkeypatch):
    """No chromium: skip with a reason on a developer machine, fail under CI=true."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not installed"):
        _chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _chromium()


def test_compare_html_into_a_directory_is_one_error(tmp_path):
    """--html naming an existing directory: one-line error, exit 1, nothing written."""
    from click.testing import CliRunner

    from distfold.cli.main import cli

    small = DATA / "chains" / "c70b106ab8731.pdb.gz"
    (tmp_path / "dir").mkdir()
    res = CliRunner().invoke(cli, ["compare", str(small), str(small), "--html", str(tmp_path / "dir")])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == \
        f"Error: {tmp_path / 'dir'}: is a directory; give the report page a file name (e.g. report.html)"
    assert "Traceback" not in res.output and list((tmp_path / "dir").iterdir()) == []


def test_secondary_structure_tracks_along_the_sequence(tmp_path):
    from distfold.structure.secondary import segments

    chain, model, per_res, metrics = _comparison(HELIX)
    n = len(chain)
    pred = ("CCHHHHHHHHCCEEEECC" * 10)[:n]
    ref = ("-CHHHHHHHCCCEEEEEC" * 10)[:n]
    out = build_report(tmp_path / "ss.html", sequence=chain.sequence, model_coords=model, reference_coords=chain.ca,
                       metrics=metrics, write_png=False,
                       secondary_structure={"predicted": pred, "reference DSSP": ref})
    text = out.html.read_text()
    assert "<h2>Secondary structure</h2>" in text
    tracks = re.findall(r'<g class="ss-track" data-name="([^"]+)" data-ss="([^"]+)">(.*?)</g>', text, re.S)
    assert [(name, ss) for name, ss, _ in tracks] == [("predicted", pred), ("reference DSSP", ref)]
    for (_, ss, body) in tracks:
        assert re.findall(r'data-state="([HE])"', body) == [s.state for s in segments(ss, "HE")]
    plain = build_report(tmp_path / "plain.html", sequence=chain.sequence, model_coords=model, write_png=False)
    assert "Secondary structure" not in plain.html.read_text()
    with pytest.raises(InputError, match="secondary structure 'predicted': 3 characters"):
        build_report(tmp_path / "bad.html", sequence=chain.sequence, model_coords=model, write_png=False,
                     secondary_structure={"predicted": "HHH"})
    assert not (tmp_path / "bad.html").exists()


def test_predict_page_shows_the_predicted_ss(tmp_path):
    from distfold.pipeline.predict import run_predict
    from distfold.report.html import write_prediction_reports
    from distfold.structure.sequence import parse_fasta_text

    chain = read_chain(HELIX)

    class WithSS(OracleModel):
        def predict(self, sequences, lengths=None):
            out = super().predict(sequences, lengths)
            for s, o in zip(sequences, out):
                p = np.full((len(s), 3), 0.1, np.float32)
                p[:, 0] = 0.8
                p[:5] = [0.1, 0.1, 0.8]
                o["ss_probs"] = p
            return out

    summary = run_predict(parse_fasta_text(f">helix\n{chain.sequence}\n"), tmp_path / "out", model=WithSS([chain]),
                          reconstruct="classical")
    write_prediction_reports(summary)
    text = (tmp_path / "out" / "helix.html").read_text()
    want = "CCCCC" + "H" * (len(chain) - 5)
    assert f'data-name="predicted" data-ss="{want}"' in text
    assert 'data-key="ss"' not in text  # the string is drawn, not tabulated


# ---------------------------------------------------------------- evaluation plots (distfold.report.plots)


def test_evaluation_plots_keep_every_label_inside_the_figure_and_off_the_other_axes(tmp_path, monkeypatch):
    """The plots place their axes at fixed margins (no layout engine): with 4-digit residue
    numbers, long titles and small log values, no text may leave the figure, and no axes'
    labels may run into another axes."""
    from distfold.report import plots

    drawn = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (drawn.append(fig), save(fig, path))[1])
    rng = np.random.default_rng(0)
    panels = []
    for n in (1200, 30):
        x = np.cumsum(rng.normal(size=(n, 3)), axis=0) * 2.0
        true = distance_matrix(x)
        true[:5] = true[:, :5] = np.nan
        panels.append({"title": f"worst lDDT: c0123456789ab (L={n}, lDDT 0.123, TM 0.456)", "true": true,
                       "pred": np.nan_to_num(true, nan=10.0) * 1.1})
    plots.distance_maps(tmp_path / "maps.png", panels)
    edges = np.arange(-30, 30.25, 0.5)
    plots.error_histogram(tmp_path / "hist.png", edges, {"model": rng.integers(0, 10 ** 6, len(edges) - 1),
                                                         "prior": rng.integers(0, 10 ** 6, len(edges) - 1)},
                          {"model": 8.43, "prior": 8.62}, {"model": 1234567, "prior": 1234567})
    plots.error_by_separation(tmp_path / "sep.png", {"model": rng.random(1500) * 1e4, "prior": rng.random(1500) * 1e4},
                              np.full(1500, 1000.0))
    conf = rng.random(20000) * 100
    table = [{"n": 1, "mean_predicted": c, "mean_observed": c + 5} for c in range(5, 100, 10)]
    plots.calibration(tmp_path / "cal.png", conf, np.clip(conf + rng.normal(0, 10, len(conf)), 0, 100), table)
    rows = [{"kind": "train", "step": s, "loss": 1e-4 / (1 + s), "grad_norm": 1e5 / (1 + s)} for s in range(0, 20001, 500)]
    rows += [{"kind": "val", "step": s, "mae": 12.5 - s / 1e4, "prior_mae": 13.0, "lddt": 0.3} for s in range(0, 20001, 5000)]
    plots.training_curves(tmp_path / "curves.png", rows)
    assert len(drawn) == 5
    for fig in drawn:
        renderer = fig.canvas.get_renderer()
        width, height = fig.bbox.width, fig.bbox.height
        # an axes' tight box holds what it draws: ticks within its limits, labels, title, legend
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
        for ax, bb in zip(fig.axes, boxes):
            assert bb.x0 >= -1 and bb.y0 >= -1 and bb.x1 <= width + 1 and bb.y1 <= height + 1, \
                (ax.get_title(loc="left") or ax.get_title() or ax.get_ylabel(), bb)
        # the left map's title runs on over the right one by design: titles' widths left out here
        inner = [ax.get_tightbbox(renderer, for_layout_only=True) for ax in fig.axes]
        for i, a in enumerate(inner):
            for b in inner[i + 1:]:
                overlap = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
                assert min(overlap) <= 1, (a, b)
