"""Components of the example plugin, written only against distfold's public API."""

import numpy as np

from distfold.components import Configurable, Reconstruction
from distfold.errors import InputError
from distfold.geometry.handedness import fix_handedness


class Spectral(Configurable):
    """Classical MDS with a full numpy eigendecomposition (slow, simple)."""

    accepts_weights = True

    def __init__(self, seed: int = 0):
        self.seed = seed

    def reconstruct(self, distances, weights=None):
        d = np.asarray(distances, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 1:
            raise InputError(f"distance matrix must be square (L, L) with L >= 1, got {d.shape}")
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            d = np.where(w > 0, d, 0.0)
            ok = w > 0
        else:
            ok = np.ones_like(d, dtype=bool)
        if not np.all(np.isfinite(d[ok])):
            raise InputError("distance matrix has non-finite entries")
        if np.any(d[ok] < 0):
            raise InputError("distance matrix has negative entries")
        n = len(d)
        if weights is not None:  # fill ignored pairs with the mean of the rest
            fill = d[ok & ~np.eye(n, dtype=bool)].mean() if (ok & ~np.eye(n, dtype=bool)).any() else 0.0
            d = np.where(ok, d, fill)
            np.fill_diagonal(d, 0.0)
        j = np.eye(n) - 1.0 / n
        b = -0.5 * j @ (d**2) @ j
        vals, vecs = np.linalg.eigh(b)
        idx = np.argsort(vals)[::-1][:3]
        x = np.zeros((n, 3))
        k = len(idx)
        x[:, :k] = vecs[:, idx] * np.sqrt(np.clip(vals[idx], 0, None))
        x, mirrored, margin = fix_handedness(x)
        resid = _dist(x) - d
        stress = float((resid[np.triu_indices(n, 1)] ** 2).sum())
        denom = float((d[np.triu_indices(n, 1)] ** 2).sum()) or 1.0
        return Reconstruction(x, {"stress": stress, "stress1": (stress / denom) ** 0.5, "iterations": 0,
                                  "converged": True, "mirrored": mirrored, "handedness_margin": margin})


class SqrtNormaliser(Configurable):
    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def fit(self, distances):
        self.scale = float(np.sqrt(np.asarray(distances, dtype=np.float64)).max()) or 1.0
        return self

    def encode(self, d):
        return d**0.5 / self.scale

    def decode(self, y):
        return (y * self.scale) ** 2


def _dist(x):
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
