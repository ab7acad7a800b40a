"""distfold evaluate on a small real dataset (tests/data/chains), with a stand-in model
in-process and, through the CLI, with a tiny saved checkpoint; its coordinate scores
must equal `distfold compare` on the structures it writes."""

import csv
import gc
import json
from pathlib import Path

import numpy as np
import pytest

from distfold.data.dataset import Dataset, write_dataset
from distfold.pipeline.evaluate import evaluate, length_bin, summarise
from distfold.report.plots import evaluation_plots
from distfold.errors import InputError
from distfold.structure.metrics import distance_errors, distance_matrix, lddt
from distfold.structure.io import read_chain

DATA = Path(__file__).parent / "data" / "chains"
SPLITS = {"c55406f94174e": "train", "c51d4cae83570": "train", "c9fa041c82503": "train",
          "cb98f573e0d35": "val", "c70b106ab8731": "val"}
MASKED = ("c70b106ab8731", [10, 11, 12, 50])  # residues given no coordinates, as unobserved ones are


def build_dataset(path: Path) -> Path:
    records, coords = [], []
    for uid, split in SPLITS.items():
        chain = read_chain(DATA / f"{uid}.pdb.gz")
        xyz = chain.ca.astype(np.float32)
        if uid == MASKED[0]:
            xyz[MASKED[1]] = np.nan
        records.append({"id": uid, "sequence": chain.sequence, "source": f"{uid}.pdb.gz", "chain": chain.chain_id,
                        "family": uid, "split": split, "weight": 1.0, "duplicates": []})
        coords.append(xyz)
    return write_dataset(path, records, coords)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("ds") / "ds")


class OracleModel:
    """Stands in for a trained model: the true distances of the chains it knows,
    plus deterministic multiplicative noise; masked pairs get |i - j|-based fillers."""

    def __init__(self, ds_path: Path, noise=0.15):
        ds = Dataset(ds_path)
        self.truth = {ds[i].sequence: ds[i].distances().astype(np.float64) for i in range(len(ds))}
        self.noise = noise
        self.config = {"crop": 512}

    def predict(self, sequences, lengths=None):
        out = []
        for s in sequences:
            d = self.truth[s].copy()
            n = len(d)
            sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
            d = np.where(np.isfinite(d), d, 3.8 * sep ** 0.6)
            rng = np.random.default_rng(n)
            f = rng.normal(0, self.noise, (n, n))
            d = d * np.exp(0.5 * (f + f.T))
            np.fill_diagonal(d, 0)
            v = (self.noise * d) ** 2 + 0.1
            np.fill_diagonal(v, 0)
            out.append({"distance": d.astype(np.float32), "variance": v.astype(np.float32)})
        return out


@pytest.fixture(scope="module")
def report(dataset, tmp_path_factory):
    from distfold.pipeline.predict import cpu_threads

    out = tmp_path_factory.mktemp("report")
    logs = []
    with cpu_threads(1):  # as `distfold evaluate` runs (--threads 1), and its worker processes
        metrics = evaluate(dataset, out, model=OracleModel(dataset), reconstruct=RECON, log=logs.append,
                           plot=evaluation_plots)
    return out, metrics, logs


RECON = "smacof"


def test_report_files(report):
    out, metrics, logs = report
    assert json.loads((out / "metrics.json").read_text())["summary"] == json.loads(json.dumps(metrics["summary"]))
    for name in ("distance_maps.png", "error_histogram.png", "error_by_separation.png", "calibration.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert metrics["plots"]["training_curves"] is None  # a stand-in model has no training log
    ids = sorted(SPLITS[k] == "val" and k for k in SPLITS if SPLITS[k] == "val")
    assert sorted(p.name for p in (out / "structures").iterdir()) == sorted(
        [f"{i}.pdb" for i in ids] + [f"{i}.ref.pdb" for i in ids])
    rows = list(csv.DictReader(open(out / "per_chain.tsv"), delimiter="\t"))
    assert sorted(r["id"] for r in rows) == ids
    assert {"model_mae", "model_tm_score", "model_hand_right", "prior_mae", "prior_tm_score"} <= set(rows[0])
    assert sum("L=" in line for line in logs) == 2


def test_metrics_equal_direct_computation_with_masked_residues_excluded(report, dataset):
    out, metrics, _ = report
    chain = next(c for c in metrics["chains"] if c["id"] == MASKED[0])
    ds = Dataset(dataset)
    sample = next(ds[i] for i in range(len(ds)) if ds.records[i]["id"] == MASKED[0])
    assert chain["n_observed"] == chain["length"] - len(MASKED[1])
    pred = OracleModel(dataset).predict([sample.sequence])[0]["distance"]
    truth = sample.distances()
    mask = sample.mask
    err = distance_errors(pred, truth, mask)
    assert chain["model"]["mae"] == pytest.approx(err["mae"])
    assert chain["model"]["rmse"] == pytest.approx(err["rmse"])
    assert chain["model"]["lddt"] == pytest.approx(lddt(pred, truth, mask)[0])
    # the prior is worse than a near-oracle on every chain, and the oracle's fold is right
    for c in metrics["chains"]:
        assert c["model"]["mae"] < c["prior"]["mae"] and c["model"]["lddt"] > c["prior"]["lddt"]
        assert c["model"]["tm_score"] > 0.5 and c["model"]["hand_right"]
        assert c["model"]["tm_score"] > c["prior"]["tm_score"]
    # the reference written for compare holds the observed residues only
    ref = read_chain(out / "structures" / f"{MASKED[0]}.ref.pdb")
    assert len(ref) == chain["n_observed"]
    assert [r[0] for r in ref.residue_ids] == [i + 1 for i in np.flatnonzero(mask)]


def test_summary_mean_median_and_hand_statistics(report):
    _, metrics, _ = report
    s = metrics["summary"]["all"]
    assert s["n_chains"] == 2
    vals = [c["model"]["tm_score"] for c in metrics["chains"]]
    assert s["model"]["tm_score"]["mean"] == pytest.approx(np.mean(vals))
    assert s["model"]["tm_score"]["median"] == pytest.approx(np.median(vals))
    assert s["model"]["hand_right_where_tm_ge_0.25"] == {"fraction": 1.0, "n": 2}
    assert set(metrics["summary"]["by_length"]) == {length_bin(c["length"]) for c in metrics["chains"]}
    cal = metrics["calibration"]
    assert cal["n_residues"] > 0 and sum(r["n"] for r in cal["table"]) == cal["n_residues"]


def test_summarise_by_length_bins():
    chains = [{"length": n, "model": {"tm_score": t, "hand_right": h}} for n, t, h in
              [(50, 0.2, True), (100, 0.6, True), (120, 0.4, False), (300, 0.3, True)]]
    s = summarise(chains)
    assert s["all"]["model"]["hand_right"]["mean"] == pytest.approx(0.75)
    assert s["all"]["model"]["hand_right_where_tm_ge_0.25"] == {"fraction": pytest.approx(2 / 3), "n": 3}
    assert s["by_length"]["64-127"]["model"]["tm_score"]["median"] == pytest.approx(0.5)
    assert set(s["by_length"]) == {"0-63", "64-127", "256-511"}


def test_bad_inputs(dataset, tmp_path):
    with pytest.raises(InputError, match="not a distfold dataset"):
        evaluate(tmp_path, tmp_path / "r", model=OracleModel(dataset))
    with pytest.raises(InputError, match="no chains in split 'test'; splits: train, val"):
        evaluate(dataset, tmp_path / "r", model=OracleModel(dataset), split="test")
    with pytest.raises(InputError, match="no 'val' chain has at most 50 residues"):
        evaluate(dataset, tmp_path / "r", model=OracleModel(dataset), max_length=50)


@pytest.mark.parametrize("by_number", [False, True])
def test_coordinate_scores_equal_distfold_compare_on_the_written_files(report, by_number):
    from click.testing import CliRunner

    from distfold.cli.main import cli

    out, metrics, _ = report
    for chain in metrics["chains"]:
        s = out / "structures"
        args = ["compare", str(s / f"{chain['id']}.pdb"), str(s / f"{chain['id']}.ref.pdb"), "--json"]
        res = CliRunner().invoke(cli, args + (["--by-number"] if by_number else []))
        assert res.exit_code == 0, res.output
        got = json.loads(res.stdout)
        assert got["n_aligned"] == chain["n_observed"]
        for key, theirs in (("rmsd", "rmsd"), ("tm_score", "tm_score"), ("tm_score_mirror", "tm_score_mirror"),
                            ("gdt_ts", "gdt_ts"), ("gdt_ha", "gdt_ha"), ("lddt_coords", "lddt")):
            assert chain["model"][key] == got[theirs], (chain["id"], key)


@pytest.fixture(scope="module")
def trained_model(dataset, tmp_path_factory) -> Path:
    """A tiny model trained for a few steps by `distfold train` (a real checkpoint and metrics.jsonl)."""
    from click.testing import CliRunner

    from distfold.cli.main import cli

    run = tmp_path_factory.mktemp("train") / "run"
    res = CliRunner().invoke(cli, ["train", str(dataset), "-o", str(run), "--preset", "tiny", "--crop", "32",
                                   "--max-steps", "2", "--batch-size", "2", "--eval-every", "1", "--log-every", "1",
                                   "--warmup", "1", "--json"])
    assert res.exit_code == 0, res.output
    return run


def test_evaluate_command_with_a_trained_checkpoint(dataset, trained_model, tmp_path):
    from click.testing import CliRunner

    from distfold.cli.main import cli

    out = tmp_path / "report"
    res = CliRunner().invoke(cli, ["evaluate", str(dataset), "--model", str(trained_model / "best"), "-o", str(out),
                                   "--max-length", "100", "--reconstruct", "classical", "--json", "--threads", "1",
                                   "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    summary = json.loads(res.stdout)
    assert "chains" not in summary and summary["summary"]["all"]["n_chains"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["id"] for c in metrics["chains"]] == ["c70b106ab8731"]  # 96 residues; the 109-residue chain is out
    assert metrics["model"]["name"] == "best" and metrics["reconstructor"]["name"] == "classical"
    assert metrics["plots"]["training_curves"] == "training_curves.png"  # found in the run folder above best/
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    # one process (the model loaded, so the workers above were fresh interpreters): the same numbers
    res = CliRunner().invoke(cli, ["evaluate", str(dataset), "--model", str(trained_model / "best"), "-o",
                                   str(tmp_path / "one"), "--max-length", "100", "--reconstruct", "classical",
                                   "--json", "--threads", "1", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert without_timings(json.loads((tmp_path / "one" / "metrics.json").read_text())) == without_timings(metrics)


TIMINGS = {"seconds", "model_timings", "total_s"}


def without_timings(x):
    """A metrics.json value with its timings left out (they are all that may differ between runs)."""
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if k not in TIMINGS}
    if isinstance(x, list):
        return [without_timings(v) for v in x]
    return x


def test_workers_give_the_same_report_as_one_process(report, dataset, tmp_path):
    out1, metrics1, logs1 = report  # workers=1: everything in this process
    from distfold.pipeline.predict import cpu_threads

    logs = []
    with cpu_threads(1):  # the workers' own thread count (worker_threads=1)
        metrics = evaluate(dataset, tmp_path, model=OracleModel(dataset), reconstruct=RECON, log=logs.append,
                           plot=evaluation_plots, workers=2)
    assert any("2 worker processes" in line for line in logs)
    assert gc.get_freeze_count() == 0  # evaluate froze the garbage collector's objects while it ran: undone
    assert json.dumps(without_timings(metrics)) == json.dumps(without_timings(metrics1))
    on_disk = [without_timings(json.loads((d / "metrics.json").read_text())) for d in (out1, tmp_path)]
    assert on_disk[0] == on_disk[1]
    for f in sorted((out1 / "structures").iterdir()):
        assert (tmp_path / "structures" / f.name).read_bytes() == f.read_bytes(), f.name
    # the plots, drawn by the workers at the same time, are those drawn here one after another
    pngs = sorted(f.name for f in out1.glob("*.png"))
    assert pngs == sorted(f.name for f in tmp_path.glob("*.png")) and len(pngs) == 4
    for name in pngs:
        assert (tmp_path / name).read_bytes() == (out1 / name).read_bytes(), name
    # the same lines, in chain order (the seconds aside)
    assert [line.rsplit("  ", 1)[0] for line in logs if "L=" in line] == \
        [line.rsplit("  ", 1)[0] for line in logs1 if "L=" in line]


@pytest.mark.parametrize("kept", [True, False])
def test_distance_maps_of_chains_not_kept_are_predicted_again_the_same(report, dataset, tmp_path, monkeypatch, kept):
    """The maps' matrices are kept from the chains' runs while they fit; past that limit
    the maps' chains are predicted again: the same plot either way."""
    import distfold.pipeline.evaluate as ev
    from distfold.pipeline.predict import cpu_threads

    out1 = report[0]
    if not kept:
        monkeypatch.setattr(ev, "KEPT_MAP_PAIRS", 0)
    predicted = []
    model = OracleModel(dataset)
    predict = model.predict
    monkeypatch.setattr(model, "predict", lambda *a, **k: (predicted.append(1), predict(*a, **k))[1])
    with cpu_threads(1):
        evaluate(dataset, tmp_path, model=model, reconstruct=RECON, plot=evaluation_plots, workers=1)
    n_chains = len(json.loads((out1 / "metrics.json").read_text())["chains"])
    assert (len(predicted) == n_chains) if kept else (len(predicted) > n_chains)
    assert (tmp_path / "distance_maps.png").read_bytes() == (out1 / "distance_maps.png").read_bytes()


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_chain_jobs_in_worker_processes_equal_those_in_this_one(dataset, start_method, tmp_path):
    from distfold.pipeline.evaluate_jobs import ChainJobs
    from distfold.pipeline.predict import cpu_threads
    from distfold.pipeline.predictor import Predictor, create_reconstructor
    from distfold.pipeline.prior import SeparationPrior

    ds = Dataset(dataset)
    rows = ds.indices("val")
    predictor = Predictor(OracleModel(dataset), "smacof")
    results = []
    for workers, method in ((1, None), (2, start_method)):
        with cpu_threads(1):  # here as in the workers (threads=1)
            out = tmp_path / f"{workers}"
            out.mkdir()
            jobs = ChainJobs(workers, dataset, create_reconstructor("smacof"), out, start_method=method)
            try:
                prior, _ = jobs.fit_prior().result()
                assert prior.table.tobytes() == SeparationPrior().fit(ds, split="train").table.tobytes()
                priors = [jobs.prior(prior, ds.records[i]["length"], [i]) for i in rows]
                models = [jobs.model(i, predictor, ds[i].sequence, predictor.distances(ds[i].sequence), 0.0,
                                     f"c{i}") for i in rows]
                results.append(([f.result() for f in priors], [f.result() for f in models]))
            finally:
                jobs.close()
    if start_method == "fork":  # forked workers exist once the jobs are made, before any model is loaded
        import multiprocessing

        before = len(multiprocessing.active_children())
        jobs = ChainJobs(2, dataset, create_reconstructor("smacof"), tmp_path, start_method="fork")
        try:
            assert len(multiprocessing.active_children()) - before == 2
        finally:
            jobs.close()
    (p1, m1), (p2, m2) = results
    assert p1 == p2
    for a, b in zip(m1, m2):
        assert a.scores == b.scores
        assert np.array_equal(a.xyz, b.xyz) and np.array_equal(a.pred.confidence, b.pred.confidence)
        assert np.array_equal(a.per_residue_lddt, b.per_residue_lddt, equal_nan=True)
    written = sorted(p.name for p in (tmp_path / "1").iterdir())
    assert written == sorted(f"c{i}{ext}" for i in rows for ext in (".pdb", ".ref.pdb"))
    for name in written:
        assert (tmp_path / "2" / name).read_bytes() == (tmp_path / "1" / name).read_bytes(), name


def test_bad_worker_counts(dataset, tmp_path):
    from click.testing import CliRunner

    from distfold.cli.main import cli
    from distfold.errors import UsageError

    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="workers must be a whole number >= 1"):
            evaluate(dataset, tmp_path / "r", model=OracleModel(dataset), workers=bad)
    for bad in ("0", "two"):
        res = CliRunner().invoke(cli, ["evaluate", str(dataset), "--workers", bad, "-o", str(tmp_path / "r")])
        assert res.exit_code == 2
        errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "'--workers'" in errors[0] and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_text_table(report):
    from distfold.cli.evaluate import format_table

    _, metrics, _ = report
    text = format_table(metrics)
    assert text.splitlines()[0] == "val split, 2 chains"
    tm = metrics["summary"]["all"]["model"]["tm_score"]
    assert f"{tm['mean']:.3f} / {tm['median']:.3f}" in next(l for l in text.splitlines() if l.startswith("TM-score"))
    assert "hand right where TM-score >= 0.25" in text


def test_training_curves_plot_from_a_training_log(trained_model, tmp_path):
    from distfold.report import plots

    rows = plots.read_metrics_jsonl(trained_model / "metrics.jsonl")
    assert {r["kind"] for r in rows} == {"train", "val"}
    assert plots.training_curves(tmp_path / "t.png", rows).read_bytes()[:4] == b"\x89PNG"
    assert plots.training_curves(tmp_path / "u.png", [{"note": "no numbers"}]) is None
    assert plots.find_training_log(trained_model / "best") == trained_model / "metrics.jsonl"
    assert plots.find_training_log(tmp_path) is None


def test_a_chain_that_fails_is_reported_and_left_out(dataset, tmp_path):
    class FailsOnShort(OracleModel):
        def predict(self, sequences, lengths=None):
            if len(sequences[0]) == 96:
                raise MemoryError("simulated")
            return super().predict(sequences, lengths)

    logs = []
    metrics = evaluate(dataset, tmp_path, model=FailsOnShort(dataset), reconstruct="classical", with_prior=False,
                       log=logs.append)
    assert [c["id"] for c in metrics["chains"]] == ["cb98f573e0d35"]
    assert metrics["failed"] == [{"id": "c70b106ab8731", "length": 96, "error": metrics["failed"][0]["error"]}]
    assert metrics["failed"][0]["error"].startswith("out of memory")
    assert any("c70b106ab8731  L=96  FAILED: out of memory" in line for line in logs)
    assert not (tmp_path / "structures" / "c70b106ab8731.pdb").exists()
    assert metrics["summary"]["all"]["n_chains"] == 1
    # without a plotter the pipeline draws nothing (plots are the report layer's)
    assert metrics["plots"] == {} and not list(tmp_path.glob("*.png"))


def test_a_chain_whose_prior_fails_is_left_out_without_its_structure_files(dataset, tmp_path, monkeypatch):
    from distfold.pipeline.prior import SeparationPrior

    matrix = SeparationPrior.matrix

    def fails_at_96(self, length, *args, **kwargs):
        if length == 96:
            raise ValueError("simulated prior failure")
        return matrix(self, length, *args, **kwargs)

    monkeypatch.setattr(SeparationPrior, "matrix", fails_at_96)
    metrics = evaluate(dataset, tmp_path, model=OracleModel(dataset), reconstruct="classical")
    assert [c["id"] for c in metrics["chains"]] == ["cb98f573e0d35"]
    assert [f["id"] for f in metrics["failed"]] == ["c70b106ab8731"]
    assert "simulated prior failure" in metrics["failed"][0]["error"]
    # its job wrote them before the prior's failure was known: removed
    assert sorted(p.name for p in (tmp_path / "structures").iterdir()) == ["cb98f573e0d35.pdb",
                                                                          "cb98f573e0d35.ref.pdb"]


# -- secondary structure and contacts ---------------------------------------------

def dssp_labels(uid: str) -> str:
    from distfold.data.labels import chain_ss_labels
    from distfold.structure.io import chains_of, load_structure

    path = DATA / f"{uid}.pdb.gz"
    structure = load_structure(path)
    chains = chains_of(structure)
    chain = read_chain(path)
    return chain_ss_labels(structure, chains)[[c.chain_id for c in chains].index(chain.chain_id)]


@pytest.fixture(scope="module")
def ss_dataset(dataset, tmp_path_factory) -> Path:
    """The same chains with their 3-state DSSP as ``ss`` ('-' where a residue is masked)."""
    ds = Dataset(dataset)
    records, coords = [], []
    for i in range(len(ds)):
        rec = dict(ds.records[i])
        ss = list(dssp_labels(rec["id"]))
        if rec["id"] == MASKED[0]:
            for k in MASKED[1]:
                ss[k] = "-"
        rec["ss"] = "".join(ss)
        records.append(rec)
        coords.append(ds[i].coords)
    return write_dataset(tmp_path_factory.mktemp("ssds") / "ds", records, coords)


def noisy_ss(ref: str) -> str:
    """The reference with every 5th residue (and unlabelled ones) called coil."""
    return "".join("C" if c == "-" or k % 5 == 0 else c for k, c in enumerate(ref))


class OracleSSModel(OracleModel):
    """OracleModel plus ss_probs putting 0.8 on noisy_ss of the reference."""

    def __init__(self, ds_path: Path, noise=0.15):
        super().__init__(ds_path, noise)
        ds = Dataset(ds_path)
        self.ss = {ds.records[i]["sequence"]: noisy_ss(ds.records[i]["ss"]) for i in range(len(ds))}

    def predict(self, sequences, lengths=None):
        out = super().predict(sequences, lengths)
        for s, o in zip(sequences, out):
            p = np.full((len(s), 3), 0.1, np.float32)
            p[np.arange(len(s)), ["HEC".index(c) for c in self.ss[s]]] = 0.8
            o["ss_probs"] = p
        return out


@pytest.fixture(scope="module")
def ss_report(ss_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssreport")
    metrics = evaluate(ss_dataset, out, model=OracleSSModel(ss_dataset), reconstruct="classical")
    return out, metrics


def test_ss_metrics_of_the_model_and_both_baselines(ss_report, ss_dataset):
    from distfold.pipeline.ss_baselines import MajorityClass, WindowClassifier
    from distfold.structure.secondary import q3, sov

    out, metrics = ss_report
    ds = Dataset(ss_dataset)
    val = [ds.records[i] for i in ds.indices("val")]
    train = [(r["sequence"], r["ss"]) for r in (ds.records[i] for i in ds.indices("train"))]
    ss = metrics["secondary_structure"]
    labelled = sum(c != "-" for r in val for c in r["ss"])
    assert ss["n_chains"] == 2 and ss["n_residues"] == labelled
    # pooled Q3 counts residues: correct / labelled over both chains
    correct = sum(a == b for r in val for a, b in zip(r["ss"], noisy_ss(r["ss"])) if a != "-")
    assert ss["model"]["q3"] == pytest.approx(correct / labelled)
    major = MajorityClass().fit(train)
    assert ss["majority"]["q3"] == pytest.approx(sum(c == major.state for r in val for c in r["ss"]) / labelled)
    assert ss["majority"]["per_class"][major.state]["recall"] == 1.0
    window = WindowClassifier().fit(train)
    for r in val:
        row = next(c for c in metrics["chains"] if c["id"] == r["id"])
        assert row["ss"]["model_q3"] == pytest.approx(q3(r["ss"], noisy_ss(r["ss"])))
        assert row["ss"]["model_sov"] == pytest.approx(sov(r["ss"], noisy_ss(r["ss"])))
        assert row["ss"]["window_q3"] == pytest.approx(q3(r["ss"], window.predict(r["sequence"])))
    assert ss["model"]["q3"] > ss["majority"]["q3"]
    assert set(ss["model"]["per_class"]) == {"H", "E", "C"} and 0 < ss["model"]["sov"] <= 1
    cols = next(csv.reader(open(out / "per_chain.tsv"), delimiter="\t"))
    assert {"ss_model_q3", "ss_majority_sov", "ss_window_q3", "model_contact_long_L5", "prior_contact_short_L"} \
        <= set(cols)
    # the model's structure carries its predicted helices
    pdb = (out / "structures" / f"{val[0]['id']}.pdb").read_text()
    assert ("HELIX " in pdb) == ("H" in noisy_ss(val[0]["ss"]))


def test_contact_precision_by_range_for_model_and_prior(ss_report, ss_dataset):
    from distfold.pipeline.contacts import contact_probability, range_precision
    from distfold.pipeline.prior import SeparationPrior

    _, metrics = ss_report
    ds = Dataset(ss_dataset)
    prior = SeparationPrior().fit(ds, split="train")
    for i in ds.indices("val"):
        sample = ds[i]
        row = next(c for c in metrics["chains"] if c["id"] == ds.records[i]["id"])
        out = OracleSSModel(ss_dataset).predict([sample.sequence])[0]
        p = contact_probability(out["distance"], out["variance"], "laplace")
        want = range_precision(p, sample.distances(), sample.mask)
        got_prior = range_precision(prior.matrix(len(sample.sequence)), sample.distances(), sample.mask,
                                    higher_is_contact=False)
        for r in ("short", "medium", "long"):
            for k in ("L/5", "L/2", "L"):
                key = f"contact_{r}_{k.replace('/', '')}"
                assert row["model"][key] == pytest.approx(want[r][k])
                assert row["prior"][key] == pytest.approx(got_prior[r][k])
        assert row["model"]["contact_long_L5"] > row["prior"]["contact_long_L5"]
    assert metrics["summary"]["all"]["model"]["contact_medium_L2"]["n"] == 2


def test_no_ss_labels_no_ss_metrics_and_bad_labels_refused(report, ss_dataset, tmp_path):
    _, metrics, logs = report
    assert metrics["secondary_structure"] is None
    assert not any("ss" == k for c in metrics["chains"] for k in c)
    ds = Dataset(ss_dataset)
    records = [dict(r) for r in ds.records]
    records[3]["ss"] = records[3]["ss"][:-1]
    bad = write_dataset(tmp_path / "bad", records, [ds[i].coords for i in range(len(ds))])
    with pytest.raises(InputError, match=f"chain '{records[3]['id']}': ss has"):
        evaluate(bad, tmp_path / "r", model=OracleModel(ss_dataset), reconstruct="classical")


def test_text_table_has_contacts_and_ss(ss_report, report):
    from distfold.cli.evaluate import format_table

    _, metrics = ss_report
    text = format_table(metrics)
    row = next(line for line in text.splitlines() if line.startswith("contact precision long (24+), top L/5"))
    want = metrics["summary"]["all"]["model"]["contact_long_L5"]
    assert f"{want['mean']:.3f} / {want['median']:.3f}" in row
    q3_line = next(line for line in text.splitlines() if line.startswith("Q3"))
    ss = metrics["secondary_structure"]
    assert q3_line.split()[1:] == [f"{ss[m]['q3']:.3f}" for m in ("model", "majority", "window")]
    assert "secondary structure vs DSSP (2 chains" in text
    assert "secondary structure" not in format_table(report[1])


def test_evaluation_pages_draw_predicted_and_reference_ss(ss_report, ss_dataset):
    from distfold.report.html import write_evaluation_reports

    out, metrics = ss_report
    write_evaluation_reports(out, metrics)
    ds = Dataset(ss_dataset)
    rec = next(r for r in ds.records if r["id"] == MASKED[0])
    text = (out / "pages" / f"{MASKED[0]}.html").read_text()
    observed = [k for k in range(len(rec["sequence"])) if k not in MASKED[1]]  # the reference file's residues
    ref_track = "".join(rec["ss"][k] for k in observed)
    pred_track = "".join(noisy_ss(rec["ss"])[k] for k in observed)
    assert f'data-name="reference DSSP" data-ss="{ref_track}"' in text
    assert f'data-name="predicted" data-ss="{pred_track}"' in text
    assert 'data-key="ss.model_q3"' in text and 'data-key="ss.reference"' not in text
