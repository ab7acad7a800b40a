"""Optimal proper-rotation superposition (Kabsch), single and batched.

Conventions: ``x`` is the mobile structure (model), ``y`` the fixed one
(reference), both (N, 3) float64 in Å. A fit returns ``(R, t)`` with
``x @ R.T + t`` placed onto ``y``. R is a proper rotation (det R = +1): a
mirror image is never superposed onto its original.

The batched form fits many residue subsets at once (one row of a weight
matrix per subset); the TM-score and GDT searches in :mod:`distfold.structure.metrics`
run on it, so their cost is a few matrix products per iteration instead of a
Python loop over superpositions.
"""

from __future__ import annotations

import numpy as np


def _det3(m: np.ndarray) -> np.ndarray:
    """(S,) determinants of (S, 3, 3) matrices by cofactor expansion."""
    return (m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
            - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
            + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0]))


def _rotations_from_covariance(cov: np.ndarray) -> np.ndarray:
    """(S, 3, 3) proper rotations R that best map centred x onto centred y, from
    ``cov[s] = sum_i w_si (x_i - cx)(y_i - cy)^T`` (mobile x, fixed y)."""
    u, _, vt = np.linalg.svd(cov)
    # R = V diag(1, 1, d) U^T with d = sign(det(V U^T)) = sign(det V) sign(det U) (Kabsch 1976):
    # both are orthogonal (det +-1 to rounding), so the sign of a cofactor expansion is exact
    # and needs neither the product nor an LU factorisation per matrix
    d = np.sign(_det3(vt) * _det3(u))
    d[d == 0] = 1.0
    vt[:, 2, :] *= d[:, None]
    return np.matmul(vt.transpose(0, 2, 1), u.transpose(0, 2, 1))


def kabsch_batch(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit x onto y once per row of ``weights``.

    x, y: (N, 3) Å. weights: (S, N) non-negative (0/1 selects a subset); every
    row needs a positive sum. Returns R (S, 3, 3) and t (S, 3) with
    ``x @ R[s].T + t[s]`` the weighted least-squares fit of x onto y.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    sw = w.sum(1)
    if np.any(sw <= 0):
        raise ValueError("every weight row needs a positive sum")
    cx = (w @ x) / sw[:, None]
    cy = (w @ y) / sw[:, None]
    outer = (x[:, :, None] * y[:, None, :]).reshape(len(x), 9)
    cov = (w @ outer).reshape(-1, 3, 3) - sw[:, None, None] * cx[:, :, None] * cy[:, None, :]
    r = _rotations_from_covariance(cov)
    t = cy - np.einsum("sij,sj->si", r, cx)
    return r, t


def kabsch(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One fit of x (N, 3) onto y (N, 3): R (3, 3), t (3,), ``x @ R.T + t`` ~ y."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    r, t = kabsch_batch(x, y, w[None, :])
    return r[0], t[0]


def apply(x: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """x (N, 3) moved by one transform (R (3, 3), t (3,)) -> (N, 3)."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(r).T + np.asarray(t)


def superposed_rmsd(x: np.ndarray, y: np.ndarray) -> float:
    """RMSD (Å) after the optimal proper superposition, in numpy (a check on mdtraj)."""
    r, t = kabsch(x, y)
    return float(np.sqrt(((apply(x, r, t) - np.asarray(y, dtype=np.float64)) ** 2).sum(1).mean()))
