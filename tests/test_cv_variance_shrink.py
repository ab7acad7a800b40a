"""benchmarks/cv_new_family.py --variance-shrink: shrinkage toward the prior by the predicted
variance, f = 1 / (1 + k variance), on synthetic chains."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("cv_new_family",
                                               Path(__file__).resolve().parent.parent / "benchmarks" / "cv_new_family.py")
cv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cv)


def _chain(rng, n, cid="c"):
    """Far pairs: half exact with a small variance, half noisy with a large one; one pair unseen
    by any window (variance inf, distance = prior)."""
    x = np.cumsum(rng.normal(0, 2.2, (n, 3)), 0).astype(np.float32)
    true = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    e = rng.normal(0, 0.1, true.shape)
    prior = (true * np.exp((e + e.T) / 2)).astype(np.float32)
    e = rng.normal(0, 0.8, true.shape)
    noisy = (true * np.exp((e + e.T) / 2)).astype(np.float32)
    bad = np.triu(rng.random(true.shape) < 0.5, 1)
    bad = bad | bad.T
    model = np.where(bad, noisy, true).astype(np.float32)
    var = np.where(bad, 400.0, 1.0).astype(np.float32)
    cover = np.ones((n, n), np.uint16)
    cover[0, n - 1] = cover[n - 1, 0] = 0
    var[0, n - 1] = var[n - 1, 0] = np.inf
    model[0, n - 1] = model[n - 1, 0] = prior[0, n - 1]
    np.fill_diagonal(model, 0)
    np.fill_diagonal(var, 0)
    data = {"distance": model, "prior": prior, "coords": x, "coverage": cover, "variance": var,
            "weight_variance": var.copy()}
    return cv.Chain(cid, 0, cid, data, np.log1p, np.expm1)


def test_variance_shrinkage_pulls_the_uncertain_pairs_and_keeps_the_sure_ones():
    rng = np.random.default_rng(0)
    chains = [_chain(rng, 70, f"c{k}") for k in range(3)]
    ks = cv.fit_variance_k(chains, [1.0] * 3, fit_from=24)
    assert ks[(1, 5)] == ks[(6, 11)] == ks[(12, 23)] == 0.0  # below fit_from: the model
    assert ks[(24, 47)] > 0 and ks[(48, None)] > 0
    c = chains[0]
    far = c.sep >= 24
    shrunk = cv.apply_variance(c, ks)
    assert np.isfinite(shrunk).all()
    assert np.abs(shrunk[far] - c.t[far]).mean() < np.abs(c.dm[far] - c.t[far]).mean()
    sure = far & (c.v < 10)
    np.testing.assert_allclose(shrunk[sure], c.dm[sure], rtol=0.05)  # f = 1 / (1 + k) stays near 1 there
    d, v, wv = c.shrunk_matrix(ks, by_variance=True)
    assert np.isfinite(d).all()
    d0, _, _ = c.shrunk_matrix({b: 0.0 for b in cv.FIT_BANDS}, by_variance=True)
    np.testing.assert_allclose(d0, c.data["distance"], rtol=1e-5)  # k = 0: the model
