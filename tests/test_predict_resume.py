"""Resuming a batch never hands back stale results (issue 16, points 1 and 7).

A record is skipped only when its files were computed from the same sequence,
model, reconstructor (name and settings), format and window plan; otherwise it
is recomputed and the log says why. Deciding loads no model. In ``--json``, a
failed record lists no files, a skipped one the files it has.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from distfold.cli.main import cli
from distfold.errors import InputError
from distfold.pipeline import predict as P
from distfold.pipeline.predictor import Predictor
from distfold.registry import get_registry
from distfold.structure.sequence import parse_fasta_text, query_record

from test_predict import HelixModel, run

RECON = "classical"
SEQ_A = "ACDEFGHIKLMNPQRSTVWY"
SEQ_B = "WWWWWWWWWWGGGGGGGG"


def scores(outdir, record_id="query"):
    return json.loads((outdir / f"{record_id}.scores.json").read_text())


def status(summary):
    return {r["id"]: r["status"] for r in summary["records"]}


# -- the rule, with a stand-in model -------------------------------------------------------

def test_a_changed_sequence_is_recomputed(tmp_path):
    run([query_record(SEQ_A)], tmp_path)
    model = HelixModel()
    summary, logs = run([query_record(SEQ_B)], tmp_path, model=model)
    assert status(summary) == {"query": "ok"} and model.calls == [SEQ_B]
    assert summary["records"][0]["recomputed"] == "sequence changed"
    assert any(line.endswith("query  L=18  recomputing: sequence changed") for line in logs), logs
    assert scores(tmp_path)["sequence"] == SEQ_B
    assert np.load(tmp_path / "query.distmat.npy").shape == (18, 18)
    # the same sequence again: done
    summary, _ = run([query_record(SEQ_B)], tmp_path)
    assert status(summary) == {"query": "skipped"}


def test_a_changed_model_is_recomputed_a_moved_one_is_not(tmp_path):
    def predictor(sha, path):
        return Predictor(HelixModel(), RECON, identity={"name": "m", "path": path, "sha256": sha, "device": "cpu"})

    rec = [query_record(SEQ_A)]
    run(rec, tmp_path, predictor=predictor("aaaa", "/one"))
    summary, _ = run(rec, tmp_path, predictor=predictor("aaaa", "/elsewhere"))  # same content, other folder
    assert status(summary) == {"query": "skipped"}
    summary, logs = run(rec, tmp_path, predictor=predictor("bbbb", "/one"))
    assert status(summary) == {"query": "ok"}
    assert summary["records"][0]["recomputed"] == "model changed (m aaaa -> m bbbb)"
    assert scores(tmp_path)["model"]["sha256"] == "bbbb"
    # a stand-in model without a digest is told apart by its name
    class OtherModel(HelixModel):
        pass

    summary, _ = run(rec, tmp_path, model=OtherModel())
    assert summary["records"][0]["recomputed"].startswith("model changed (m bbbb -> OtherModel None)")


def test_a_changed_reconstructor_or_its_settings_is_recomputed(tmp_path):
    rec = [query_record(SEQ_A)]
    run(rec, tmp_path, reconstruct="classical")
    summary, logs = run(rec, tmp_path, reconstruct="smacof")
    assert summary["records"][0]["recomputed"] == "reconstructor changed (classical -> smacof)"
    assert scores(tmp_path)["reconstructor"]["name"] == "smacof"
    assert status(run(rec, tmp_path, reconstruct="smacof")[0]) == {"query": "skipped"}

    def with_settings(**params):
        return Predictor(HelixModel(), get_registry().create("reconstructor", "smacof", **params))

    run(rec, tmp_path, predictor=with_settings(max_iter=20))
    assert status(run(rec, tmp_path, predictor=with_settings(max_iter=20))[0]) == {"query": "skipped"}
    summary, _ = run(rec, tmp_path, predictor=with_settings(max_iter=30))
    assert summary["records"][0]["recomputed"].startswith("SMACOF settings changed (")
    assert scores(tmp_path)["reconstructor"]["config"]["max_iter"] == 30


def test_a_changed_format_is_recomputed(tmp_path):
    rec = [query_record(SEQ_A)]
    run(rec, tmp_path, fmt="pdb")
    summary, _ = run(rec, tmp_path, fmt="cif")  # no .cif yet: computed
    assert status(summary) == {"query": "ok"} and scores(tmp_path)["format"] == "cif"
    summary, logs = run(rec, tmp_path, fmt="pdb")  # the .pdb is there, but the scores are the .cif run's
    assert summary["records"][0]["recomputed"] == "format changed (cif -> pdb)"
    assert scores(tmp_path)["format"] == "pdb"


def test_changed_windows_are_recomputed_where_they_change_the_result(tmp_path):
    recs = parse_fasta_text(f">short\n{SEQ_A[:10]}\n>long\n{SEQ_A * 2}\n")  # crop 16: long takes windows
    run(recs, tmp_path, model=HelixModel(crop=16))
    assert "window" not in scores(tmp_path, "long")  # the model's defaults are not written
    summary, _ = run(recs, tmp_path, model=HelixModel(crop=16), window=16, stride=8)  # the defaults, spelt out
    assert status(summary) == {"short": "skipped", "long": "skipped"}
    model = HelixModel(crop=16)
    summary, logs = run(recs, tmp_path, model=model, window=20)
    assert status(summary) == {"short": "skipped", "long": "ok"}  # 10 residues: one window either way
    assert summary["records"][1]["recomputed"] == "windows changed (window/stride 16/8 -> 20/10)"
    assert {"window": 20, "stride": 10}.items() <= scores(tmp_path, "long").items()
    summary, _ = run(recs, tmp_path, model=HelixModel(crop=16), window=20)
    assert status(summary) == {"short": "skipped", "long": "skipped"}
    summary, _ = run(recs, tmp_path, model=HelixModel(crop=16))
    assert summary["records"][1]["recomputed"] == "windows changed (window/stride 20/10 -> 16/8)"


def test_an_unreadable_scores_file_is_recomputed(tmp_path):
    rec = [query_record(SEQ_A)]
    run(rec, tmp_path)
    (tmp_path / "query.scores.json").write_text("{not json")
    summary, _ = run(rec, tmp_path)
    assert status(summary) == {"query": "ok"}
    assert summary["records"][0]["recomputed"].startswith("the scores file cannot be read")
    assert scores(tmp_path)["sequence"] == SEQ_A


def test_overwrite_and_incomplete_records_say_no_reason(tmp_path):
    rec = [query_record(SEQ_A)]
    run(rec, tmp_path)
    summary, logs = run(rec, tmp_path, overwrite=True)
    assert status(summary) == {"query": "ok"} and "recomputed" not in summary["records"][0]
    assert not any("recomputing" in line for line in logs)


def test_summary_files_are_the_files_a_record_has(tmp_path):
    recs = parse_fasta_text(f">a\n{SEQ_A}\n>bad\nMKT1AYI\n>c\nWWWWWWWWWWWWW\n")
    summary, _ = run(recs, tmp_path, model=HelixModel(fail_on="WWW"))
    by_id = {r["id"]: r for r in summary["records"]}
    assert by_id["bad"]["files"] == {} and by_id["c"]["files"] == {}  # never written
    assert by_id["a"]["files"] == {"structure": "a.pdb", "distmat": "a.distmat.npy", "contacts": "a.contacts.tsv",
                                   "scores": "a.scores.json"}
    for r in summary["records"]:
        assert all((tmp_path / name).is_file() for name in r["files"].values()), r
    summary, _ = run(recs, tmp_path)
    by_id = {r["id"]: r for r in summary["records"]}
    assert by_id["a"]["status"] == "skipped" and by_id["a"]["files"]["scores"] == "a.scores.json"
    assert all((tmp_path / name).is_file() for name in by_id["a"]["files"].values())


def test_default_model_dir_is_the_shipped_model():
    from distfold.pipeline.model import default_model_path

    assert P.default_model_dir() == default_model_path()


# -- through the command line, with tiny saved models ----------------------------------------

def tiny(path, top):
    from distfold.pipeline.model import DistanceModel

    model = DistanceModel.build(
        ("qwen", {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                  "intermediate_size": 64}),
        ("regression", {"pair_dim": 8, "n_blocks": 1, "use_prior": False}), ("log1p", {}), crop=24)
    model.normaliser.fit(np.array([0.0, top]))  # another top, another model
    return model.save(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    one, two = tiny(root / "one", 40.0), tiny(root / "two", 50.0)
    copy = root / "copy-of-one"
    shutil.copytree(one, copy)
    return {"one": one, "two": two, "copy": copy}


def predict(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)], catch_exceptions=False)


def test_the_issue_example_another_sequence_under_the_same_id(models, tmp_path):
    """printf '>s\\nACDEFGHIKLMNPQRSTVWY\\n' > a.fa; printf '>s\\nWWWWWWWWWWGGGGGGGG\\n' > b.fa;
    distfold predict -i a.fa -o o; distfold predict -i b.fa -o o"""
    (tmp_path / "a.fa").write_text(f">s\n{SEQ_A}\n")
    (tmp_path / "b.fa").write_text(f">s\n{SEQ_B}\n")
    o = tmp_path / "o"
    common = ["-o", o, "--model", models["one"], "--reconstruct", RECON]
    assert predict("-i", tmp_path / "a.fa", *common).exit_code == 0
    res = predict("-i", tmp_path / "b.fa", *common)
    assert res.exit_code == 0, res.output
    assert "1 predicted, 0 skipped, 0 failed of 1 records" in res.stdout
    assert "s  L=18  recomputing: sequence changed" in res.stderr
    assert scores(o, "s")["sequence"] == SEQ_B and np.load(o / "s.distmat.npy").shape == (18, 18)


def test_another_model_or_reconstructor_is_recomputed(models, tmp_path):
    common = [SEQ_A, "-o", tmp_path]
    assert predict(*common, "--model", models["one"], "--reconstruct", RECON).exit_code == 0
    first = scores(tmp_path)
    # the same files in another folder are the same model
    res = predict(*common, "--model", models["copy"], "--reconstruct", RECON)
    assert "0 predicted, 1 skipped" in res.stdout
    res = predict(*common, "--model", models["two"], "--reconstruct", RECON)
    assert "1 predicted, 0 skipped" in res.stdout and "recomputing: model changed (one " in res.stderr
    assert scores(tmp_path)["model"]["sha256"] != first["model"]["sha256"]
    assert scores(tmp_path)["model"]["name"] == "two"
    res = predict(*common, "--model", models["two"], "--reconstruct", "smacof")
    assert "1 predicted, 0 skipped" in res.stdout
    assert "recomputing: reconstructor changed (classical -> smacof)" in res.stderr
    assert scores(tmp_path)["reconstructor"]["name"] == "smacof"
    res = predict(*common, "--model", models["two"], "--reconstruct", "smacof", "--json")
    assert json.loads(res.stdout)["counts"] == {"ok": 0, "skipped": 1, "failed": 0}


def test_json_lists_only_files_that_exist(models, tmp_path):
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">good\n{SEQ_A}\n>bad\nMKT1AYI\n")
    out = tmp_path / "out"
    for expected in ("ok", "skipped"):
        res = predict("-i", fasta, "-o", out, "--model", models["one"], "--reconstruct", RECON, "--json")
        assert res.exit_code == 1
        by_id = {r["id"]: r for r in json.loads(res.stdout)["records"]}
        assert by_id["bad"]["status"] == "failed" and by_id["bad"]["files"] == {}
        assert by_id["good"]["status"] == expected
        assert sorted(by_id["good"]["files"]) == ["contacts", "distmat", "scores", "structure"]
        assert all((out / name).is_file() for name in by_id["good"]["files"].values())
    assert not list(out.glob("bad*"))


def test_a_finished_batch_imports_no_torch(models, tmp_path):
    """Deciding what is done reads files (the model's digest, config.json, the scores): the
    model is not loaded and torch not even imported."""
    args = [SEQ_A, "-o", str(tmp_path), "--model", str(models["one"]), "--reconstruct", RECON]
    assert predict(*args).exit_code == 0
    code = ("import sys\nfrom distfold.cli.main import cli\n"
            f"try:\n    cli(['predict', *{args!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 predicted, 1 skipped" in proc.stdout and proc.stdout.strip().endswith("no torch"), proc.stdout
    # a missing model is still an error, even with nothing to do
    res = CliRunner().invoke(cli, ["predict", *args[:3], "--model", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "model not found" in res.output
    with pytest.raises(InputError):
        P.request_of(None, tmp_path / "nope", {"name": RECON, "config": {}}, "pdb", None, None)
