"""Long chains: overlapping-window prediction, confidence-weighted merging, memory guard.

A model is trained on crops of ``crop`` residues. For a longer chain,
:func:`predict_windowed` runs the model on overlapping windows of ``window``
residues, ``stride`` apart (the last window is aligned to the chain's end), and
merges the window predictions into one (L, L) matrix:

- each window's pair prediction (distance ``d_k``, variance ``v_k``) gets the
  weight ``w_k = 1 / v_k`` (1 where the model reports no variance);
- the merged distance is the weighted mean ``sum w_k d_k / sum w_k``; where one
  window covers a pair, it is that window's value exactly;
- the merged variance is the variance of the weighted mixture,
  ``(sum w_k v_k + sum w_k (d_k - d)^2) / sum w_k``: the windows' own mean
  variance plus their disagreement. Windows share the model and most of their
  context, so they are not independent measurements and the variance is *not*
  shrunk as ``1 / sum w_k`` would;
- pairs that no window covers (only pairs with ``|i - j| > window - stride``
  can be uncovered) get the model's separation prior for the chain's length as
  their distance (:func:`separation_fill` for a model without a prior), so
  that every entry is finite, variance ``inf`` and coverage 0: nothing
  measured them;
- :func:`reconstruction_variance` gives those pairs the prior's own
  uncertainty, ``(UNCOVERED_CV * prior distance)^2``: a low but non-zero
  reconstruction weight (weight 0 leaves the arrangement of distant segments
  unconstrained and measured clearly worse, see :data:`UNCOVERED_CV`), and in
  the confidence a wide distribution that may hide a contact, so they lower
  it instead of being skipped (:mod:`distfold.pipeline.confidence`).

Per-residue secondary-structure probabilities (a model's optional ``ss_probs``,
(n, 3) per window, columns in :data:`distfold.structure.secondary.SS_STATES`
order) are merged the same way, residue by residue (:class:`ResidueAccumulator`):
window k's row for residue i gets the weight ``1 / mean_j v_k[i, j]``, the inverse of
that residue's mean pair variance in the window (j != i; 1 where the model reports
no variance), so the window that is surer of the residue's surroundings counts more;
the merged row is the weighted mean, which still sums to 1. Every residue is in some
window, so nothing needs filling.

Each window is predicted with the full chain's length (``model.predict(windows,
lengths=[L, ...])``: the separation prior's length bucket), as the training
crops were.

Memory: only (L, L) float32 accumulators (four of them, plus a uint16
coverage count) are quadratic in L; the model sees one window at a time, so no
(L, L, bins) tensor for the whole chain ever exists.

:func:`check_length` refuses chains that would not fit in the memory this
machine has available (read from ``/proc/meminfo``), with a one-line message.
numpy only; the model is whatever object has ``predict(list[str], lengths=list[int])``
(see :class:`distfold.pipeline.model.DistanceModel`).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np

from distfold.errors import InputError, UsageError

#: Smallest variance (Å^2) used to form a weight, so that a zero variance
#: (the diagonal) cannot produce an infinite weight.
MIN_VARIANCE = 1e-4

#: Coefficient of variation of the true C-alpha distance around the separation
#: prior beyond one window: the RMS deviation of train-split distances from the
#: prior's median is 0.45-0.56 times that median at separations 128-400 in every
#: length bucket (the default dataset, measured with benchmarks/eval_long.py's
#: prior_variance). Uncovered pairs are weighted 1 / (UNCOVERED_CV * d_prior)^2:
#: on the 8 val chains of 300-580 residues this lifted the coordinates' C-alpha
#: lDDT from 0.201 (weight 0) to 0.228 and TM-score from 0.157 to 0.180, the same
#: as weighting by the measured per-separation variance (0.229, 0.189)
#: (benchmarks/eval_long.py, smacof, the default model shipped at the time).
UNCOVERED_CV = 0.5

# -- window plan ---------------------------------------------------------------


def default_stride(window: int) -> int:
    """Half a window: every pair with ``|i - j| < window / 2`` is seen by at least one window."""
    return max(1, window // 2)


def plan_windows(length: int, window: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Contiguous windows ``[start, stop)`` covering ``range(length)``.

    Starts are ``0, stride, 2 * stride, ...``; the last window ends exactly at
    ``length``. A chain no longer than ``window`` is one window. Every pair with
    ``|i - j| <= window - stride`` is covered by at least one window; pairs with
    ``|i - j| >= window`` never are.
    """
    window, stride = _validate(window, stride)
    if length < 0:
        raise InputError(f"chain length {length} is negative")
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


def _validate(window: Any, stride: Any) -> tuple[int, int]:
    try:
        window = int(window)
    except (TypeError, ValueError):
        raise UsageError(f"window must be an integer, got {window!r}") from None
    if window < 2:
        raise UsageError(f"window must be at least 2 residues, got {window}")
    if stride is None:
        stride = default_stride(window)
    try:
        stride = int(stride)
    except (TypeError, ValueError):
        raise UsageError(f"stride must be an integer, got {stride!r}") from None
    if not 1 <= stride <= window:
        raise UsageError(f"stride must be between 1 and the window ({window}), got {stride}")
    return window, stride


# -- merging -------------------------------------------------------------------


class PairAccumulator:
    """Running confidence-weighted merge of window predictions into (L, L) arrays.

    Holds four (L, L) float32 arrays -- total weight ``W``, weighted mean ``M``,
    weighted squared deviation ``S`` (West's incremental algorithm, stable in
    float32) and weighted variance sum ``V`` -- and a (L, L) uint16 coverage
    count: 18 bytes per residue pair.
    """

    def __init__(self, length: int):
        self.length = int(length)
        shape = (self.length, self.length)
        self.W = np.zeros(shape, np.float32)
        self.M = np.zeros(shape, np.float32)
        self.S = np.zeros(shape, np.float32)
        self.V = np.zeros(shape, np.float32)
        self.coverage = np.zeros(shape, np.uint16)
        self.has_variance: bool | None = None

    def add(self, index: slice | np.ndarray, distance: np.ndarray, variance: np.ndarray | None) -> None:
        """Merge one window: ``distance``/``variance`` (n, n) for the residues ``index``
        (a slice, or an increasing integer array)."""
        d = np.asarray(distance, np.float32)
        has_var = variance is not None
        if self.has_variance is None:
            self.has_variance = has_var
        elif self.has_variance != has_var:
            raise ValueError("some windows report a variance and others do not")
        if has_var:
            v = np.maximum(np.asarray(variance, np.float32), 0.0)
            w = 1.0 / np.maximum(v, MIN_VARIANCE)
        else:
            v = np.zeros_like(d)
            w = np.ones_like(d)
        key = (index, index) if isinstance(index, slice) else np.ix_(index, index)
        W, M, S, V = self.W[key], self.M[key], self.S[key], self.V[key]
        W_new = W + w
        delta = d - M
        M_new = M + (w / W_new) * delta
        self.S[key] = S + w * delta * (d - M_new)
        self.M[key] = M_new
        self.W[key] = W_new
        self.V[key] = V + w * v
        self.coverage[key] += 1

    def result(self, fill: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
               ) -> dict[str, Any]:
        """The merged prediction.

        Returns ``{"distance": (L, L) float32 Å, "variance": (L, L) float32 Å^2
        (inf where uncovered) or None if the model gives none, "coverage": (L, L)
        uint16 number of windows that saw each pair}``. ``fill`` gives uncovered
        pairs their distance: a per-separation profile (L,) in Å, or a callable
        ``(distance, covered) -> profile``; default :func:`separation_fill`.
        The diagonal is 0 and both matrices are symmetric.
        """
        covered = self.coverage > 0
        distance = self.M  # reused in place: the accumulator is spent after this
        variance = None
        if self.has_variance:  # (V + S) / W in place, inf where no window saw the pair
            variance = self.V
            variance += self.S
            self.S = None
            np.divide(variance, self.W, out=variance, where=covered)
            variance[~covered] = np.inf
        if not covered.all():
            profile = separation_fill(distance, covered) if fill is None else (
                fill(distance, covered) if callable(fill) else np.asarray(fill, np.float32))
            profile = np.asarray(profile, np.float32)
            idx = np.arange(self.length)
            for i in range(self.length):  # row by row: no (L, L) separation temporary
                miss = ~covered[i]
                if miss.any():
                    distance[i, miss] = profile[np.abs(idx[miss] - i)]
        # no symmetrising here: every window is exactly symmetric with a zero diagonal (the head's
        # contract), the running mean and variance above are elementwise, and the fill depends on
        # |i - j| only, so the merge is exactly symmetric too (tests/test_windows.py checks it)
        self.W = self.S = self.V = self.M = None  # the arrays now belong to the result
        return {"distance": distance, "variance": variance, "coverage": self.coverage}


class ResidueAccumulator:
    """Running weighted mean of per-residue window rows (L, K): secondary-structure
    probabilities. ``add`` takes the rows of one window and, optionally, its (n, n) pair
    variance, whose per-residue mean (diagonal excluded) gives the rows their weights
    (see the module docstring)."""

    def __init__(self, length: int, width: int):
        self.W = np.zeros(int(length), np.float64)
        self.S = np.zeros((int(length), int(width)), np.float64)

    def add(self, index: slice, rows: np.ndarray, variance: np.ndarray | None = None) -> None:
        rows = np.asarray(rows, np.float64)
        n = len(rows)
        if rows.shape != (n, self.S.shape[1]):
            raise ValueError(f"model returned per-residue rows of shape {rows.shape} for a window of "
                             f"{n} residues; expected ({n}, {self.S.shape[1]})")
        if variance is None or n < 2:
            w = np.ones(n)
        else:
            v = np.maximum(np.asarray(variance, np.float64), 0.0)
            mean_v = (v.sum(1) - np.diagonal(v)) / (n - 1)
            w = 1.0 / np.maximum(mean_v, MIN_VARIANCE)
        self.W[index] += w
        self.S[index] += w[:, None] * rows

    def result(self) -> np.ndarray:
        """(L, K) float32 weighted mean rows, renormalised to sum 1."""
        out = self.S / np.maximum(self.W, 1e-300)[:, None]
        total = out.sum(1, keepdims=True)
        out = np.where(total > 0, out / np.where(total > 0, total, 1.0), out)
        return out.astype(np.float32)


def separation_profile(distance: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
    """(L,) median of ``distance`` over each diagonal (|i - j| = s) among covered pairs;
    NaN for separations with no covered pair."""
    n = len(distance)
    out = np.full(n, np.nan, np.float32)
    out[0] = 0.0
    for s in range(1, n):
        vals = np.diagonal(distance, s)
        if covered is not None:
            vals = vals[np.diagonal(covered, s)]
        if len(vals):
            out[s] = np.median(vals)
    return out


def separation_fill(distance: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """A distance for every separation, for pairs no window covered.

    Covered separations use the median predicted distance at that separation.
    Beyond them the profile follows a power law ``a s^b`` fitted to the medians
    of the outer half of the covered separations, capped at the mean C-alpha
    distance of a compact globule of L residues (1.33 R_g with
    R_g = 2.2 L^0.38 Å) but never below the last covered median. It only seeds
    reconstruction: these pairs carry weight 0.
    """
    n = len(distance)
    prof = separation_profile(distance, covered)
    known = np.flatnonzero(np.isfinite(prof))
    known = known[known > 0]
    if len(known) == 0:
        s = np.arange(n, dtype=np.float64)
        return (3.8 * np.sqrt(s)).astype(np.float32)
    last = known.max()
    fit = known[known >= max(2, last // 2)]
    seps = np.arange(n, dtype=np.float64)
    if len(fit) >= 2 and np.all(prof[fit] > 0):
        b, loga = np.polyfit(np.log(fit), np.log(prof[fit].astype(np.float64)), 1)
        b = float(np.clip(b, 0.0, 1.0))
        extrap = np.exp(loga) * np.maximum(seps, 1.0) ** b
    else:
        extrap = np.full(n, float(prof[last]))
    globule = 1.33 * 2.2 * n ** 0.38
    cap = max(globule, float(prof[last]))
    extrap = np.clip(extrap, float(prof[last]), cap)
    # interior gaps (a separation with no covered pair below `last`): interpolate
    out = np.interp(seps, known.astype(np.float64), prof[known].astype(np.float64))
    out[last + 1:] = extrap[last + 1:]
    out[0] = 0.0
    return out.astype(np.float32)


# -- prediction ------------------------------------------------------------------


def model_crop(model: Any, default: int = 256) -> int:
    """The crop length the model was trained on (``model.config["crop"]``)."""
    cfg = getattr(model, "config", None) or {}
    crop = cfg.get("crop") if isinstance(cfg, dict) else None
    if crop is None and isinstance(cfg, dict):
        crop = (cfg.get("train") or {}).get("crop") if isinstance(cfg.get("train"), dict) else None
    return int(crop) if crop else int(default)


def resolve_window(model: Any, window: int | None = None, stride: int | None = None) -> tuple[int, int]:
    """(window, stride) with defaults from the model (its crop, half of it); a bad
    value raises :class:`UsageError`."""
    return _validate(model_crop(model) if window is None else window, stride)


def predict_windowed(model: Any, sequence: str, window: int | None = None, stride: int | None = None,
                     batch_size: int = 4, fill=None, progress: Callable[[int, int], None] | None = None
                     ) -> dict[str, Any]:
    """Predict one chain of any length window by window.

    model: has ``predict(list[str], lengths=list[int]) -> list[{"distance": (n, n), "variance": (n, n)
        or None}]`` and ``config["crop"]``; ``lengths`` are the full chain's length.
    window, stride: residues; defaults ``model.config["crop"]`` and ``window // 2``.
    batch_size: windows per ``model.predict`` call (memory grows with it, not with L).
    progress: optional ``callback(windows_done, windows_total)``.
    fill: distances for uncovered pairs (see :meth:`PairAccumulator.result`); default the
        model's separation prior for this length (``model.prior``) when it has one, else
        :func:`separation_fill`.

    Returns ``{"distance": (L, L) float32 Å, "variance": (L, L) float32 Å^2 or None,
    "coverage": (L, L) uint16, "windows": [(start, stop), ...]}``, plus ``"ss_probs"``
    (L, 3) float32 when the model returns it (for every window or none); see the module
    docstring for the merge rule. A chain no longer than the window is a single
    ``model.predict`` call, so the result equals the model's own prediction.
    """
    window, stride = resolve_window(model, window, stride)
    n = len(sequence)
    plan = plan_windows(n, window, stride)
    acc = PairAccumulator(n)
    ss_acc: ResidueAccumulator | None = None
    seen_ss: bool | None = None
    batch_size = max(1, int(batch_size))
    if fill is None:
        fill = model_prior_fill(model, n)
    for b in range(0, len(plan), batch_size):
        chunk = plan[b:b + batch_size]
        windows = [sequence[s:e] for s, e in chunk]
        # each window sees the full chain's length (the separation prior's length bucket), as training crops do
        outs = model.predict(windows, lengths=[n] * len(chunk))
        for (s, e), out in zip(chunk, outs):
            d = np.asarray(out["distance"], np.float32)
            if d.shape != (e - s, e - s):
                raise ValueError(f"model returned shape {d.shape} for a window of {e - s} residues")
            var = out.get("variance")
            var = None if var is None else np.asarray(var, np.float32)
            acc.add(slice(s, e), d, var)
            ss = out.get("ss_probs")
            if seen_ss is None:
                seen_ss = ss is not None
            elif seen_ss != (ss is not None):
                raise ValueError("some windows report ss_probs and others do not")
            if ss is not None:
                ss = _numpy(ss)
                if ss_acc is None:
                    ss_acc = ResidueAccumulator(n, ss.shape[1] if ss.ndim == 2 else 3)
                ss_acc.add(slice(s, e), ss, var)
        del outs
        if progress is not None:
            progress(min(b + batch_size, len(plan)), len(plan))
    result = acc.result(fill)
    result["windows"] = plan
    if ss_acc is not None:
        result["ss_probs"] = ss_acc.result()
    return result


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, np.float64)


def model_prior_fill(model: Any, length: int) -> np.ndarray | None:
    """(length,) the model's own separation prior for a chain of ``length`` residues
    (:class:`distfold.pipeline.prior.SeparationPrior`, separations past its table take its last
    value), or None when the model carries no prior."""
    prior = getattr(model, "prior", None)
    if prior is None or getattr(prior, "table", None) is None:
        return None
    row = np.asarray(prior.row(length), np.float32)
    prof = row[np.minimum(np.arange(length), len(row) - 1)]
    prof[0] = 0.0
    return prof if np.all(np.isfinite(prof)) else None


def reconstruction_variance(result: dict[str, Any], cv: float = UNCOVERED_CV) -> np.ndarray | None:
    """(L, L) float32 variance to weight reconstruction by: the merged variance where
    a window saw the pair, ``(cv * distance)^2`` (the prior's uncertainty about its
    filler distance) where none did. None when the model reports no variance."""
    var = result.get("variance")
    if var is None:
        return None
    covered = result["coverage"] > 0
    if covered.all():
        return var
    out = np.array(var, dtype=np.float32, copy=True)
    d = result["distance"]
    for i in range(len(out)):  # row by row: no (L, L) temporaries
        miss = ~covered[i]
        miss[i] = False
        out[i, miss] = (cv * d[i, miss]) ** 2
    return out


# -- memory guard ------------------------------------------------------------------

#: Bytes of peak process memory per residue pair (L^2) for the whole of
#: ``distfold predict`` (windows, merge, weights, reconstruction, confidence).
#: benchmarks/bench_long.py measured 101-128 bytes per pair above the fixed cost
#: at L = 1024-4096 with smacof and 110-126 with refine (default model); 160 leaves
#: headroom.
BYTES_PER_PAIR = 160
#: Fixed memory for the interpreter, torch and the model, in bytes (measured 0.38
#: GiB with the default model; a bigger backbone adds its weights, 4 bytes per
#: fp32 parameter, which the 0.8 share of the available memory has to absorb).
BASE_BYTES = 1 << 30
# one reading of the available memory for the whole package (geometry is the lower layer)
from distfold.geometry.distmat import MEMORY_SHARE, available_memory  # noqa: E402


def memory_max_length(available: int | None = None, bytes_per_pair: float = BYTES_PER_PAIR,
                      base_bytes: int = BASE_BYTES, share: float = MEMORY_SHARE) -> int | None:
    """Longest chain whose (L, L) state fits in ``share`` of the available memory
    (None when the available memory cannot be read)."""
    if available is None:
        available = available_memory()
    if available is None:
        return None
    usable = share * available - base_bytes
    if usable <= 0:
        return 0
    return int(math.isqrt(int(usable / bytes_per_pair)))


def check_length(name: str, length: int, max_length: int | None = None,
                 available: int | None = None) -> None:
    """Raise :class:`InputError` if a chain of ``length`` residues is too long.

    ``max_length`` (``--max-length``) is a user's explicit limit; when None the
    limit is computed from the available memory. Nothing is refused when the
    available memory cannot be read and no limit is given.
    """
    if max_length is not None:
        if length > max_length:
            raise InputError(f"{name}: {length} residues exceeds --max-length {max_length}")
        return
    avail = available_memory() if available is None else available
    limit = memory_max_length(avail)
    if limit is not None and length > limit:
        raise InputError(
            f"{name}: {length} residues needs about {_gib(BASE_BYTES + BYTES_PER_PAIR * length ** 2)} GiB "
            f"but only {_gib(avail)} GiB is available, enough for about {limit} residues; "
            f"free memory, use a larger machine, or set --max-length to override")


def _gib(n: float | None) -> str:
    return "?" if n is None else f"{n / 2 ** 30:.1f}"
