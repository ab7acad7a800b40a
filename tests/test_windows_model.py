"""Windowed prediction with a real (tiny, randomly initialised) DistanceModel saved to
disk and loaded back: at the crop length, one residue over it, several times over it,
and through ``distfold predict``."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from distfold.pipeline.windows import plan_windows, predict_windowed, reconstruction_variance  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from distfold.cli.main import cli  # noqa: E402

CROP = 16
AA = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than contending for a busy machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from distfold.pipeline.model import DistanceModel
    from distfold.pipeline.prior import SeparationPrior

    rng = np.random.default_rng(0)
    mats = []
    for n in (20, 50, 90):
        x = np.cumsum(rng.normal(size=(n, 3)) * 2.2, 0)
        mats.append(np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)))
    prior = SeparationPrior(min_count=1).fit_distance_matrices(mats, max_separation=128)
    model = DistanceModel.build(("qwen", {"preset": "tiny"}), ("regression", {"pair_dim": 8, "n_blocks": 1}),
                                ("log1p", {}), prior=prior, crop=CROP)
    model.normaliser.fit(np.concatenate([m.ravel() for m in mats]))
    model.refresh_config()
    torch.manual_seed(0)
    with torch.no_grad():  # the read-out starts at zero; randomise it so outputs depend on the sequence context
        for p in model.head.parameters():
            if p.dim() > 1 and not p.abs().sum():
                p.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("model") / "tiny"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    from distfold.pipeline.model import DistanceModel

    return DistanceModel.load(model_dir)


def run_cli(*args: str):
    """``distfold ARGS`` in this process (no torch re-import); result has exit_code, stdout, stderr."""
    return CliRunner().invoke(cli, list(args))


def seq_of(n: int, seed: int = 1) -> str:
    return "".join(np.random.default_rng(seed).choice(list(AA), n))


def window_prediction(model, sequence, start, stop):
    return model.predict([sequence[start:stop]], lengths=[len(sequence)])[0]


def check_basic(res, n):
    d, v, cov = res["distance"], res["variance"], res["coverage"]
    assert d.shape == v.shape == cov.shape == (n, n)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(v, v.T)
    assert (np.diag(d) == 0).all() and np.isfinite(d).all() and (d >= 0).all()
    off = ~np.eye(n, dtype=bool)
    assert (v[off & (cov > 0)] > 0).all() and np.isfinite(v[cov > 0]).all()
    assert np.isinf(v[cov == 0]).all()
    rv = reconstruction_variance(res)  # reconstruction: uncovered pairs at the prior's uncertainty (0.5 d)^2
    unc = off & (cov == 0)
    np.testing.assert_allclose(rv[unc], (0.5 * d[unc]) ** 2, rtol=1e-5)


def test_model_reports_its_crop(model):
    assert model.config["crop"] == CROP


def test_at_crop_length_is_the_models_own_prediction(model):
    s = seq_of(CROP)
    res = predict_windowed(model, s)
    check_basic(res, CROP)
    assert res["windows"] == [(0, CROP)]
    one = model.predict([s])[0]
    np.testing.assert_array_equal(res["distance"], one["distance"])
    np.testing.assert_allclose(res["variance"], one["variance"], rtol=1e-6)
    assert (res["coverage"] == 1).all()


def test_one_residue_over_the_crop(model):
    n = CROP + 1
    s = seq_of(n, 2)
    res = predict_windowed(model, s)
    check_basic(res, n)
    assert res["windows"] == [(0, CROP), (1, n)]
    d, cov = res["distance"], res["coverage"]
    assert cov[0, n - 1] == 0 and np.isinf(res["variance"][0, n - 1])
    w0 = window_prediction(model, s, 0, CROP)
    w1 = window_prediction(model, s, 1, n)
    # residue 0 is only in window 0, residue n-1 only in window 1: their pairs are those windows' values
    np.testing.assert_array_equal(d[0, 1:CROP], w0["distance"][0, 1:])
    np.testing.assert_array_equal(d[n - 1, 1:n - 1], w1["distance"][-1, :-1])
    # pairs inside both windows: inverse-variance mean of the two
    a, b = w0["distance"][1:, 1:], w1["distance"][:-1, :-1]
    va, vb = w0["variance"][1:, 1:], w1["variance"][:-1, :-1]
    off = ~np.eye(CROP - 1, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):  # zero variance on the diagonal
        mean = (a / va + b / vb) / (1 / va + 1 / vb)
    np.testing.assert_allclose(d[1:CROP, 1:CROP][off], mean[off], rtol=1e-5)
    # the windows really disagree (context matters), so the check above is not vacuous
    assert np.abs(a - b)[off].max() > 1e-3


def test_several_times_the_crop(model):
    n = 5 * CROP + 3
    s = seq_of(n, 3)
    res = predict_windowed(model, s, stride=CROP // 2)
    check_basic(res, n)
    cov = res["coverage"]
    sep = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    assert (cov[(sep > 0) & (sep <= CROP // 2)] > 0).all() and (cov[sep >= CROP] == 0).all()
    # uncovered pairs: the model's own separation prior for this length, weight 0
    row = model.prior.row(n)
    unc = cov == 0
    np.testing.assert_allclose(res["distance"][unc], row[np.minimum(sep[unc], len(row) - 1)], rtol=1e-5)
    # a residue pair seen by one window only equals that window's prediction
    once = np.argwhere(np.triu(cov == 1, 1))
    for i, j in once[:: max(1, len(once) // 8)]:
        (s0, e0), = [(a, b) for a, b in res["windows"] if a <= i and j < b]
        wp = window_prediction(model, s, s0, e0)
        assert res["distance"][i, j] == wp["distance"][i - s0, j - s0]


def test_predict_cli_windows_long_chain(tmp_path, model_dir):
    n = 3 * CROP + 5
    out = tmp_path / "out"
    r = run_cli("predict", seq_of(n, 4), "--model", str(model_dir), "-o", str(out), "--device", "cpu",
                     "--reconstruct", "classical", "--window", "12", "--stride", "4", "--json")
    assert r.exit_code == 0, r.output
    scores = json.loads((out / "query.scores.json").read_text())
    assert scores["length"] == n
    assert scores["reconstruction"]["windows"] == len(range(0, n - 12 + 1, 4)) + ((n - 12) % 4 != 0)
    cov = np.zeros((n, n), int)
    for a, b in plan_windows(n, 12, 4):
        cov[a:b, a:b] += 1
    assert scores["reconstruction"]["uncovered_pair_fraction"] == pytest.approx((cov == 0).sum() / (n * (n - 1)))
    assert np.load(out / "query.distmat.npy").shape == (n, n)


def test_predict_cli_length_guard_and_bad_window(tmp_path, model_dir):
    r = run_cli("predict", seq_of(30, 5), "--model", str(model_dir), "-o", str(tmp_path / "o"),
                "--device", "cpu", "--max-length", "20")
    assert r.exit_code == 1
    assert "failed: query: record 'query': 30 residues exceeds --max-length 20" in r.stdout
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not (tmp_path / "o" / "query.pdb").exists()
    r = run_cli("predict", seq_of(30, 5), "--model", str(model_dir), "-o", str(tmp_path / "p"),
                "--device", "cpu", "--window", "8", "--stride", "9")
    assert r.exit_code == 2
    assert "stride must be between 1 and the window (8), got 9" in r.stderr


def test_predictor_weights_uncovered_pairs_by_the_prior_uncertainty(model):
    from distfold.components import Reconstruction
    from distfold.pipeline.predictor import Predictor

    class Spy:
        accepts_weights = True

        def reconstruct(self, distances, weights=None):
            self.distances, self.weights = distances, weights
            n = len(distances)
            return Reconstruction(np.c_[np.arange(n) * 3.8, np.zeros((n, 2))], {"mirrored": False})

    n = 3 * CROP
    spy = Spy()
    pred = Predictor(model, spy, window=CROP, stride=CROP // 2).predict(seq_of(n, 6))
    res = predict_windowed(model, seq_of(n, 6), CROP, CROP // 2)
    unc = res["coverage"] == 0
    w = spy.weights
    assert (w[unc] > 0).all()
    # relative weights follow 1 / variance, uncovered pairs at (0.5 d)^2
    i, j = np.argwhere(unc)[0]
    a, b = np.argwhere(np.triu(res["coverage"] > 0, 1))[0]
    assert w[i, j] / w[a, b] == pytest.approx(res["variance"][a, b] / (0.5 * res["distance"][i, j]) ** 2, rel=1e-4)
    # confidence counts them with the prior's uncertainty: possible contacts nobody predicted, so the
    # confidence is lower than with those pairs left out (no confidence is invented for them)
    from distfold.pipeline.confidence import predicted_lddt
    from distfold.pipeline.windows import reconstruction_variance

    np.testing.assert_allclose(pred.confidence, predicted_lddt(res["distance"], reconstruction_variance(res)),
                               rtol=1e-6)
    assert pred.confidence.mean() < predicted_lddt(res["distance"], res["variance"]).mean()
