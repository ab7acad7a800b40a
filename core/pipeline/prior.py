"""The separation prior: typical C-alpha distance as a function of |i - j| and chain length.

SCIENCE.md section 4: "mean training distance as a function of |i-j| and a length
bucket". A model that does not clearly beat it has learned nothing about the
sequence. distfold uses it twice: as the baseline of ``distfold evaluate`` and as
an optional pair input feature of the distance heads.

The table holds, for each length bucket and each separation s = 0 .. max_separation,
the median (or mean) distance over observed training pairs; a separation seen in
too few pairs of a bucket falls back to the pooled value of all buckets and,
beyond that, to the last reliable value. Saved as JSON (no pickles). numpy only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from distfold.errors import InputError
from distfold.fileio import atomic_write

DEFAULT_BUCKETS = (64, 128, 256, 512)  # upper edges (exclusive); one more bucket for longer chains


def _by_separation(d: np.ndarray, max_separation: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(L, counts, values) of an (L, L) matrix: the finite entries of its diagonals 1 ..
    min(L - 1, max_separation), diagonal after diagonal (each in order of i); counts:
    (max_separation + 1,) how many of them each diagonal gave."""
    n = len(d)
    top = min(n - 1, max_separation)
    counts = np.zeros(max_separation + 1, dtype=np.int64)
    if top < 1:
        return n, counts, d[:0, 0] if n else np.zeros(0, d.dtype)
    # row s of a skewed view of the matrix padded to (n, 2n) is diagonal s, then padding
    pad = np.zeros((n, 2 * n), dtype=d.dtype)
    pad[:, :n] = d
    skew = np.lib.stride_tricks.as_strided(pad, shape=(top + 1, n), strides=(pad.itemsize, pad.strides[0] + pad.itemsize))
    keep = (np.arange(n)[None, :] < (n - np.arange(top + 1))[:, None]) & np.isfinite(skew)
    keep[0] = False
    counts[:top + 1] = keep.sum(1)
    return n, counts, skew[keep]


class SeparationPrior:
    """Distance prior d(|i - j|, length bucket), Å.

    buckets: upper edges of the length buckets (a chain of length L falls in the first
        bucket with L < edge; longer chains in the last, open-ended bucket).
    statistic: ``median`` (the default: a median point estimate has lower MAE and higher
        lDDT) or ``mean``.
    table: (n_buckets, max_separation + 1) float, Å; row b is bucket b, column s is |i-j| = s.
    """

    def __init__(self, table: np.ndarray | None = None, buckets: Iterable[int] = DEFAULT_BUCKETS,
                 statistic: str = "median", min_count: int = 20):
        if statistic not in ("median", "mean"):
            raise InputError(f"prior statistic must be 'median' or 'mean', not {statistic!r}")
        self.buckets = tuple(int(b) for b in buckets)
        self.statistic = statistic
        self.min_count = int(min_count)
        self.table = None if table is None else np.asarray(table, dtype=np.float64)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, dataset, split: str | None = "train", max_separation: int = 1024) -> "SeparationPrior":
        """Fit on the observed pairs of one split of a :class:`distfold.data.dataset.Dataset`
        (:meth:`Sample.distances`, the pairs i < j within ``max_separation``)."""
        idx = dataset.indices(split)
        if not idx:
            raise InputError(f"{dataset.path}: no chains in split {split!r} to fit the separation prior on")
        return self._fit_pairs((_by_separation(dataset[i].distances(), max_separation) for i in idx),
                               max_separation)

    def fit_distance_matrices(self, matrices: Iterable[np.ndarray], max_separation: int = 1024) -> "SeparationPrior":
        """Fit on (L, L) distance matrices, Å (non-finite entries are unobserved pairs)."""
        return self._fit_pairs((_by_separation(np.asarray(d, dtype=np.float64), max_separation) for d in matrices),
                               max_separation)

    def _fit_pairs(self, chains: Iterable[tuple[int, np.ndarray, np.ndarray]], max_separation: int
                   ) -> "SeparationPrior":
        """chains: (length, counts, values) per chain (:func:`_by_separation`).

        Every value is placed once into one array ordered by separation, then bucket,
        then chain, then i: each (bucket, separation) group and each separation's pooled
        group is a contiguous slice holding its values in the order a per-chain,
        per-diagonal collection would (so a mean sums them in that order; a median does
        not depend on it)."""
        nb = len(self.buckets) + 1
        size = max_separation + 1
        items = [(self.bucket(n), counts, vals) for n, counts, vals in chains]
        cell = np.zeros((size, nb), dtype=np.int64)  # values per (separation, bucket)
        for b, counts, _ in items:
            cell[:, b] += counts
        cell_start = np.concatenate([[0], np.cumsum(cell.ravel())])[:-1].reshape(size, nb)
        dtype = np.result_type(*[v.dtype for _, _, v in items]) if items else np.float64
        ordered = np.empty(int(cell.sum()), dtype=dtype)
        filled = np.zeros((size, nb), dtype=np.int64)
        for b, counts, vals in items:
            start = cell_start[:, b] + filled[:, b]  # where this chain's diagonal s goes
            nz = np.flatnonzero(counts)
            first = np.concatenate([[0], np.cumsum(counts[nz])])[:-1]  # its offset in vals
            ordered[np.repeat(start[nz] - first, counts[nz]) + np.arange(len(vals))] = vals
            filled[:, b] += counts
        sep_start = cell_start[:, 0]
        sep_count = cell.sum(1)
        stat = np.median if self.statistic == "median" else np.mean
        table = np.full((nb, max_separation + 1), np.nan)
        pooled = np.full(max_separation + 1, np.nan)
        for s in range(1, max_separation + 1):
            lo = sep_start[s]
            if sep_count[s] >= self.min_count:
                pooled[s] = stat(np.asarray(ordered[lo:lo + sep_count[s]], dtype=np.float64))
            for b in range(nb):
                if cell[s, b] >= self.min_count:
                    lo = cell_start[s, b]
                    table[b, s] = stat(np.asarray(ordered[lo:lo + cell[s, b]], dtype=np.float64))
        if not np.isfinite(pooled[1:]).any():
            raise InputError("too few observed pairs to fit the separation prior")
        # Carry the last reliable pooled value forward to separations no chain reached.
        last = float(pooled[1]) if np.isfinite(pooled[1]) else float(np.nanmin(pooled[1:]))
        for s in range(1, max_separation + 1):
            if np.isfinite(pooled[s]):
                last = pooled[s]
            else:
                pooled[s] = last
        # Separations a bucket saw too rarely (at most its longest chains) take the pooled value.
        table = np.where(np.isfinite(table), table, pooled[None, :])
        table[:, 0] = 0.0
        self.table = np.round(table, 4)  # what the JSON file holds, so a reload is exact
        return self

    # -- use -----------------------------------------------------------------------------------
    def bucket(self, length: int) -> int:
        for b, edge in enumerate(self.buckets):
            if length < edge:
                return b
        return len(self.buckets)

    @property
    def max_separation(self) -> int:
        self._require()
        return self.table.shape[1] - 1

    def _require(self) -> None:
        if self.table is None:
            raise InputError("the separation prior is not fitted")

    def row(self, length: int) -> np.ndarray:
        """(max_separation + 1,) prior distance by separation for a chain of ``length``, Å."""
        self._require()
        return self.table[self.bucket(length)]

    def matrix(self, length: int, start: int = 0, size: int | None = None) -> np.ndarray:
        """(size, size) float32 prior distances, Å, for residues start .. start+size of a
        chain of ``length`` residues (a crop keeps the full chain's length bucket)."""
        size = length - start if size is None else size
        row = self.row(length)
        idx = np.arange(size)
        sep = np.minimum(np.abs(idx[:, None] - idx[None, :]), len(row) - 1)
        return row[sep].astype(np.float32)

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._require()
        return {"format": "distfold-separation-prior", "version": 1, "buckets": list(self.buckets),
                "statistic": self.statistic, "min_count": self.min_count,
                "table": [[round(float(v), 4) for v in row] for row in self.table]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SeparationPrior":
        if data.get("format") != "distfold-separation-prior":
            raise InputError("not a distfold separation prior")
        return cls(np.asarray(data["table"], dtype=np.float64), data["buckets"], data["statistic"],
                   data.get("min_count", 20))

    def save(self, path: str | os.PathLike) -> None:
        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SeparationPrior":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: no such separation prior file") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: invalid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a valid separation prior ({exc})") from None
