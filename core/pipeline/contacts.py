"""C-alpha contacts: P(C-alpha distance < 8 Å) per pair, the ``<id>.contacts.tsv`` rows,
and contact precision by separation range.

Contact probability from what the model already returns (no extra head output).
The ``regression`` head's Laplace (or Gaussian) lives in the normaliser's space: it
predicts y = encode(D) ~ Laplace(mu, b), and the model reports ``distance = decode(mu)``
and ``variance = 2 b^2 * slope^2`` (the delta method, slope = d decode / dy at mu by a
central difference of step 1e-3, ``plugins/distance_heads/pair.py``'s
``decode_slope``). This is inverted exactly::

    mu = encode(distance);  var_y = variance / slope(mu)^2
    P(D < 8) = P(y < encode(8)) = F(encode(8); mu, var_y)

with F the cumulative distribution the head declares (``Predictor.distribution``:
``laplace``, variance 2 b^2; ``gaussian``, variance s^2). For a log1p normaliser
this is F evaluated at (log(9) - log(1 + d)) (1 + d) / sqrt(variance), times
sinh(e s) / (e s) (e = 1e-3, s the normaliser's scale: 1 + 4e-6) and does not
depend on the scale otherwise. A head whose distribution is binned (``distogram``,
declared ``gaussian``) is read the same way, as that declaration says: a Gaussian
approximation in the normaliser's space.

Where several windows merged a pair (chains longer than the window), the merged
distance and variance are read as one distribution of that mean and variance (as
the confidence does); pairs no window saw carry the prior's distance and its
uncertainty (:func:`distfold.pipeline.windows.reconstruction_variance`). A head
without uncertainty gives 1 where the predicted distance is under 8 Å and 0
elsewhere.

numpy only (the normaliser's ``encode``/``decode`` take numpy arrays, its contract).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from distfold.pipeline.confidence import _cdf, _check_distribution, _spread

#: C-alpha contact: true C-alpha distance below this, Å (not CASP's C-beta 8 Å).
CONTACT_THRESHOLD = 8.0
#: Pairs with |i - j| below this are never listed (local pairs are contacts by chain geometry).
MIN_SEPARATION = 6
#: ``<id>.contacts.tsv`` lists pairs with at least this probability ...
MIN_PROBABILITY = 0.05
#: ... and at most this many times L of them (the most probable).
MAX_PAIRS_PER_RESIDUE = 5
#: Separation ranges of contact precision: short 6-11, medium 12-23, long 24+ (CASP).
RANGES = {"short": (6, 11), "medium": (12, 23), "long": (24, None)}
#: Top-k of contact precision, as fractions of L.
TOP_FRACTIONS = {"L/5": 5, "L/2": 2, "L": 1}
#: The step of the head's delta-method slope (``decode_slope`` in the distance heads).
SLOPE_STEP = 1e-3


def contact_probability(distance: np.ndarray, variance: np.ndarray | None, distribution: str | None = "laplace",
                        normaliser: Any = None, threshold: float = CONTACT_THRESHOLD,
                        block: int | None = None) -> np.ndarray:
    """(L, L) float32 P(C-alpha distance < ``threshold``) per pair (see the module docstring).

    distance: (L, L) Å. variance: (L, L) Å^2 (finite where a probability is wanted) or
    None. distribution: the head's declared error distribution (None: treated as no
    variance). normaliser: the model's (``encode``/``decode``), or None for a head whose
    distribution lives in Å. Rows are processed ``block`` at a time (about 2^17 values).
    """
    d = np.asarray(distance, dtype=np.float64)
    n = len(d)
    if variance is None or distribution is None:
        return (d < threshold).astype(np.float32)
    _check_distribution(distribution)
    encode = (lambda x: x) if normaliser is None else normaliser.encode
    decode = (lambda y: y) if normaliser is None else normaliser.decode
    y_threshold = float(np.asarray(encode(np.float64(threshold))))
    v_all = np.asarray(variance)
    out = np.empty((n, n), np.float32)
    rows = max(1, int(block)) if block else max(8, (1 << 17) // max(n, 1))
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        mu = np.asarray(encode(d[r0:r1]), dtype=np.float64)
        slope = (np.asarray(decode(mu + SLOPE_STEP), np.float64)
                 - np.asarray(decode(mu - SLOPE_STEP), np.float64)) / (2 * SLOPE_STEP)
        var_y = np.clip(np.asarray(v_all[r0:r1], np.float64), 0.0, None) / np.maximum(slope, 1e-12) ** 2
        p = _cdf(y_threshold, mu, _spread(var_y, distribution), distribution)
        out[r0:r1] = np.where(np.isfinite(var_y), p, np.where(d[r0:r1] < threshold, 1.0, 0.0))
    return out


def contact_rows(prob: np.ndarray, min_separation: int = MIN_SEPARATION, min_probability: float = MIN_PROBABILITY,
                 max_pairs: int | None = None) -> list[tuple[int, int, float]]:
    """The listed pairs ``(i, j, p)``, 0-based i < j: |i - j| >= ``min_separation``,
    p >= ``min_probability``, at most ``max_pairs`` (default :data:`MAX_PAIRS_PER_RESIDUE` x L)
    of the most probable; sorted by decreasing p, then i, then j."""
    p = np.asarray(prob)
    n = len(p)
    max_pairs = MAX_PAIRS_PER_RESIDUE * n if max_pairs is None else int(max_pairs)
    ii, jj = [], []
    for r in range(max(0, n - min_separation)):  # row by row: no (L, L) index temporaries
        cols = np.flatnonzero(p[r, r + min_separation:] >= min_probability) + r + min_separation
        ii.append(np.full(len(cols), r))
        jj.append(cols)
    i = np.concatenate(ii) if ii else np.zeros(0, int)
    j = np.concatenate(jj) if jj else np.zeros(0, int)
    v = p[i, j].astype(np.float64)
    order = np.lexsort((j, i, -v))[:max_pairs]
    return [(int(i[k]), int(j[k]), float(v[k])) for k in order]


#: Columns of ``<id>.contacts.tsv``.
CONTACT_COLUMNS = ("i", "j", "aa_i", "aa_j", "separation", "probability", "distance")


def contacts_tsv(prob: np.ndarray, distance: np.ndarray, sequence: str, **kwargs: Any) -> str:
    """The text of ``<id>.contacts.tsv``: a header line naming :data:`CONTACT_COLUMNS`, then
    one row per pair of :func:`contact_rows` (``kwargs``): residue numbers 1-based (as in the
    PDB file), one-letter residues, j - i, the probability (4 decimals) and the predicted
    distance (Å, 2 decimals)."""
    buf = io.StringIO()
    buf.write("\t".join(CONTACT_COLUMNS) + "\n")
    for i, j, p in contact_rows(prob, **kwargs):
        buf.write(f"{i + 1}\t{j + 1}\t{sequence[i]}\t{sequence[j]}\t{j - i}\t{p:.4f}\t{float(distance[i, j]):.2f}\n")
    return buf.getvalue()


def range_precision(score: np.ndarray, true_d: np.ndarray, mask: np.ndarray | None = None, *,
                    higher_is_contact: bool = True, threshold: float = CONTACT_THRESHOLD
                    ) -> dict[str, dict[str, float | None]]:
    """Contact precision of the top L/5, L/2 and L pairs in each separation range.

    score: (L, L) contact probability (``higher_is_contact``) or predicted distance.
    true_d: (L, L) true C-alpha distances, Å (NaN where unobserved); mask: (L,) observed
    residues. Pairs i < j with both residues observed and a finite true distance, in the
    range; ranked by score (ties by i, then j); k = max(1, L // f) for L/f, L the full
    chain length. A range with fewer than k pairs uses them all. Returns
    ``{range: {"L/5": precision, ...}}``, None where the range has no pair.
    """
    s_all = np.asarray(score, np.float64)
    t_all = np.asarray(true_d, np.float64)
    n = len(t_all)
    m = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
    out: dict[str, dict[str, float | None]] = {}
    for name, (lo, hi) in RANGES.items():
        i, j = np.triu_indices(n, lo)
        keep = m[i] & m[j] & np.isfinite(t_all[i, j]) & np.isfinite(s_all[i, j])
        if hi is not None:
            keep &= (j - i) <= hi
        i, j = i[keep], j[keep]
        s, t = s_all[i, j], t_all[i, j]
        order = np.lexsort((j, i, -s if higher_is_contact else s))
        hit = t[order] < threshold
        out[name] = {key: (float(hit[:max(1, n // f)].mean()) if len(hit) else None)
                     for key, f in TOP_FRACTIONS.items()}
    return out
