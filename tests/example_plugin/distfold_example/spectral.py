"""Components of the example plugin, written only against distfold's public API."""

import numpy as np

from distfold.components import Configurable, Reconstruction


class Spectral(Configurable):
    """Classical MDS with a full numpy eigendecomposition (slow, simple).

    distfold checks the matrix before ``reconstruct`` (symmetric, finite where the
    weight is > 0, zero diagonal, ignored pairs set to 0) and chooses the hand
    after it, so this class only embeds.
    """

    accepts_weights = True

    def __init__(self, seed: int = 0):
        self.seed = seed

    def reconstruct(self, distances, weights=None):
        d = distances
        n = len(d)
        known = ~np.eye(n, dtype=bool) if weights is None else weights > 0
        if weights is not None and known.any():  # fill ignored pairs with the mean of the rest
            d = np.where(known, d, d[known].mean())
            np.fill_diagonal(d, 0.0)
        j = np.eye(n) - 1.0 / n
        b = -0.5 * j @ (d**2) @ j
        vals, vecs = np.linalg.eigh(b)
        idx = np.argsort(vals)[::-1][:3]
        x = np.zeros((n, 3))
        x[:, : len(idx)] = vecs[:, idx] * np.sqrt(np.clip(vals[idx], 0, None))
        upper = np.triu(known, 1)
        resid = (_dist(x) - d)[upper]
        stress = float((resid**2).sum())
        denom = float((_dist(x)[upper] ** 2).sum())
        return Reconstruction(x, {"stress": stress, "stress1": (stress / denom) ** 0.5 if denom > 0 else 0.0,
                                  "iterations": 0, "converged": True})


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
