"""The ``log1p`` and ``identity`` normalisers (numpy and torch alike)."""

from __future__ import annotations

import numpy as np

from distfold.components import Configurable


def _log1p(x):
    return x.log1p() if hasattr(x, "log1p") else np.log1p(x)


def _expm1(x):
    return x.expm1() if hasattr(x, "expm1") else np.expm1(x)


class Log1pNormaliser(Configurable):
    """y = log(1 + d) / scale, with ``scale`` one global constant.

    ``fit`` sets scale to the largest log(1 + d) in the training distances, so
    training targets lie in [0, 1]; the scale is stored in the config (and so in
    every checkpoint) and inference decodes with exactly the same constant.
    """

    def __init__(self, scale: float = 1.0):
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)

    def fit(self, distances) -> "Log1pNormaliser":
        d = np.asarray(distances, dtype=np.float64)
        d = d[np.isfinite(d)]
        if d.size:
            self.scale = float(max(np.log1p(d.max()), 1e-6))
        return self

    def encode(self, d):
        return _log1p(d) / self.scale

    def decode(self, y):
        return _expm1(y * self.scale)


class IdentityNormaliser(Configurable):
    """Distances in Å, unchanged."""

    def __init__(self):
        pass

    def fit(self, distances) -> "IdentityNormaliser":
        return self

    def encode(self, d):
        return d * 1.0

    def decode(self, y):
        return y * 1.0
