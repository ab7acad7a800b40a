"""HTML report (distfold.report): page content, PNGs, input errors, and the
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
from distfold.metrics import distance_matrix, lddt
from distfold.report import ASSETS, build_index, build_report, flatten_metrics, format_value, viewer_version
from distfold.structure import read_chain

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


def render_selftest(page: Path, tmp_path: Path) -> dict:
    """Open the page in headless Chromium and return the JSON its script wrote
    into <pre id="selftest"> after drawing."""
    exe = _chromium()
    profile = tmp_path / f"profile-{page.stem}-dom"
    proc = subprocess.run([*_chromium_args(exe, profile), "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="selftest">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no selftest block in the rendered DOM (rc {proc.returncode}): {proc.stderr[-2000:]}"
    text = html.unescape(m.group(1))
    assert text != "pending", "the page's script did not finish (selftest still 'pending')"
    return json.loads(text)


def screenshot(page: Path, tmp_path: Path, name: str, height: int = 2000) -> Path:
    """Save a screenshot as a test artifact (artifacts/report/, gitignored; tmp dir if not writable)."""
    exe = _chromium()
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out_dir = ARTIFACTS
    except OSError:
        out_dir = tmp_path
    out = out_dir / f"{name}.png"
    subprocess.run([*_chromium_args(exe, tmp_path / f"profile-{name}-shot"), f"--screenshot={out}",
                    f"--window-size=1280,{height}", "--hide-scrollbars", page.resolve().as_uri()],
                   capture_output=True, text=True, timeout=180)
    assert out.exists() and out.stat().st_size > 10_000, "chromium wrote no screenshot"
    return out


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
    """A non-editable install must carry report_assets/ (a data folder, not a package)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = cfg["package-data"]["distfold"]
    src = root / cfg["package-dir"]["distfold"]
    shipped = {p.relative_to(src).as_posix() for g in globs for p in src.glob(g) if p.is_file()}
    assert {"report_assets/3Dmol-min.js", "report_assets/LICENSE", "report_assets/VERSION",
            "report_assets/README.md", "report_assets/3Dmol-min.js.LICENSE.txt"} <= shipped


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


@pytest.mark.browser
def test_compare_page_renders_in_chromium(tmp_path):
    chain, model, per_res, metrics = _comparison(HELIX)
    out = build_report(tmp_path / "compare.html", sequence=chain.sequence, model_coords=model,
                       reference_coords=chain.ca, lddt_per_residue=per_res, confidence=per_res * 100,
                       metrics=metrics, residue_ids=chain.residue_ids, title="4GCN A (noisy model)")
    st = render_selftest(out.html, tmp_path)
    assert_rendered(st, n_model=len(chain), n_reference=len(chain), maps=("map-pred", "map-true", "map-diff"))
    assert_table_matches(st, metrics)
    assert st["perResidue"] == {"present": True, "series": ["confidence", "lDDT × 100"]}
    screenshot(out.html, tmp_path, "compare_127")


class OracleModel:
    """Stands in for a trained model in ``run_predict``: noisy true distances of
    the chains it knows, with a variance that grows with separation."""

    config = {"crop": 512}

    def __init__(self, chains):
        self.chains = {c.sequence: c for c in chains}

    def predict(self, seqs):
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
    from distfold.predict import run_predict
    from distfold.report import write_prediction_reports
    from distfold.sequence import parse_fasta_text

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
    st = render_selftest(page, tmp_path)
    assert_rendered(st, n_model=len(chain), n_reference=0, maps=("map-pred",))
    # coloured by confidence bands, not the single model colour
    assert st["viewer"]["modelColoured"] < 0.05 * st["viewer"]["nonBackground"], st["viewer"]
    scores = json.loads((tmp_path / "out" / "helix.scores.json").read_text())
    assert_table_matches(st, {k: v for k, v in scores.items() if k != "sequence"})
    assert st["perResidue"]["series"] == ["confidence"]
    screenshot(page, tmp_path, "predict_127")


@pytest.mark.browser
def test_1000_residue_comparison_page_renders(tmp_path):
    chain, model, per_res, metrics = _comparison(LONG, scale=2.0)
    assert len(chain) > 1000
    out = build_report(tmp_path / "long.html", sequence=chain.sequence, model_coords=model,
                       reference_coords=chain.ca, lddt_per_residue=per_res, metrics=metrics,
                       residue_ids=chain.residue_ids, title="4JSV A (1058 residues)")
    st = render_selftest(out.html, tmp_path)
    assert_rendered(st, n_model=len(chain), n_reference=len(chain), maps=("map-pred", "map-true", "map-diff"))
    assert_table_matches(st, metrics)
    shot = screenshot(out.html, tmp_path, "compare_1058")
    print(f"1058-residue page: {out.size_bytes} bytes; screenshot {shot}")


def test_predict_cli_html_writes_one_page_per_record(tmp_path, monkeypatch):
    """`distfold predict --html`: one page (and its PNGs) per complete record, named in --json;
    a failed record gets none. The model is the oracle above (loading is not under test here)."""
    from click.testing import CliRunner

    import distfold.predict
    from distfold.cli.main import cli

    chains = [read_chain(HELIX), read_chain(DATA / "chains" / "c70b106ab8731.pdb.gz")]
    monkeypatch.setattr(distfold.predict, "load_model", lambda model_dir, device="cpu": (OracleModel(chains), tmp_path))
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
