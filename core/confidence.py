"""Per-residue confidence (a predicted C-alpha lDDT, 0-100) from a head's
per-pair uncertainty, and reconstruction weights from the same uncertainty.

lDDT (SCIENCE.md section 3) scores residue i by the pairs (i, j), j != i, whose
true distance is under 15 Å: the mean over thresholds t in 0.5, 1, 2, 4 Å of
the fraction with |d_model - d_true| < t. Its expectation under the head's
predicted per-pair distribution is the predicted lDDT used here:

- pairs: j != i with *predicted* distance < 15 Å (the true one is unknown);
- per pair and threshold: P(|error| < t), the error being centred on the
  predicted distance with the predicted variance v (Å^2):
  Laplace (scale b = sqrt(v / 2)): ``1 - exp(-t / b)``;
  Gaussian (sigma = sqrt(v)): ``erf(t / (sigma * sqrt(2)))``;
- residue i's confidence: 100 x the mean of these over its pairs and the four
  thresholds; a residue with no such pair (L = 1) gets 0. Pairs with an
  infinite variance (no window of a long chain covered them,
  :mod:`distfold.windows`) are left out: no confidence is invented for them.

The Laplace form matches heads trained with a Laplace loss (the ``regression``
head); the Gaussian one suits a distogram's mean and variance. The chain's
confidence is the mean over residues. A head without uncertainty has no
confidence (None). ``distfold evaluate`` plots this against the observed lDDT
(calibration).
"""

from __future__ import annotations

import numpy as np

from distfold.metrics import LDDT_CUTOFF, LDDT_THRESHOLDS

DISTRIBUTIONS = ("laplace", "gaussian")


def pair_probabilities(variance: np.ndarray, thresholds=LDDT_THRESHOLDS, distribution: str = "laplace") -> np.ndarray:
    """(L, L) mean over ``thresholds`` of P(|error| < t) for error ~ 0-centred
    ``distribution`` with the given variance (Å^2)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; use one of {', '.join(DISTRIBUTIONS)}")
    v = np.clip(np.asarray(variance, dtype=np.float64), 0.0, None)
    out = np.zeros_like(v)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if distribution == "laplace":
            b = np.sqrt(v / 2.0)
            for t in thresholds:
                out += np.where(b > 0, -np.expm1(-t / b), 1.0)
        else:
            from scipy.special import erf

            s = np.sqrt(v)
            for t in thresholds:
                out += np.where(s > 0, erf(t / (s * np.sqrt(2.0))), 1.0)
    return out / len(thresholds)


def predicted_lddt(distance: np.ndarray, variance: np.ndarray | None, distribution: str = "laplace",
                   cutoff: float = LDDT_CUTOFF, thresholds=LDDT_THRESHOLDS) -> np.ndarray | None:
    """(L,) per-residue predicted lDDT, 0-100, or None when ``variance`` is None.

    distance: (L, L) predicted distances, Å. variance: (L, L) their variance, Å^2.
    """
    if variance is None:
        return None
    d = np.asarray(distance, dtype=np.float64)
    n = len(d)
    v = np.asarray(variance, dtype=np.float64)
    p = pair_probabilities(v, thresholds, distribution)
    with np.errstate(invalid="ignore"):
        incl = (d < cutoff) & ~np.eye(n, dtype=bool) & np.isfinite(v) & np.isfinite(p)
    counts = incl.sum(1)
    sums = np.where(incl, p, 0.0).sum(1)
    return np.where(counts > 0, 100.0 * sums / np.maximum(counts, 1), 0.0)


def weights_from_variance(variance: np.ndarray | None, floor: float = 1e-3) -> np.ndarray | None:
    """(L, L) reconstruction weights 1 / variance, normalised to mean 1 over the
    off-diagonal pairs, zero on the diagonal; None when ``variance`` is None.

    Variances are floored at ``floor`` x their median (Å^2) so that one
    near-zero variance cannot take all the weight.
    """
    if variance is None:
        return None
    v = np.asarray(variance, dtype=np.float64)
    n = len(v)
    off = ~np.eye(n, dtype=bool)
    if n < 2:
        return np.zeros((n, n))
    vals = v[off]
    finite = np.isfinite(vals) & (vals > 0)
    if not finite.any():
        w = np.ones((n, n))
    else:
        lo = floor * float(np.median(vals[finite]))
        w = 1.0 / np.maximum(np.where(np.isfinite(v), v, np.inf), lo)
    w[~off] = 0.0
    w = 0.5 * (w + w.T)
    mean = w[off].mean()
    return w / mean if mean > 0 else np.where(off, 1.0, 0.0)
