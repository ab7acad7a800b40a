"""Classical (Torgerson) multidimensional scaling from the top-3 eigenpairs.

B = -1/2 J D^2 J (J the centring matrix), X = V_3 sqrt(lambda_3): exact for
Euclidean input. Only the three largest eigenpairs are computed: Lanczos
(``scipy.sparse.linalg.eigsh``) for L >= ``lanczos_min_length``, LAPACK
``scipy.linalg.eigh(subset_by_index=...)`` below it. The share of
negative-eigenvalue mass, sum|lambda-| / sum|lambda| (0 for Euclidean input),
needs every eigenvalue (O(L^3), about half the cost of a full ``eigh``); it
is computed only when ``negative_share`` is True.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distfold.components import Configurable, Reconstruction
from distfold.distmat import CheckedDistances, check_distances, complete_distances, finish, stress


def double_centre(d: np.ndarray) -> np.ndarray:
    """B = -1/2 J D^2 J for an (L, L) distance matrix, without forming J."""
    b = d * d
    row = b.mean(axis=1)
    b -= row[:, None]
    b -= row[None, :]
    b += row.mean()
    b *= -0.5
    return b


def top_eigenpairs(b: np.ndarray, k: int, lanczos_min_length: int, lanczos_tol: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and their eigenvectors (L, k) of symmetric b."""
    n = len(b)
    k = min(k, n)
    if n >= max(lanczos_min_length, k + 2):
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(seed).standard_normal(n)
        vals, vecs = eigsh(b, k=k, which="LA", v0=v0, tol=lanczos_tol)
    else:
        from scipy.linalg import eigh

        vals, vecs = eigh(b, subset_by_index=[n - k, n - 1])
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    # a fixed sign per eigenvector (largest-magnitude entry positive): deterministic output
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    return vals, vecs * signs


def negative_eigenvalue_share(b: np.ndarray) -> float:
    """sum|lambda-| / sum|lambda| over all eigenvalues of symmetric b (0 for Euclidean input)."""
    from scipy.linalg import eigh

    lam = eigh(b, eigvals_only=True, driver="evd")
    total = float(np.abs(lam).sum())
    return float(-lam[lam < 0].sum() / total) if total > 0 else 0.0


def classical_embedding(checked: CheckedDistances, negative_share: bool, lanczos_min_length: int,
                        lanczos_tol: float, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(L, 3) coordinates (Å, hand not yet chosen) and diagnostics of classical MDS.

    Ignored pairs are filled first (:func:`distfold.distmat.complete_distances`);
    weight values otherwise play no part.
    """
    n = len(checked)
    d = complete_distances(checked)
    x = np.zeros((n, 3))
    info: dict[str, Any] = {"filled_pairs": 0 if checked.known is None else
                            int(np.count_nonzero(~checked.known) - n) // 2}
    if n == 1:
        info.update(eigenvalues=[0.0, 0.0, 0.0], negative_eigenvalue_share=0.0 if negative_share else None)
        return x, info
    b = double_centre(d)
    vals, vecs = top_eigenpairs(b, 3, lanczos_min_length, lanczos_tol, seed)
    k = len(vals)
    x[:, :k] = vecs * np.sqrt(np.clip(vals, 0.0, None))
    info["eigenvalues"] = [float(v) for v in vals] + [0.0] * (3 - k)
    info["negative_eigenvalue_share"] = negative_eigenvalue_share(b) if negative_share else None
    return x, info


class ClassicalMDS(Configurable):
    """Classical (Torgerson) MDS: closed form, no iterations.

    negative_share: compute sum|lambda-| / sum|lambda| of B (every eigenvalue,
        O(L^3)); False reports None and keeps the cost at three eigenpairs.
    lanczos_min_length: from this L on, Lanczos (ARPACK) finds the top 3
        eigenpairs; below it, LAPACK's subset eigensolver.
    lanczos_tol: ARPACK relative tolerance on eigenvalues (0 = machine precision);
        1e-10 needs about 21 products with B instead of 36 at L = 1024 and moves
        the coordinates by about 1e-9 Å (measured on a real noisy matrix).
    seed: seeds ARPACK's start vector (results do not depend on it beyond
        round-off; fixed for bitwise reproducibility).
    """

    def __init__(self, negative_share: bool = True, lanczos_min_length: int = 64, lanczos_tol: float = 1e-10,
                 seed: int = 0):
        self.negative_share = bool(negative_share)
        self.lanczos_min_length = int(lanczos_min_length)
        self.lanczos_tol = float(lanczos_tol)
        self.seed = int(seed)

    def reconstruct(self, distances, weights=None) -> Reconstruction:
        """(L, L) distances in Å (weights: only their zeros matter) -> Reconstruction, (L, 3) Å."""
        checked = check_distances(distances, weights)
        x, info = classical_embedding(checked, self.negative_share, self.lanczos_min_length,
                                      self.lanczos_tol, self.seed)
        raw, s1 = stress(x, checked)
        diagnostics = {"method": "classical", "stress": raw, "stress1": s1, "iterations": 0,
                       "converged": True, "max_asymmetry": checked.max_asymmetry, **info}
        return finish(x, diagnostics)
