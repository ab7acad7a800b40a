"""Structure-comparison metrics on C-alpha atoms (SCIENCE.md section 3).

Distance-matrix metrics need no superposition and so also score a predicted
matrix before reconstruction. All distances in Å. ``mask`` arguments are
(L,) bool: False residues (unobserved) are excluded.
"""

from __future__ import annotations

import numpy as np

LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
LDDT_CUTOFF = 15.0


def distance_matrix(x: np.ndarray) -> np.ndarray:
    """(L, L) Euclidean distances of (L, 3) coordinates."""
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))


def _pair_mask(n: int, mask: np.ndarray | None) -> np.ndarray:
    m = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
    return m[:, None] & m[None, :]


def lddt(pred_d: np.ndarray, true_d: np.ndarray, mask: np.ndarray | None = None,
         cutoff: float = LDDT_CUTOFF, thresholds=LDDT_THRESHOLDS) -> tuple[float, np.ndarray]:
    """C-alpha lDDT from two (L, L) distance matrices.

    Pairs i != j with true distance < cutoff are scored; the score is the mean over
    thresholds of the fraction with |d_pred - d_true| < threshold. Returns
    (global score in [0, 1], per-residue scores (L,) with NaN where a residue
    has no scored pair).
    """
    pred_d = np.asarray(pred_d, dtype=np.float64)
    true_d = np.asarray(true_d, dtype=np.float64)
    n = len(true_d)
    pm = _pair_mask(n, mask) & ~np.eye(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        incl = pm & (true_d < cutoff) & np.isfinite(true_d) & np.isfinite(pred_d)
    err = np.abs(pred_d - true_d)
    preserved = np.zeros((n, n))
    for t in thresholds:
        preserved += np.where(incl, err < t, False)
    preserved /= len(thresholds)
    n_pairs = incl.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_res = np.where(n_pairs > 0, preserved.sum(1) / np.maximum(n_pairs, 1), np.nan)
    total = incl.sum()
    score = float(preserved.sum() / total) if total else float("nan")
    return score, per_res


def _upper_pairs(n: int, mask: np.ndarray | None, min_sep: int = 1, max_sep: int | None = None) -> np.ndarray:
    i, j = np.triu_indices(n, min_sep)
    keep = np.ones(len(i), bool)
    if max_sep is not None:
        keep &= (j - i) <= max_sep
    if mask is not None:
        m = np.asarray(mask, bool)
        keep &= m[i] & m[j]
    return np.stack([i[keep], j[keep]])


def distance_errors(pred_d: np.ndarray, true_d: np.ndarray, mask: np.ndarray | None = None,
                    min_sep: int = 1, max_sep: int | None = None) -> dict[str, float]:
    """MAE, RMSE (Å) and Pearson r over pairs i < j with min_sep <= j - i <= max_sep."""
    pred_d = np.asarray(pred_d, dtype=np.float64)
    true_d = np.asarray(true_d, dtype=np.float64)
    i, j = _upper_pairs(len(true_d), mask, min_sep, max_sep)
    p, t = pred_d[i, j], true_d[i, j]
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]
    if len(p) == 0:
        return {"mae": float("nan"), "rmse": float("nan"), "pearson": float("nan"), "n_pairs": 0}
    e = p - t
    if len(p) > 1 and p.std() > 0 and t.std() > 0:
        r = float(np.corrcoef(p, t)[0, 1])
    else:
        r = float("nan")
    return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e**2).mean())), "pearson": r,
            "n_pairs": int(len(p))}


SEPARATION_BINS = {"short": (6, 11), "medium": (12, 23), "long": (24, None)}


def distance_errors_by_separation(pred_d, true_d, mask=None) -> dict[str, dict[str, float]]:
    return {name: distance_errors(pred_d, true_d, mask, lo, hi) for name, (lo, hi) in SEPARATION_BINS.items()}


def contact_precision(pred_score: np.ndarray, true_d: np.ndarray, mask: np.ndarray | None = None,
                      threshold: float = 8.0, min_sep: int = 24, top_fraction: float = 0.2,
                      higher_is_contact: bool = False) -> float:
    """Precision of the top L*top_fraction predicted C-alpha contacts (true C-alpha
    distance < threshold) among pairs with |i - j| >= min_sep.

    pred_score: (L, L) predicted distances (ascending = more likely, the default) or
    contact probabilities (``higher_is_contact=True``). NaN if no pair qualifies.
    """
    true_d = np.asarray(true_d, dtype=np.float64)
    n = len(true_d)
    i, j = _upper_pairs(n, mask, min_sep)
    s = np.asarray(pred_score, dtype=np.float64)[i, j]
    t = true_d[i, j]
    ok = np.isfinite(s) & np.isfinite(t)
    s, t = s[ok], t[ok]
    k = max(1, int(n * top_fraction))
    if len(s) == 0:
        return float("nan")
    order = np.argsort(-s if higher_is_contact else s, kind="stable")[:k]
    return float((t[order] < threshold).mean())
