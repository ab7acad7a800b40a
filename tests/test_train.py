"""`distfold train`: the loss falls, checkpoints round-trip and resume exactly, SIGINT saves,
DDP ranks agree. Tiny preset on the real chains in tests/data/chains; seconds each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trainkit import SPLITS, make_dataset

torch = pytest.importorskip("torch")
from safetensors.numpy import load_file  # noqa: E402

from distfold.errors import DistfoldError  # noqa: E402
from distfold.pipeline.model import DistanceModel  # noqa: E402
from distfold.pipeline.train import TrainOptions, lr_factor, train  # noqa: E402

TINY = ["--preset", "tiny", "--crop", "64", "--batch-size", "4", "--lr", "3e-3", "--warmup", "2",
        "--threads", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds")


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "distfold", "train", *args]


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for name in ("backbone.safetensors", "head.safetensors"):
        out.update({f"{name}:{k}": v for k, v in load_file(str(model_dir / name)).items()})
    return out


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """One short in-process run shared by several tests."""
    out = tmp_path_factory.mktemp("run") / "model"
    torch.set_num_threads(1)
    opts = TrainOptions(backbone_params={"preset": "tiny"}, crop=64, batch_size=4, lr=3e-3, warmup=2,
                        max_steps=40, eval_every=20, save_every=20, keep=1, log_every=1, seed=0)
    summary = train(dataset, out, opts, quiet=True)
    return out, summary


def test_loss_falls(trained):
    out, summary = trained
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1, (losses[:8], losses[-8:])
    assert summary["steps"] == 40


def test_validation_logged_against_prior(trained):
    out, summary = trained
    val = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "val"]
    assert [r["step"] for r in val] == [20, 40]
    for r in val:
        assert r["n_chains"] == 2 and 0 < r["mae"] < 30 and 0 <= r["lddt"] <= 1
        assert 0 < r["prior_mae"] < 30  # the baseline is logged next to the model
    assert summary["best_val"]["step"] in (20, 40)


def test_checkpoint_layout_and_round_trip(trained, dataset):
    out, _ = trained
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"config.json", "backbone.safetensors", "head.safetensors", "prior.json", "metrics.jsonl"} <= files
    assert {"checkpoints/step-0000040/trainer_state.json", "checkpoints/step-0000040/training_state.safetensors",
            "best/config.json"} <= files
    assert not any(f.startswith("checkpoints/step-0000020") for f in files)  # keep=1
    assert all(f.endswith((".json", ".jsonl", ".safetensors")) for f in files), files  # no pickles
    text = (out / "config.json").read_text()
    config = json.loads(text)
    assert text == json.dumps(config, indent=2, sort_keys=True) + "\n"
    assert config["distfold_version"] and config["crop"] == 64
    assert config["dataset_fingerprint"] == json.loads((dataset / "dataset.json").read_text())["fingerprint"]
    assert config["components"]["backbone"]["distribution"] == "distfold"
    assert config["normaliser_scale"] == config["components"]["normaliser"]["params"]["scale"] > 0
    m1 = DistanceModel.load(out)
    m2 = DistanceModel.load(out / "checkpoints" / "step-0000040")
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    a, b = m1.predict([seq])[0], m2.predict([seq])[0]
    np.testing.assert_array_equal(a["distance"], b["distance"])
    assert not m1.training


def test_lr_schedule():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)


def _tiny_opts(**kw) -> TrainOptions:
    base = dict(backbone_params={"preset": "tiny"}, crop=64, batch_size=4, lr=3e-3, warmup=2, log_every=1, seed=0)
    base.update(kw)
    return TrainOptions(**base)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(dataset, tmp_path):
    torch.set_num_threads(1)
    train(dataset, tmp_path / "full", _tiny_opts(max_steps=24, save_every=6, keep=0), quiet=True)
    part = tmp_path / "part"
    args = [str(dataset), *TINY, "--max-steps", "24", "--save-every", "6", "--keep", "0", "-o", str(part)]
    proc = subprocess.Popen(_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for(part / "checkpoints" / "step-0000006" / "trainer_state.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (part / "config.json").exists()  # it really stopped before the end
    summary = train(dataset, part, _tiny_opts(max_steps=24, save_every=6, keep=0), resume=True, quiet=True)
    assert summary["steps"] == 24
    a, b = _weights(tmp_path / "full"), _weights(part)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_sigint_saves_checkpoint_then_resume(dataset, tmp_path):
    out = tmp_path / "m"
    args = [str(dataset), *TINY, "--max-steps", "100000", "-o", str(out)]
    proc = subprocess.Popen(_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for(out / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "checkpoint saved" in err and "Traceback" not in err
    ckpts = sorted((out / "checkpoints").iterdir())
    assert len(ckpts) == 1 and (ckpts[0] / "trainer_state.json").is_file()
    step = json.loads((ckpts[0] / "trainer_state.json").read_text())["step"]
    torch.set_num_threads(1)
    train(dataset, out, _tiny_opts(max_steps=step + 2), resume=True, quiet=True)
    assert json.loads((out / "config.json").read_text())["training"]["step"] == step + 2


def test_fresh_run_refuses_existing_checkpoints(trained, dataset):
    out, _ = trained
    with pytest.raises(DistfoldError, match="--resume"):
        train(dataset, out, _tiny_opts(max_steps=2), quiet=True)


def test_init_starts_from_a_saved_models_weights(trained, dataset, tmp_path, capsys):
    src, _ = trained
    out = tmp_path / "tuned"
    torch.set_num_threads(1)
    # a learning rate so small that the two steps cannot move the weights visibly
    train(dataset, out, TrainOptions(init=str(src), crop=48, batch_size=2, lr=1e-12, warmup=0, max_steps=2,
                                     log_every=1, seed=5), quiet=True)
    before, after = _weights(src), _weights(out)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-6, err_msg=k)
    src_config, config = (json.loads((d / "config.json").read_text()) for d in (src, out))
    assert config["components"] == src_config["components"]
    assert config["normaliser_scale"] == src_config["normaliser_scale"]
    assert config["crop"] == 48 and config["init"] == {"from": str(src), "crop": 64, "step": 40,
                                                        "dataset_fingerprint": src_config["dataset_fingerprint"]}
    options = config["training"]["options"]  # what the run really trained, not the defaults
    assert options["init"] == str(src) and options["backbone_params"]["preset"] == "tiny"
    assert options["head_params"] == src_config["components"]["distance_head"]["params"]
    capsys.readouterr()
    DistanceModel.load(out)  # the fine-tuned model is a plain model of this format version
    assert "unknown keys" not in capsys.readouterr().err


def test_init_rejects_architecture_options_and_missing_models(trained, dataset, tmp_path):
    from click.testing import CliRunner

    from distfold.cli.main import cli

    src, _ = trained
    r = CliRunner().invoke(cli, ["train", str(dataset), "-o", str(tmp_path / "m"), "--init", str(src),
                                 "--head-params", '{"pair_dim": 8}', "--max-steps", "1"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "--init" in r.output and "--head-params" in r.output and not (tmp_path / "m").exists()
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli, ["train", str(dataset), "-o", str(tmp_path / "m"), "--init", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "not a model directory" in r.output and len(r.output.strip().splitlines()) == 1


def test_bad_dataset_is_one_line_error(tmp_path):
    from click.testing import CliRunner

    from distfold.cli.main import cli

    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "empty"), "-o", str(tmp_path / "m")])
    assert r.exit_code == 1
    assert r.output.strip().startswith("Error:") and len(r.output.strip().splitlines()) == 1
    assert "dataset" in r.output and not (tmp_path / "m").exists()


@pytest.mark.slow
def test_ddp_two_cpu_processes(dataset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "distfold", "train", str(dataset), *TINY, "--max-steps", "4", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ddp = [x for x in rows if x["kind"] == "ddp"]
    assert len(ddp) == 1 and ddp[0]["world_size"] == 2 and ddp[0]["max_rank_weight_diff"] <= 1e-6
    state = json.loads((out / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["sampler_rng_by_rank"]) == 2
    assert state["sampler_rng_by_rank"][0] != state["sampler_rng_by_rank"][1]  # ranks draw different crops
    model = DistanceModel.load(out)
    assert model.predict(["MKTAYIAKQR"])[0]["distance"].shape == (10, 10)



@pytest.mark.slow
def test_ddp_with_ss_readout_when_a_rank_draws_no_labelled_chain(tmp_path):
    """Joint secondary-structure training under DDP: with one crop per rank and only one
    labelled training chain, the ranks often disagree on whether their batch has labels; each
    must still give the read-out a gradient (zero where unlabelled), or the ranks' gradient
    reductions no longer match and gloo aborts (it did, in the first joint retrain)."""
    first = next(u for u, split in SPLITS.items() if split == "train")
    from distfold.structure.io import read_chain
    n = len(read_chain(Path(__file__).parent / "data" / "chains" / f"{first}.pdb.gz").sequence)
    ds = make_dataset(tmp_path / "ds", ss={first: ("HHHHEEEECCCC" * n)[:n]})
    out = tmp_path / "ddp_ss"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "distfold", "train", str(ds), "--preset", "tiny", "--crop", "32", "--batch-size", "1", "--lr", "3e-3",
           "--warmup", "2", "--threads", "1", "--log-every", "1", "--max-steps", "12", "-o", str(out),
           "--head-params", json.dumps({"pair_dim": 8, "n_blocks": 1, "ss_weight": 0.5, "ss_kernel": 5})]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x for x in ddp if x["kind"] == "ddp"][0]["max_rank_weight_diff"] <= 1e-6
    assert DistanceModel.load(out).head.ss is not None

# -- issue 16: damaged checkpoints, repeated metrics, modes, early errors, warnings ------------------

def _rows(model_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_skips_a_damaged_newest_checkpoint(dataset, tmp_path, capsys):
    """Before: a truncated backbone.safetensors in the newest checkpoint was a SafetensorError
    traceback although the previous checkpoint was intact."""
    torch.set_num_threads(1)
    out = tmp_path / "m"
    train(dataset, out, _tiny_opts(max_steps=4, save_every=2, keep=0), quiet=True)
    newest = out / "checkpoints" / "step-0000004"
    weights = newest / "backbone.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    capsys.readouterr()
    summary = train(dataset, out, _tiny_opts(max_steps=4, save_every=2, keep=0), resume=True, quiet=True)
    err = capsys.readouterr().err
    assert ("Warning: checkpoint step-0000004 is damaged (backbone.safetensors: not a readable safetensors file"
            in err), err
    assert "set aside as step-0000004.damaged; resuming from step-0000002 instead" in err
    assert summary["steps"] == 4
    assert (out / "checkpoints" / "step-0000004.damaged" / "backbone.safetensors").is_file()  # kept, not deleted
    DistanceModel.load(out / "checkpoints" / "step-0000004")  # written again, whole
    steps = [(r["kind"], r["step"]) for r in _rows(out)]
    assert len(steps) == len(set(steps)), steps  # steps 3 and 4 were trained again, and logged once


def test_resume_with_every_checkpoint_damaged_is_one_line(dataset, tmp_path):
    from click.testing import CliRunner

    from distfold.cli.main import cli

    torch.set_num_threads(1)
    out = tmp_path / "m"
    train(dataset, out, _tiny_opts(max_steps=2, save_every=1, keep=0), quiet=True)
    for ckpt in (out / "checkpoints").iterdir():
        (ckpt / "training_state.safetensors").write_bytes(b"\0" * 10)
    r = CliRunner().invoke(cli, ["train", str(dataset), "-o", str(out), *TINY, "--max-steps", "2", "--resume"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "no checkpoint can be resumed from (step-0000002: training_state.safetensors: not a readable" in r.output
    assert "step-0000001: training_state.safetensors" in r.output


def test_metrics_do_not_repeat_the_resumed_step(dataset, tmp_path):
    """Before: resuming a finished run validated its last step again and logged it twice."""
    torch.set_num_threads(1)
    out = tmp_path / "m"
    train(dataset, out, _tiny_opts(max_steps=3, save_every=1, keep=0), quiet=True)
    first = _rows(out)
    train(dataset, out, _tiny_opts(max_steps=3, save_every=1, keep=0), resume=True, quiet=True)
    assert _rows(out) == first
    # a run that died after writing metrics for steps its last checkpoint does not hold
    import shutil

    shutil.rmtree(out / "checkpoints" / "step-0000003")
    train(dataset, out, _tiny_opts(max_steps=3, save_every=1, keep=0), resume=True, quiet=True)
    steps = [(r["kind"], r["step"]) for r in _rows(out)]
    assert steps == [("train", 1), ("train", 2), ("train", 3), ("val", 3)], steps


def test_checkpoint_folders_follow_the_umask(trained):
    """Before: checkpoints/step-N/ and best/ were 0700 and their safetensors 0600."""
    out, _ = trained
    mask = os.umask(0)
    os.umask(mask)
    for p in [out / "best", *(out / "checkpoints").iterdir(), out]:
        assert p.stat().st_mode & 0o777 == 0o777 & ~mask, p
        for f in p.iterdir():
            if f.is_file():
                assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f


def test_a_missing_base_model_folder_is_named_before_anything_is_fitted(dataset, tmp_path):
    """Before: 'not in the local Hugging Face cache: Repo id must use alphanumeric chars',
    after fitting the separation prior."""
    r = _run(str(dataset), "-o", str(tmp_path / "m"), "--base-model", "./missing", "--max-steps", "1")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["Error: --base-model ./missing: no such directory"]
    assert not (tmp_path / "m").exists()


def test_a_base_model_that_cannot_load_fails_before_the_prior_is_fitted(dataset, tmp_path):
    r = _run(str(dataset), "-o", str(tmp_path / "m"), "--base-model", "distfold-test/not-cached", "--max-steps", "1")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: base model 'distfold-test/not-cached'"), r.stderr
    assert "separation prior" not in r.stderr


def test_fewer_steps_than_the_warmup_warns(dataset, tmp_path, capsys):
    torch.set_num_threads(1)
    train(dataset, tmp_path / "m", _tiny_opts(max_steps=2, warmup=100), quiet=True)
    err = capsys.readouterr().err
    assert ("Warning: the warm-up (100 steps) is longer than the run (2 steps): the learning rate only reaches 2% "
            "of --lr 0.003") in err
    train(dataset, tmp_path / "n", _tiny_opts(max_steps=2, warmup=2), quiet=True)
    assert "Warning" not in capsys.readouterr().err


def _labelled(dataset, out: Path) -> Path:
    """The test dataset with DSSP labels, as ``distfold data build`` stores them."""
    from distfold.data.dataset import Dataset, write_dataset
    from distfold.data.labels import chain_ss_labels
    from distfold.structure.io import chains_of, load_structure

    ds = Dataset(dataset)
    recs, coords = [], []
    for i in range(len(ds)):
        r = dict(ds.records[i])
        structure = load_structure(Path(__file__).parent / "data" / "chains" / r["source"])
        chain = chains_of(structure)[0]
        assert chain.sequence == r["sequence"]
        r["ss"] = chain_ss_labels(structure, [chain])[0]
        r.pop("offset")
        recs.append(r)
        coords.append(ds[i].coords)
    return write_dataset(out, recs, coords, params={"test": True})


def test_a_secondary_structure_head_trains_jointly_and_reports_q3(dataset, tmp_path):
    """DSSP labels in the dataset train the read-out; its cross-entropy falls and validation
    reports Q3."""
    from distfold.data.dataset import Dataset
    from distfold.pipeline.train import CropSampler, ss_targets

    labelled = _labelled(dataset, tmp_path / "ds")
    torch.set_num_threads(1)
    opts = _tiny_opts(max_steps=30, head_params={"ss_weight": 1.0, "ss_kernel": 7})
    summary = train(labelled, tmp_path / "m", opts, quiet=True)
    assert 0.0 <= summary["final_val"]["q3"] <= 1.0
    model = DistanceModel.load(tmp_path / "m")
    sampler = CropSampler(Dataset(labelled), Dataset(labelled).indices("train"), 64, seed=1)
    batch = sampler.batch(8)
    size = max(len(s) for s in batch["sequences"])
    with torch.no_grad():
        trained_ce = float(model.head.ss_loss(model(batch["sequences"], batch["lengths"]), ss_targets(batch["ss"], size)))
    assert trained_ce < 1.0  # an untrained 3-way read-out sits at about log 3 = 1.10
    # without labels the same head trains on the distances alone
    plain = train(dataset, tmp_path / "p", _tiny_opts(max_steps=3, head_params={"ss_weight": 1.0}), quiet=True)
    assert plain["steps"] == 3 and "q3" not in (plain["final_val"] or {})


def test_ss_only_adds_a_read_out_to_a_frozen_model(trained, dataset, tmp_path):
    from distfold.errors import InputError

    labelled = _labelled(dataset, tmp_path / "ds")
    base = DistanceModel.load(trained[0])
    torch.set_num_threads(1)
    summary = train(labelled, tmp_path / "m", _tiny_opts(max_steps=8, init=str(trained[0]), ss_only=True), quiet=True)
    assert summary["trainable_parameters"] == sum(p.numel() for p in DistanceModel.load(tmp_path / "m").head.ss.parameters())
    again = DistanceModel.load(tmp_path / "m")
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    a, b = base.predict([seq])[0], again.predict([seq])[0]
    np.testing.assert_array_equal(a["distance"], b["distance"])  # the distances are the frozen model's
    assert "ss_probs" not in a and b["ss_probs"].shape == (len(seq), 3)
    assert again.config["components"]["distance_head"]["params"]["ss_weight"] > 0
    assert 0.0 <= summary["final_val"]["q3"] <= 1.0
    with pytest.raises(InputError, match="--init"):
        train(labelled, tmp_path / "x", _tiny_opts(max_steps=2, ss_only=True), quiet=True)
