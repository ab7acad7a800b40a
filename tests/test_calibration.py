"""Confidence calibration: the isotonic map, its use in predict/evaluate, and `distfold calibrate`."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from distfold.pipeline.calibration import CONFIG_KEY, apply, fit_isotonic, from_config

from trainkit import make_dataset


def test_isotonic_map_is_monotone_and_recovers_a_known_relation():
    rng = np.random.default_rng(0)
    raw = rng.uniform(30, 90, 5000)
    observed = np.clip(0.8 * raw - 20 + rng.normal(0, 5, raw.size), 0, 100)  # over-confident by 20-38
    cal = fit_isotonic(raw, observed)
    x, y = np.array(cal["raw"]), np.array(cal["calibrated"])
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
    assert x[0] == pytest.approx(raw.min()) and x[-1] == pytest.approx(raw.max())
    got = apply(np.array([40.0, 60.0, 80.0]), cal)
    assert np.allclose(got, [12.0, 28.0, 44.0], atol=2.0)
    assert abs(apply(raw, cal).mean() - observed.mean()) < 0.5  # isotonic fits preserve the mean


def test_apply_is_constant_beyond_the_knots_and_passes_none_through():
    cal = {"raw": [20.0, 80.0], "calibrated": [10.0, 50.0]}
    assert apply(np.array([0.0, 50.0, 100.0]), cal).tolist() == [10.0, 30.0, 50.0]
    assert apply(None, cal) is None
    raw = np.array([1.0, 2.0])
    assert apply(raw, None) is raw


def test_fit_needs_two_residues_and_config_is_validated():
    with pytest.raises(ValueError, match="two residues"):
        fit_isotonic(np.array([50.0]), np.array([20.0]))
    assert from_config({}) is None
    with pytest.raises(ValueError, match=CONFIG_KEY):
        from_config({CONFIG_KEY: {"raw": [2.0, 1.0], "calibrated": [0.0, 1.0]}})


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory):
    """A tiny model trained for a few steps, calibrated on the test dataset's val split by the CLI."""
    from click.testing import CliRunner

    from distfold.cli.main import cli

    root = tmp_path_factory.mktemp("calib")
    ds = make_dataset(root / "ds")
    run = root / "run"
    res = CliRunner().invoke(cli, ["train", str(ds), "-o", str(run), "--preset", "tiny", "--crop", "32",
                                   "--max-steps", "2", "--batch-size", "2", "--eval-every", "2", "--warmup", "1",
                                   "--json"])
    assert res.exit_code == 0, res.output
    model = root / "model"
    shutil.copytree(run / "best", model)
    before = json.loads((model / "config.json").read_text())
    res = CliRunner().invoke(cli, ["calibrate", str(ds), "--model", str(model), "--json"])
    assert res.exit_code == 0, res.output
    return ds, model, before, json.loads(res.stdout)


def test_calibrate_command_writes_the_map_and_reports_honestly(calibrated_model):
    ds, model, before, report = calibrated_model
    config = json.loads((model / "config.json").read_text())
    assert {k: v for k, v in config.items() if k != CONFIG_KEY} == before  # nothing else changed
    cal = config[CONFIG_KEY]
    assert cal["split"] == "val" and cal["n_chains"] == 2 == report["n_chains"]
    assert cal["n_residues"] == report["n_residues"] > 100
    assert report["written"].endswith("config.json")
    # calibrated mean equals the observed mean on the fitting residues (isotonic regression)
    assert report["mean_calibrated"] == pytest.approx(report["mean_observed"], abs=1.0)
    assert report["mae_cross_fitted"] is not None and report["mae_raw"] >= 0


def test_calibrating_again_fits_the_raw_confidence_not_the_calibrated_one(calibrated_model):
    """The predictor applies the model's calibration; fitting a new one must start from the raw values,
    so a second fit on the same chains gives the same map."""
    from distfold.data.dataset import Dataset
    from distfold.pipeline.calibration import fit_model_calibration
    from distfold.pipeline.predictor import Predictor

    ds, model, _, _ = calibrated_model
    predictor = Predictor.load(model, reconstructor=None)
    assert predictor.calibration is not None
    stored, _ = fit_model_calibration(predictor, Dataset(ds))
    cal = json.loads((model / "config.json").read_text())[CONFIG_KEY]
    # (to float noise: the CLI ran on one thread)
    np.testing.assert_allclose(stored["raw"], cal["raw"], rtol=1e-5)
    np.testing.assert_allclose(stored["calibrated"], cal["calibrated"], rtol=1e-5)


def test_predict_reports_calibrated_confidence(calibrated_model, tmp_path):
    from click.testing import CliRunner

    from distfold.cli.main import cli
    from distfold.data.dataset import Dataset

    ds, model, _, _ = calibrated_model
    seq = Dataset(ds)[0].sequence
    res = CliRunner().invoke(cli, ["predict", seq, "-o", str(tmp_path / "out"), "--model", str(model),
                                   "--reconstruct", "classical"])
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "out" / "query.scores.json").read_text())
    cal = json.loads((model / "config.json").read_text())[CONFIG_KEY]
    lo, hi = min(cal["calibrated"]), max(cal["calibrated"])
    assert all(lo - 0.006 <= c <= hi + 0.006 for c in scores["confidence"])  # rounded to 0.01
    assert "calibrated on 2 val chains" in scores["confidence_method"]


def test_calibrate_bad_inputs(tmp_path, calibrated_model):
    from click.testing import CliRunner

    from distfold.cli.main import cli

    ds, model, _, _ = calibrated_model
    res = CliRunner().invoke(cli, ["calibrate", str(ds), "--model", str(model), "--split", "nope"])
    assert res.exit_code != 0 and "no chains in split 'nope'" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["calibrate", str(ds), "--model", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "Traceback" not in res.output
