"""Confidence (predicted lDDT) and reconstruction weights from per-pair uncertainty."""

import numpy as np
import pytest

from distfold.pipeline.confidence import pair_probabilities, predicted_lddt, weights_from_variance
from distfold.structure.metrics import distance_matrix, lddt


def _helix(n):
    t = np.arange(n)
    return np.stack([2.3 * np.cos(np.radians(100 * t)), 2.3 * np.sin(np.radians(100 * t)), 1.5 * t], 1)


@pytest.mark.parametrize("distribution", ["laplace", "gaussian"])
def test_predicted_lddt_is_the_expected_lddt_under_the_error_model(distribution):
    """Monte Carlo: draw true distances around the prediction with the stated
    distribution and variance; per residue, the expected number of scored pairs
    (true distance < 15 Å) that fall within each threshold, over the expected
    number of scored pairs, matches the closed form."""
    rng = np.random.default_rng(0)
    d = distance_matrix(_helix(30))
    var = rng.uniform(0.05, 40.0, d.shape)
    var = 0.5 * (var + var.T)
    conf = predicted_lddt(d, var, distribution)
    n = len(d)
    draws = 4000
    if distribution == "laplace":
        err = rng.laplace(0.0, np.sqrt(var / 2.0), (draws, n, n))
    else:
        err = rng.normal(0.0, np.sqrt(var), (draws, n, n))
    scored = ((d + err) < 15) & ~np.eye(n, dtype=bool)  # the true pair set is uncertain too
    hit = np.mean([(np.abs(err) < t) for t in (0.5, 1, 2, 4)], axis=0)  # (draws, n, n)
    mc = 100 * (scored * hit).sum((0, 2)) / scored.sum((0, 2))
    assert np.abs(conf - mc).max() < 1.0
    for rows in (1, 7, 64):  # the row blocking is for speed only
        np.testing.assert_array_equal(predicted_lddt(d, var, distribution, block=rows), conf)


def test_a_wide_pair_just_beyond_15_angstrom_lowers_confidence():
    """Pairs predicted beyond 15 Å with a wide distribution may be true contacts the model
    misses: they lower the confidence (pairs chosen by the predicted distance would not)."""
    d = distance_matrix(_helix(12))
    var = np.full(d.shape, 0.3)
    base = predicted_lddt(d, var)
    far = d >= 15
    assert far.any()
    wide = np.where(far, 100.0, var)
    assert (predicted_lddt(d, wide)[far.any(1)] < base[far.any(1)] - 1).all()


def test_confidence_equals_observed_lddt_of_a_certain_prediction():
    d = distance_matrix(_helix(20))
    conf = predicted_lddt(d, np.zeros_like(d))
    _, per_res = lddt(d, d)
    np.testing.assert_allclose(conf, 100 * per_res)
    assert np.all(conf == 100)


def test_confidence_falls_with_variance_and_is_in_range():
    d = distance_matrix(_helix(15))
    vals = [predicted_lddt(d, np.full(d.shape, v)).mean() for v in (0.01, 0.5, 2, 10, 100)]
    assert all(a > b for a, b in zip(vals, vals[1:]))
    assert 0 <= vals[-1] and vals[0] <= 100


def test_no_variance_means_no_confidence_and_single_residue_is_zero():
    assert predicted_lddt(np.zeros((3, 3)), None) is None
    assert predicted_lddt(np.zeros((1, 1)), np.zeros((1, 1))).tolist() == [0.0]


def test_uncovered_pairs_with_infinite_variance_are_left_out():
    d = distance_matrix(_helix(10))
    var = np.full(d.shape, 1.0)
    gone = d.copy()
    gone[0, 9] = gone[9, 0] = 1e6  # a pair that cannot be a contact adds nothing
    ref = predicted_lddt(gone, var)
    var[0, 9] = var[9, 0] = np.inf  # as distfold.pipeline.windows marks pairs no window covered
    d2 = d.copy()
    d2[0, 9] = d2[9, 0] = 5.0  # a filler distance under 15 Å must not count
    out = predicted_lddt(d2, var)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref)


def test_pair_probabilities_closed_forms():
    p = pair_probabilities(np.array([[2.0]]), thresholds=(1.0,), distribution="laplace")
    assert p[0, 0] == pytest.approx(1 - np.exp(-1.0))  # b = sqrt(2 / 2) = 1
    p = pair_probabilities(np.array([[1.0]]), thresholds=(1.0,), distribution="gaussian")
    assert p[0, 0] == pytest.approx(0.6826894921)
    with pytest.raises(ValueError, match="unknown distribution"):
        pair_probabilities(np.ones((1, 1)), distribution="cauchy")


def test_weights_are_inverse_variance_normalised():
    var = np.array([[0, 1, 4], [1, 0, 2], [4, 2, 0]], dtype=float)
    w = weights_from_variance(var)
    off = ~np.eye(3, dtype=bool)
    assert np.all(np.diag(w) == 0) and np.allclose(w, w.T)
    assert w[off].mean() == pytest.approx(1.0)
    assert w[0, 1] / w[0, 2] == pytest.approx(4.0) and w[0, 1] / w[1, 2] == pytest.approx(2.0)
    var[0, 2] = var[2, 0] = np.inf
    assert weights_from_variance(var)[0, 2] == 0
    var = np.array([[0, 0.0, 1], [0.0, 0, 1], [1, 1, 0]])  # a zero variance is floored, not infinite
    assert np.isfinite(weights_from_variance(var)).all()
    assert weights_from_variance(None) is None
    assert weights_from_variance(np.zeros((1, 1))).shape == (1, 1)
