"""Window plan, confidence-weighted merge and memory guard (distfold.pipeline.windows), with a
fake model whose output depends on the window it sees, so merging is observable."""

from __future__ import annotations

import numpy as np
import pytest

from distfold.components import Reconstruction
from distfold.errors import InputError, UsageError
from distfold.pipeline.predictor import Predictor
from distfold.pipeline.windows import (UNCOVERED_CV, PairAccumulator, check_length, memory_max_length, plan_windows,
                                       predict_windowed, reconstruction_variance, separation_fill)

AA = "ACDEFGHIKLMNPQRSTVWY"


class WindowDependentModel:
    """Distances of a fixed random-walk chain, plus an offset and a variance that depend
    on where the window starts: windows disagree, so the merge rule is visible."""

    def __init__(self, length: int, crop: int, variance: bool = True, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.sequence = "".join(rng.choice(list(AA), length))
        self.x = np.cumsum(rng.normal(size=(length, 3)) * 2.2, 0)
        self.config = {"crop": crop}
        self.variance = variance
        self.calls: list[int] = []
        self.lengths: list[int] = []

    def window_output(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        x = self.x[start:stop]
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)) + 0.37 * (start % 5)
        np.fill_diagonal(d, 0.0)
        v = np.full(d.shape, 1.0 + start % 3)
        np.fill_diagonal(v, 0.0)
        return d.astype(np.float32), v.astype(np.float32)

    def predict(self, sequences, lengths=None):
        self.lengths.extend(lengths or [])
        out = []
        for q in sequences:
            start = self.sequence.index(q)
            self.calls.append(len(q))
            d, v = self.window_output(start, start + len(q))
            out.append({"distance": d, "variance": v if self.variance else None})
        return out


class SpyReconstructor:
    """Keeps what the core hands a reconstructor; returns a straight line."""

    accepts_weights = True

    def get_config(self):
        return {}

    def reconstruct(self, distances, weights=None):
        self.distances, self.weights = distances, weights
        n = len(distances)
        return Reconstruction(np.c_[np.arange(n) * 3.8, np.zeros((n, 2))], {})


def brute_force(model: WindowDependentModel, plan):
    """Per-pair lists of (d, v) from every window covering the pair."""
    n = len(model.sequence)
    seen: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for s, e in plan:
        d, v = model.window_output(s, e)
        for a in range(s, e):
            for b in range(s, e):
                if a != b:
                    seen.setdefault((a, b), []).append((float(d[a - s, b - s]), float(v[a - s, b - s])))
    return n, seen


# -- plan ----------------------------------------------------------------------

def test_plan_at_crop_is_one_window():
    assert plan_windows(64, 64) == [(0, 64)]
    assert plan_windows(10, 64) == [(0, 10)]


def test_plan_one_over_crop():
    assert plan_windows(65, 64) == [(0, 64), (1, 65)]


@pytest.mark.parametrize("length,window,stride", [(300, 64, 32), (1000, 128, 64), (257, 64, 17), (500, 50, 50)])
def test_plan_covers_every_pair_within_window_minus_stride(length, window, stride):
    plan = plan_windows(length, window, stride)
    assert plan[0][0] == 0 and plan[-1][1] == length
    assert all(e - s == window for s, e in plan)
    starts = [s for s, _ in plan]
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    acc = PairAccumulator(length)
    for s, e in plan:
        acc.coverage[s:e, s:e] += 1
    i, j = np.triu_indices(length, 1)
    sep = j - i
    cov = acc.coverage[i, j] > 0
    assert cov[sep <= window - stride].all()
    assert not cov[sep >= window].any()


@pytest.mark.parametrize("window,stride", [(1, None), (64, 0), (64, 65), ("x", None)])
def test_plan_rejects_bad_window_or_stride(window, stride):
    with pytest.raises(UsageError):
        plan_windows(100, window, stride)


# -- merge ----------------------------------------------------------------------

@pytest.mark.parametrize("length", [48, 49, 170])
def test_predict_windowed_merges_by_inverse_variance(length):
    crop = 48
    model = WindowDependentModel(length, crop)
    res = predict_windowed(model, model.sequence, batch_size=3)
    d, v, cov = res["distance"], res["variance"], res["coverage"]
    assert d.shape == v.shape == cov.shape == (length, length)
    assert d.dtype == np.float32 and v.dtype == np.float32
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(v, v.T)
    assert (np.diag(d) == 0).all() and (np.diag(v) == 0).all()
    assert np.isfinite(d).all()
    assert all(c <= crop for c in model.calls)
    assert model.lengths == [length] * len(res["windows"])  # windows keep the chain's length bucket

    n, seen = brute_force(model, res["windows"])
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            obs = seen.get((a, b))
            if obs is None:
                assert cov[a, b] == 0 and v[a, b] == np.inf
                continue
            assert cov[a, b] == len(obs)
            ds = np.array([o[0] for o in obs])
            vs = np.array([o[1] for o in obs])
            w = 1 / vs
            mean = (w * ds).sum() / w.sum()
            if len(obs) == 1:  # one window: its value exactly
                assert d[a, b] == np.float32(ds[0])
            else:
                assert d[a, b] == pytest.approx(mean, rel=1e-5)
            mix = (w * (vs + (ds - mean) ** 2)).sum() / w.sum()
            assert v[a, b] == pytest.approx(mix, rel=1e-4, abs=1e-5)
    if length == crop:
        single, _ = model.window_output(0, length)
        np.testing.assert_array_equal(d, single)
        assert len(res["windows"]) == 1


def test_uncovered_pairs_get_the_priors_uncertainty_and_a_finite_fill():
    model = WindowDependentModel(200, 40)
    res = predict_windowed(model, model.sequence, window=40, stride=20)
    unc = res["coverage"] == 0
    np.fill_diagonal(unc, False)
    covered = ~unc & ~np.eye(200, dtype=bool)
    assert unc.any()
    assert np.isinf(res["variance"][unc]).all()  # no confidence invented
    # for reconstruction and confidence: the prior's uncertainty, (0.5 d)^2
    rv = reconstruction_variance(res)
    np.testing.assert_allclose(rv[unc], (UNCOVERED_CV * res["distance"][unc]) ** 2, rtol=1e-6)
    np.testing.assert_array_equal(rv[~unc], res["variance"][~unc])
    # the weights a reconstructor receives: 1 / that variance, so uncovered pairs weigh little but not 0
    spy = SpyReconstructor()
    Predictor(model, spy, window=40, stride=20).predict(model.sequence)
    w = spy.weights
    assert (w[unc] > 0).all() and w[unc].max() < np.median(w[covered])
    (i, j), (a, b) = np.argwhere(unc)[0], np.argwhere(covered)[0]
    assert w[i, j] / w[a, b] == pytest.approx(rv[a, b] / rv[i, j], rel=1e-5)
    # filler is finite, positive and at least the typical distance at the edge of coverage
    assert np.isfinite(res["distance"][unc]).all() and (res["distance"][unc] > 0).all()


def test_uncovered_pairs_take_the_models_separation_prior():
    class Prior:
        table = np.zeros((1, 101))

        def row(self, length):
            return np.linspace(0.0, 50.0, 101) + length / 1000

    model = WindowDependentModel(150, 40)
    model.prior = Prior()
    res = predict_windowed(model, model.sequence, window=40, stride=20)
    i, j = np.nonzero(res["coverage"] == 0)
    off = i != j
    sep = np.minimum(np.abs(i - j), 100)[off]
    np.testing.assert_allclose(res["distance"][i[off], j[off]], 0.5 * sep + 0.15, rtol=1e-5)


def test_without_variance_weights_follow_coverage():
    model = WindowDependentModel(130, 48, variance=False)
    res = predict_windowed(model, model.sequence)
    assert res["variance"] is None
    spy = SpyReconstructor()
    pred = Predictor(model, spy).predict(model.sequence)
    assert pred.confidence is None and pred.diagnostics["weighted"]
    off = ~np.eye(130, dtype=bool)
    np.testing.assert_array_equal(spy.weights[off] > 0, res["coverage"][off] > 0)
    assert set(np.unique(spy.weights[off])) == {0.0, 1.0}
    # equal weights: a plain mean over the covering windows
    n, seen = brute_force(model, res["windows"])
    for (a, b), obs in list(seen.items())[::97]:
        assert res["distance"][a, b] == pytest.approx(np.mean([o[0] for o in obs]), rel=1e-5)


def test_separation_fill_is_monotone_and_bounded():
    rng = np.random.default_rng(1)
    n = 400
    x = np.cumsum(rng.normal(size=(n, 3)) * 2.2, 0)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).astype(np.float32)
    sep = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    covered = sep < 60
    prof = separation_fill(d, covered)
    assert prof.shape == (n,) and prof[0] == 0
    tail = prof[60:]
    assert np.all(np.diff(tail) >= 0)
    assert tail[0] >= np.median(np.diagonal(d, 59)) - 1e-4


# -- memory guard ----------------------------------------------------------------

def test_memory_guard_message_names_input_and_limit():
    avail = 2 * 2 ** 30
    limit = memory_max_length(avail)
    assert 0 < limit < 10_000
    check_length("seq1", limit, available=avail)
    with pytest.raises(InputError) as exc:
        check_length("seq1", limit + 1, available=avail)
    msg = str(exc.value)
    assert msg.startswith("seq1: ") and str(limit + 1) in msg and str(limit) in msg and "--max-length" in msg
    assert "\n" not in msg


def test_memory_guard_explicit_max_length_overrides():
    check_length("big", 50_000, max_length=60_000, available=1)
    with pytest.raises(InputError, match="exceeds --max-length 100"):
        check_length("x", 101, max_length=100)


def test_memory_guard_reads_this_machine():
    limit = memory_max_length()
    assert limit is None or limit >= 0


# -- per-residue secondary-structure probabilities --------------------------------

class SSWindowModel(WindowDependentModel):
    """Also returns ss_probs that depend on the window start, so the merge is visible."""

    def ss_rows(self, start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng(start)
        p = rng.random((stop - start, 3)) + 0.1
        return (p / p.sum(1, keepdims=True)).astype(np.float32)

    def predict(self, sequences, lengths=None):
        out = super().predict(sequences, lengths)
        for q, o in zip(sequences, out):
            start = self.sequence.index(q)
            o["ss_probs"] = self.ss_rows(start, start + len(q))
        return out


@pytest.mark.parametrize("variance", [True, False])
def test_ss_probs_merge_by_residue_mean_variance(variance):
    model = SSWindowModel(50, crop=20, variance=variance)
    res = predict_windowed(model, model.sequence)
    plan = res["windows"]
    assert len(plan) > 2
    probs = res["ss_probs"]
    assert probs.shape == (50, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    for i in (0, 9, 10, 25, 49):
        num, den = np.zeros(3), 0.0
        for s, e in plan:
            if s <= i < e:
                _, v = model.window_output(s, e)
                n = e - s
                w = (n - 1) / (v[i - s].sum() - v[i - s, i - s]) if variance else 1.0
                num += w * model.ss_rows(s, e)[i - s]
                den += w
        np.testing.assert_allclose(probs[i], num / den, rtol=1e-5)


def test_ss_probs_absent_without_ss_head_and_single_window_is_exact():
    assert "ss_probs" not in predict_windowed(WindowDependentModel(30, crop=20), WindowDependentModel(30, 20).sequence)
    model = SSWindowModel(16, crop=20)
    res = predict_windowed(model, model.sequence)
    np.testing.assert_allclose(res["ss_probs"], model.ss_rows(0, 16), rtol=1e-6)
