"""distfold.pipeline.predictor.Predictor: built once, then one sequence at a time; the
batch (distfold.pipeline.predict) writes exactly what it returns; capabilities are read
from declared attributes (accepts_weights, error_distribution), never sniffed."""

import json

import numpy as np
import pytest

from distfold.components import Reconstruction
from distfold.errors import InputError, UsageError
from distfold.pipeline import predict as P
from distfold.pipeline.calibration import CONFIG_KEY, apply
from distfold.pipeline.confidence import predicted_lddt
from distfold.pipeline.predictor import PredictedDistances, Prediction, Predictor, error_distribution
from distfold.structure.sequence import query_record

from test_predict import HelixModel

SEQ = "ACDEFGHIKLMNPQRSTVWY"


class Spy:
    """A reconstructor that keeps what the core hands it; returns a straight line."""

    def __init__(self, accepts_weights=True):
        self.accepts_weights = accepts_weights
        self.calls = []

    def get_config(self):
        return {"accepts_weights": self.accepts_weights}

    def reconstruct(self, distances, weights=None):
        self.calls.append((distances, weights))
        n = len(distances)
        return Reconstruction(np.c_[np.arange(n) * 3.8, np.zeros((n, 2))], {"stress1": 0.0})


def test_built_once_then_one_sequence_at_a_time():
    model = HelixModel(crop=16)
    p = Predictor(model, "classical")
    assert (p.window, p.stride) == (16, 8) and p.distribution == "laplace" and p.calibration is None
    assert p.reconstructor_info["name"] == "classical" and p.identity["path"] is None
    d = p.distances(SEQ * 2)
    assert isinstance(d, PredictedDistances) and d.windows == len(model.calls) > 1
    assert d.distance.dtype == np.float32 and d.distance.shape == (40, 40) and d.coverage is not None
    model.calls.clear()
    pred = p.predict(SEQ)
    assert isinstance(pred, Prediction) and pred.coords.shape == (20, 3)
    assert pred.diagnostics["windows"] == 2 and pred.diagnostics["weighted"] is True
    assert {"model_s", "reconstruct_s", "confidence_s", "contacts_s"} == set(pred.timings)
    # pairs no window saw count at the prior's uncertainty, not at an infinite variance
    wv = p.distances(SEQ).weight_variance
    assert np.isinf(pred.variance).any() and np.isfinite(wv).all()
    np.testing.assert_allclose(pred.confidence, predicted_lddt(pred.distance, wv), rtol=1e-12)


def test_the_batch_writes_what_the_predictor_returns(tmp_path):
    p = Predictor(HelixModel(), "classical")
    pred = p.predict(SEQ)
    summary = P.run_predict([query_record(SEQ)], tmp_path, predictor=p)
    assert summary["counts"]["ok"] == 1 and summary["reconstructor"] == p.reconstructor_info
    assert np.array_equal(np.load(tmp_path / "query.distmat.npy"), pred.distance)
    scores = json.loads((tmp_path / "query.scores.json").read_text())
    assert scores["confidence"] == [round(float(c), 2) for c in pred.confidence]
    assert scores["confidence_method"] == p.confidence_method
    assert scores["confidence_method"].endswith("laplace per-pair error model, uncalibrated")


def test_weights_only_for_a_reconstructor_that_declares_it():
    spy = Spy(accepts_weights=True)
    pred = Predictor(HelixModel(), spy).predict(SEQ)
    _, w = spy.calls[0]
    assert w is not None and w.shape == (20, 20) and pred.diagnostics["weighted"] is True
    spy = Spy(accepts_weights=False)
    pred = Predictor(HelixModel(), spy).predict(SEQ)
    assert spy.calls[0][1] is None and pred.diagnostics["weighted"] is False
    assert pred.confidence is not None  # confidence does not depend on the weights


def test_the_core_checks_coordinates_and_fixes_the_hand():
    class Bad(Spy):
        def reconstruct(self, distances, weights=None):
            return Reconstruction(np.zeros((3, 3)), {})

    with pytest.raises(Exception, match=r"shape \(3, 3\)"):
        Predictor(HelixModel(), Bad()).predict(SEQ)
    pred = Predictor(HelixModel(), Spy()).predict(SEQ)
    assert {"mirrored", "handedness_margin"} <= set(pred.diagnostics)
    np.testing.assert_allclose(pred.coords.mean(0), 0.0, atol=1e-9)  # centred by the core


def test_error_distribution_is_declared_by_the_head():
    class Head:
        error_distribution = "gaussian"

    class WithHead(HelixModel):
        head = Head()

    assert error_distribution(WithHead()) == "gaussian"
    Head.error_distribution = None
    assert error_distribution(WithHead()) is None
    # a model with only a config: the class attribute of the head it names
    m = HelixModel()
    m.config["components"]["distance_head"]["name"] = "distogram"
    assert error_distribution(m) == "gaussian"
    m.config["components"]["distance_head"]["name"] = "regression"
    assert error_distribution(m) == "laplace"
    assert error_distribution(object()) == "laplace"


def test_a_gaussian_head_gives_gaussian_confidence():
    m = HelixModel()
    m.config["components"]["distance_head"]["name"] = "distogram"
    p = Predictor(m, Spy())
    pred = p.predict(SEQ)
    assert "gaussian per-pair error model" in p.confidence_method
    np.testing.assert_allclose(pred.confidence, predicted_lddt(pred.distance, pred.variance, "gaussian"),
                               rtol=1e-12)


def test_the_models_calibration_is_applied_and_can_be_left_out():
    m = HelixModel()
    cal = {"raw": [0.0, 50.0, 100.0], "calibrated": [0.0, 10.0, 100.0], "split": "val", "n_chains": 3}
    m.config[CONFIG_KEY] = cal
    p = Predictor(m, Spy())
    d = p.distances(SEQ)
    raw = p.confidence(d.distance, d.weight_variance, calibrated=False)
    np.testing.assert_allclose(p.predict(SEQ).confidence, apply(raw, cal))
    assert p.confidence_method.endswith("calibrated on 3 val chains")


def test_bad_settings_fail_when_the_predictor_is_built(tmp_path):
    with pytest.raises(UsageError, match="stride must be between 1 and the window"):
        Predictor(HelixModel(), Spy(), window=8, stride=9)
    with pytest.raises(UsageError, match="unknown reconstructor"):
        Predictor(HelixModel(), "no-such-method")
    with pytest.raises(InputError, match="model not found"):
        Predictor.load(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a file"):
        Predictor.load(tmp_path / "file")
    p = Predictor(HelixModel(), None)  # distances and confidence only
    assert p.distances(SEQ).distance.shape == (20, 20)
    with pytest.raises(UsageError, match="no reconstructor"):
        p.predict(SEQ)
