"""benchmarks/cv_new_family.py: the shrinkage fit toward the prior, on synthetic chains."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("cv_new_family",
                                               Path(__file__).resolve().parent.parent / "benchmarks" / "cv_new_family.py")
cv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cv)


def _chain(rng, n, near_good: bool, cid="c"):
    """A chain whose model is exact below |i-j| 12 and noisier than the prior beyond (or the reverse)."""
    x = np.cumsum(rng.normal(0, 2.2, (n, 3)), 0).astype(np.float32)
    true = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None])
    def around(scale):  # the truth with symmetric log-normal noise
        e = rng.normal(0, scale, true.shape)
        return (true * np.exp((e + e.T) / 2)).astype(np.float32)
    prior = around(0.1)  # a good prior
    noisy = around(0.8)  # a model that knows less than the prior
    good = (sep < 12) == near_good
    model = np.where(good, true, noisy).astype(np.float32)
    np.fill_diagonal(model, 0)
    data = {"distance": model, "prior": prior, "coords": x, "coverage": np.ones((n, n), np.uint16),
            "variance": np.ones((n, n), np.float32), "weight_variance": np.ones((n, n), np.float32)}
    return cv.Chain(cid, 0, cid, data, np.log1p, np.expm1)


def test_factors_keep_what_helps_and_drop_what_does_not():
    rng = np.random.default_rng(0)
    chains = [_chain(rng, 60, True, f"c{k}") for k in range(4)]
    f = cv.fit_factors(chains, [1.0] * 4)
    assert f[(1, 5)] == 1.0 and f[(6, 11)] == 1.0  # exact there: keep the model
    assert f[(24, 47)] <= 0.2 and f[(48, None)] <= 0.2  # worse than the prior there: (nearly) the prior
    shrunk = cv.apply_pairs(chains[0], f)
    far = chains[0].sep >= 24
    assert np.abs(shrunk[far] - chains[0].t[far]).mean() < np.abs(chains[0].dm[far] - chains[0].t[far]).mean()


def test_shrunk_matrix_is_the_prior_at_factor_zero_and_keeps_the_variance_consistent():
    rng = np.random.default_rng(1)
    c = _chain(rng, 30, True)
    d, v, wv = c.shrunk_matrix({(1, None): 0.0})
    off = ~np.eye(30, dtype=bool)
    np.testing.assert_allclose(d[off], c.data["prior"][off], rtol=1e-5)
    ratio = ((1 + d) / (1 + c.data["distance"])) ** 2  # log1p: the decode slope is 1 + d
    np.testing.assert_allclose(v[off], (c.data["variance"] * ratio)[off], rtol=1e-3)
    d1, _, _ = c.shrunk_matrix({(1, None): 1.0})
    np.testing.assert_allclose(d1, c.data["distance"], rtol=1e-5)
