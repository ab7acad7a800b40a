"""distfold.pipeline.predict with a small deterministic stand-in model (no checkpoint, no torch):
outputs, skip-and-continue, resume, atomic writes, id sanitising, sharding."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from distfold.pipeline import predict as P
from distfold.errors import InputError
from distfold.structure.metrics import distance_matrix
from distfold.structure.sequence import parse_fasta_text, query_record
from distfold.structure.io import read_chain

RECON = "classical"


class HelixModel:
    """Stands in for distfold.pipeline.model.DistanceModel: an ideal alpha helix's C-alpha
    distances, with a variance that grows with sequence separation."""

    def __init__(self, crop=64, fail_on=None):
        self.config = {"crop": crop, "components": {"distance_head": {"name": "regression"}}}
        self.calls = []
        self.fail_on = fail_on

    def predict(self, sequences, lengths=None):
        out = []
        for s in sequences:
            self.calls.append(s)
            if self.fail_on and self.fail_on in s:
                raise MemoryError("simulated")
            n = len(s)
            t = np.arange(n)
            x = np.stack([2.3 * np.cos(np.radians(100 * t)), 2.3 * np.sin(np.radians(100 * t)), 1.5 * t], 1)
            d = distance_matrix(x).astype(np.float32)
            v = (0.2 + 0.05 * np.abs(t[:, None] - t[None, :])).astype(np.float32)
            np.fill_diagonal(v, 0)
            out.append({"distance": d, "variance": v})
        return out


FASTA = ">long\n" + "ACDEFGHIKLMNPQRSTVWY" * 2 + "\n>bad\nACD1EF\n>short\nmkta yiak\n>../../escape\nGGGSGGGS\n"


def run(records, outdir, **kw):
    logs = []
    kw.setdefault("model", HelixModel())
    kw.setdefault("reconstruct", RECON)
    summary = P.run_predict(records, outdir, log=logs.append, **kw)
    return summary, logs


def test_outputs_of_a_record(tmp_path):
    summary, logs = run([query_record("ACDEFGHIKLMNPQ")], tmp_path)
    assert summary["counts"] == {"ok": 1, "skipped": 0, "failed": 0}
    d = np.load(tmp_path / "query.distmat.npy")
    assert d.dtype == np.float32 and d.shape == (14, 14)
    assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    chain = read_chain(tmp_path / "query.pdb")
    assert chain.sequence == "ACDEFGHIKLMNPQ"
    scores = json.loads((tmp_path / "query.scores.json").read_text())
    assert scores["length"] == 14 and scores["status"] == "ok"
    np.testing.assert_allclose(chain.bfactors, scores["confidence"], atol=0.01)
    assert scores["mean_confidence"] == pytest.approx(np.mean(scores["confidence"]), abs=0.01)
    assert 0 < scores["mean_confidence"] < 100
    assert {"mirrored", "margin"} <= set(scores["handedness"])
    assert scores["reconstruction"]["weighted"] is True and "stress1" in scores["reconstruction"]
    assert {"model_s", "reconstruct_s", "total_s"} <= set(scores["timings"])
    assert scores["reconstructor"]["name"] == RECON
    # The reconstruction reproduces the predicted distances (exact helix input).
    np.testing.assert_allclose(distance_matrix(chain.ca), d, atol=0.01)
    assert len(logs) == 2 and "query  L=14  confidence=" in logs[1]


def test_cif_format(tmp_path):
    run([query_record("ACDEFGHIK")], tmp_path, fmt="cif")
    assert read_chain(tmp_path / "query.cif").sequence == "ACDEFGHIK"
    with pytest.raises(InputError, match="unknown format"):
        run([query_record("ACD")], tmp_path, fmt="xyz")


def test_records_sorted_by_length_bad_ones_reported_others_continue(tmp_path):
    model = HelixModel()
    summary, logs = run(parse_fasta_text(FASTA), tmp_path, model=model)
    order = [r["id"] for r in summary["records"]]
    assert order == ["bad", "short", "_.._escape", "long"]  # lengths 6, 8, 8, 40; ties keep input order
    status = {r["id"]: r["status"] for r in summary["records"]}
    assert status == {"bad": "failed", "short": "ok", "_.._escape": "ok", "long": "ok"}
    bad = summary["records"][0]
    assert "invalid residue '1' at position 4" in bad["error"]
    assert summary["counts"]["failed"] == 1
    assert model.calls == ["MKTAYIAK", "GGGSGGGS", "ACDEFGHIKLMNPQRSTVWY" * 2]
    assert any("bad  L=6  FAILED" in line for line in logs)
    assert not list(tmp_path.glob("bad.*"))
    # the sanitised id keeps every file inside the output folder
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("_")) == [
        "_.._escape.contacts.tsv", "_.._escape.distmat.npy", "_.._escape.pdb", "_.._escape.scores.json"]
    assert not (tmp_path.parent / "escape.pdb").exists()


def test_a_record_that_fails_at_predict_time_does_not_stop_the_batch(tmp_path):
    recs = parse_fasta_text(">a\nACDEFGHIK\n>b\nWWWWWWWWWWW\n>c\nACDEFGHIKLMNPQ\n")
    summary, logs = run(recs, tmp_path, model=HelixModel(fail_on="WWW"))
    status = {r["id"]: r["status"] for r in summary["records"]}
    assert status == {"a": "ok", "b": "failed", "c": "ok"}
    err = next(r["error"] for r in summary["records"] if r["id"] == "b")
    assert err.startswith("out of memory")
    assert not list(tmp_path.glob("b.*"))


def test_too_long_for_the_length_limit_fails_that_record_only(tmp_path):
    recs = parse_fasta_text(">a\nACDEFGHIK\n>b\nACDEFGHIKLMNPQRSTVWY\n")
    summary, _ = run(recs, tmp_path, max_length=12)
    assert [r["status"] for r in summary["records"]] == ["ok", "failed"]
    assert "20 residues exceeds --max-length 12" in summary["records"][1]["error"]


def test_existing_outputs_are_skipped_and_a_batch_resumes(tmp_path):
    recs = parse_fasta_text(FASTA)
    run(recs, tmp_path)
    stamp = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    (tmp_path / "long.scores.json").unlink()  # an interrupted record: files without the marker
    model = HelixModel()
    summary, logs = run(recs, tmp_path, model=model)
    assert model.calls == ["ACDEFGHIKLMNPQRSTVWY" * 2]  # only the incomplete record is redone
    status = {r["id"]: r["status"] for r in summary["records"]}
    assert status == {"bad": "failed", "short": "skipped", "_.._escape": "skipped", "long": "ok"}
    assert (tmp_path / "short.pdb").stat().st_mtime_ns == stamp["short.pdb"]
    assert any("short  L=8  skipped" in line for line in logs)
    # a finished batch predicts nothing and reports no loaded model
    model = HelixModel()
    summary, _ = run(recs, tmp_path, model=model)
    assert summary["counts"] == {"ok": 0, "skipped": 3, "failed": 1} and summary["model"] is None
    assert model.calls == []
    # ... but a model that does not exist is an error: the outputs cannot be shown to be its
    with pytest.raises(InputError, match="model not found"):
        run(recs, tmp_path, model=None, model_dir=tmp_path / "no-such-model")
    # --overwrite redoes everything
    model = HelixModel()
    summary, _ = run(recs, tmp_path, model=model, overwrite=True)
    assert summary["counts"]["ok"] == 3 and len(model.calls) == 3


def test_an_interrupted_batch_resumes_where_it_stopped(tmp_path):
    recs = parse_fasta_text(">a\nACDEFGHIK\n>b\nACDEFGHIKL\n>c\nACDEFGHIKLM\n")

    interrupting = HelixModel()  # the same model (a stand-in's identity is its class name), stopped at b

    def predict(sequences, lengths=None):
        if len(sequences[0]) == 10:
            raise KeyboardInterrupt
        return HelixModel.predict(interrupting, sequences, lengths)

    interrupting.predict = predict
    with pytest.raises(KeyboardInterrupt):
        run(recs, tmp_path, model=interrupting)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.contacts.tsv", "a.distmat.npy", "a.pdb",
                                                          "a.scores.json"]
    model = HelixModel()
    summary, _ = run(recs, tmp_path, model=model)
    assert [r["status"] for r in summary["records"]] == ["skipped", "ok", "ok"]
    assert [len(s) for s in model.calls] == [10, 11]


def test_a_failed_write_leaves_no_partial_file_and_no_marker(tmp_path, monkeypatch):
    from Bio.PDB import PDBIO

    recs = parse_fasta_text(">a\nACDEFGHIK\n>b\nACDEFGHIKL\n")
    original = PDBIO.save

    def broken_save(self, fh, *args, **kwargs):
        fh.write("ATOM      1  CA  ALA A   1   half a line")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(PDBIO, "save", broken_save)
    summary, _ = run(recs, tmp_path)
    assert [r["status"] for r in summary["records"]] == ["failed", "failed"]
    assert "disk full" in summary["records"][0]["error"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not any(n.endswith((".pdb", ".scores.json", ".tmp")) for n in names), names
    monkeypatch.setattr(PDBIO, "save", original)
    summary, _ = run(recs, tmp_path)
    assert [r["status"] for r in summary["records"]] == ["ok", "ok"]


def test_overwrite_removes_the_marker_before_rewriting(tmp_path):
    recs = [query_record("ACDEFGHIK")]
    run(recs, tmp_path)

    class Failing(HelixModel):
        def predict(self, sequences, lengths=None):
            raise RuntimeError("boom")

    summary, _ = run(recs, tmp_path, model=Failing(), overwrite=True)
    assert summary["records"][0]["status"] == "failed"
    assert not (tmp_path / "query.scores.json").exists()  # the old marker no longer claims a complete record


def test_shards_are_disjoint_cover_everything_and_write_the_same_files(tmp_path):
    recs = parse_fasta_text("".join(f">r{k}\n{'ACDEFGHIKLMNPQRSTVWY'[: 5 + (k * 7) % 15]}\n" for k in range(9)))
    shares = [P.shard(recs, r, 3) for r in range(3)]
    ids = [x.id for s in shares for x in s]
    assert sorted(ids) == sorted(r.id for r in recs) and len(set(ids)) == len(ids)
    lengths = [r.length for r in P.sort_records(recs)]
    assert lengths == sorted(lengths)
    for rank in range(3):
        s, _ = run(recs, tmp_path / "sharded", rank=rank, world_size=3)
        assert [r["id"] for r in s["records"]] == [x.id for x in shares[rank]]
    run(recs, tmp_path / "single")
    for name in sorted(os.listdir(tmp_path / "single")):
        if not name.endswith(".scores.json"):
            assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes(), name


def test_distributed_env(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert P.distributed_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert P.distributed_env() == (1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(InputError, match="inconsistent"):
        P.distributed_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(InputError, match="not an integer"):
        P.distributed_env()


def test_long_sequences_are_predicted_window_by_window(tmp_path):
    model = HelixModel(crop=16)
    summary, _ = run([query_record("ACDEFGHIKLMNPQRSTVWY" * 2)], tmp_path, model=model)
    assert summary["counts"]["ok"] == 1
    assert max(len(s) for s in model.calls) == 16
    scores = json.loads((tmp_path / "query.scores.json").read_text())
    assert scores["reconstruction"]["windows"] == len(model.calls) > 1
    d = np.load(tmp_path / "query.distmat.npy")
    assert d.shape == (40, 40) and np.isfinite(d).all()


def test_missing_model_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match="model not found"):
        run([query_record("ACD")], tmp_path / "out", model=None, model_dir=tmp_path / "nope")


def test_output_folder_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        run([query_record("ACD")], f)


def test_waiting_for_other_ranks_only_under_torchrun(monkeypatch):
    """Processes started by hand with RANK/WORLD_SIZE (no torchrun store to meet at) and a
    single process do not wait; the barrier itself is tested with torchrun in test_predict_cli."""
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert P.wait_for_other_ranks(2) is False
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    assert P.wait_for_other_ranks(1) is False


def test_thread_limit_reaches_libraries_loaded_inside_it():
    """--threads caps pools loaded during the run too: scipy's own OpenBLAS is loaded on
    first use, after threadpoolctl looked (issue 16, point 8). Checked in a fresh process."""
    import subprocess
    import sys

    code = ("import os\n"
            "from distfold.pipeline.predict import cpu_threads\n"
            "from threadpoolctl import threadpool_info\n"
            "with cpu_threads(1):\n"
            "    import scipy.linalg\n"
            "    print(sorted({i['num_threads'] for i in threadpool_info()}))\n"
            "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "VECLIB_MAXIMUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[1]", "None"], proc.stdout  # every pool at 1; the variables restored


# -- secondary structure and contacts -------------------------------------------

class SSHelixModel(HelixModel):
    """HelixModel plus ss_probs: coil at the ends, a strand in the middle, helix elsewhere."""

    def predict(self, sequences, lengths=None):
        out = super().predict(sequences, lengths)
        for s, o in zip(sequences, out):
            states = SS_TRUTH[SS_SEQ.index(s):][: len(s)]
            p = np.full((len(s), 3), 0.1, np.float32)
            for i, c in enumerate(states):
                p[i, "HEC".index(c)] = 0.8
            o["ss_probs"] = p
        return out


SS_SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRV"  # every 16-residue window occurs once
SS_TRUTH = "CCHHHHHHHHCCEEEEECCHHHHHHHHHHHHCCEEEECCC"


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_ss_outputs_scores_structure_and_windows(tmp_path, fmt):
    from Bio.PDB.MMCIF2Dict import MMCIF2Dict

    rec = parse_fasta_text(f">ss\n{SS_SEQ}\n")
    summary, _ = run(rec, tmp_path, model=SSHelixModel(crop=16), fmt=fmt)  # 40 residues: several windows
    assert summary["counts"]["ok"] == 1
    scores = json.loads((tmp_path / "ss.scores.json").read_text())
    assert scores["ss"] == SS_TRUTH and scores["ss_states"] == "HEC"
    probs = np.array(scores["ss_probs"])
    assert probs.shape == (40, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=2e-3)
    assert scores["reconstruction"]["windows"] > 1
    if fmt == "pdb":
        lines = (tmp_path / "ss.pdb").read_text().splitlines()
        helix = [ln for ln in lines if ln.startswith("HELIX ")]
        sheet = [ln for ln in lines if ln.startswith("SHEET ")]
        assert [(int(h[21:25]), int(h[33:37])) for h in helix] == [(3, 10), (20, 31)]
        assert [(int(s[22:26]), int(s[33:37])) for s in sheet] == [(13, 17), (34, 37)]
    else:
        d = MMCIF2Dict(str(tmp_path / "ss.cif"))
        assert d["_struct_conf.beg_label_seq_id"] == ["3", "20"]
        assert d["_struct_sheet_range.end_label_seq_id"] == ["17", "37"]
    assert read_chain(tmp_path / f"ss.{fmt}").sequence == SS_SEQ


def test_no_ss_fields_or_records_without_an_ss_head(tmp_path):
    run([query_record("ACDEFGHIKLMNPQRSTV")], tmp_path)
    scores = json.loads((tmp_path / "query.scores.json").read_text())
    assert "ss" not in scores and "ss_probs" not in scores
    assert not any(ln.startswith(("HELIX", "SHEET")) for ln in (tmp_path / "query.pdb").read_text().splitlines())


class WideHelixModel(HelixModel):
    """HelixModel with 8 times the variance: pairs at |i - j| >= 6 (9 Å and more apart) then
    have contact probabilities above 0.05."""

    def predict(self, sequences, lengths=None):
        out = super().predict(sequences, lengths)
        for o in out:
            o["variance"] = o["variance"] * 8
        return out


def test_contacts_file_is_the_laplace_probability_sorted_and_filtered(tmp_path):
    seq = "ACDEFGHIKLMNPQRSTVWYACDEF"
    run([query_record(seq)], tmp_path, model=WideHelixModel())
    scores = json.loads((tmp_path / "query.scores.json").read_text())
    lines = (tmp_path / "query.contacts.tsv").read_text().splitlines()
    assert lines[0] == "i\tj\taa_i\taa_j\tseparation\tprobability\tdistance"
    rows = [ln.split("\t") for ln in lines[1:]]
    assert scores["contacts"]["n_pairs"] == len(rows) > 0
    assert scores["contacts"]["columns"] == lines[0].split("\t")
    assert scores["files"]["contacts"] == "query.contacts.tsv"
    d = np.load(tmp_path / "query.distmat.npy").astype(np.float64)
    t = np.arange(len(seq))
    v = 8 * (0.2 + 0.05 * np.abs(t[:, None] - t[None, :]))  # the stand-in's variance: Laplace b = sqrt(v / 2)
    probs = [float(r[5]) for r in rows]
    assert probs == sorted(probs, reverse=True)
    for r in rows:
        i, j = int(r[0]) - 1, int(r[1]) - 1
        assert j - i >= 6 and int(r[4]) == j - i and r[2] == seq[i] and r[3] == seq[j]
        z = (8.0 - d[i, j]) / np.sqrt(v[i, j] / 2)
        expected = 1 - 0.5 * np.exp(-z) if z >= 0 else 0.5 * np.exp(z)
        assert float(r[5]) == pytest.approx(expected, abs=6e-5)
        assert float(r[6]) == pytest.approx(d[i, j], abs=0.006)
        assert float(r[5]) >= 0.05
    # every pair at |i - j| >= 6 with P >= 0.05 is listed (5 L is not reached here)
    i, j = np.triu_indices(len(seq), 6)
    z = (8.0 - d[i, j]) / np.sqrt(v[i, j] / 2)
    p = np.where(z >= 0, 1 - 0.5 * np.exp(-np.abs(z)), 0.5 * np.exp(-np.abs(z)))
    assert len(rows) == int((p >= 0.05).sum())
