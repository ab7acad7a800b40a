"""Structure-comparison metrics on C-alpha atoms (SCIENCE.md section 3).

Distance-matrix metrics (lDDT, distance errors, contact precision) need no
superposition and so also score a predicted matrix before reconstruction.
Coordinate metrics (RMSD, TM-score, GDT) compare two corresponded (N, 3)
C-alpha sets: row i of the model belongs with row i of the reference.
:func:`score_coordinates` computes all of them at once; ``distfold compare``
and ``distfold evaluate`` both go through it, so they give identical numbers.

All distances in Å. ``mask`` arguments are (L,) bool: False residues
(unobserved) are excluded.

- RMSD: after the optimal proper superposition, by ``mdtraj.rmsd`` (nm,
  converted here once).
- TM-score: the TM-score program's definition and search (Zhang & Skolnick
  2004) with the residue correspondence fixed: normalised by the reference
  length, d0 = 1.24 (L_ref - 15)^(1/3) - 1.8 floored at 0.5; superpositions
  seeded from fragments of lengths N, N/2, N/4, N/8, N/16 and 4 at every
  position, each refined by up to 20 Kabsch fits on the pairs closer than
  d0_search + 1 (d0_search = d0 clipped to 4.5-8 Å). Not TM-align: no
  residue re-alignment.
- GDT-TS / GDT-HA: for each cutoff separately, the largest share of
  reference residues within the cutoff (distance <= cutoff) under a
  superposition found by a seeded search (fragments as above down to 3
  residues and random 3-5 residue subsets, each refined by Kabsch fits on the
  pairs within the cutoff; the TM-score search's superpositions count too),
  times 100. A lower bound of the true maximum: every superposition tried is the
  Kabsch fit of some residue subset, and the best one often is not reachable by
  such a search (on real chains the maximum at a cutoff can rest on the fit of
  one triple of residues in 50,000). Measured against a slow search from every
  triple and every contiguous window of residues (tests/data/reference_scores/
  gdt_reference.json, 8 real cases of 70-90 residues with noise and hinge
  motions): 0 to 1.39 GDT-TS lower (median 0.46; GDT-HA up to 1.0), one or two
  residues short at some cutoff in 6 of the 8 cases and one residue above it in 2
  (see :data:`GDT_TS_MEASURED_GAP`); on windows of 7-11 residues it equals an
  exhaustive search over all subsets.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from distfold.errors import InputError
from distfold.geometry.superpose import _rotations_from_covariance
from distfold.machine import usable_cores

LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
LDDT_CUTOFF = 15.0


def distance_matrix(x: np.ndarray) -> np.ndarray:
    """(L, L) Euclidean distances of (L, 3) coordinates."""
    from scipy.spatial.distance import cdist  # bit-identical to the broadcast formula, 10x faster

    x = np.asarray(x, dtype=np.float64)
    return cdist(x, x)


def _pair_mask(n: int, mask: np.ndarray | None) -> np.ndarray:
    m = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
    return m[:, None] & m[None, :]


def lddt(pred_d: np.ndarray, true_d: np.ndarray, mask: np.ndarray | None = None,
         cutoff: float = LDDT_CUTOFF, thresholds=LDDT_THRESHOLDS,
         model_mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """C-alpha lDDT (Mariani et al. 2013) from two (L, L) distance matrices (Å).

    The reference defines the pairs: i != j, both residues in the reference
    (``mask`` True, default all; non-finite ``true_d`` entries count as absent
    too) and true distance < ``cutoff``. A pair is preserved at threshold t when
    |d_pred - d_true| < t; the score is the mean over ``thresholds`` of the
    fraction preserved. A pair whose residue the model lacks (``model_mask``
    False, or a non-finite ``pred_d`` entry) stays in the denominator and counts
    as not preserved, as in CASP / OpenStructure, AlphaFold2's ``lddt`` and
    biotite's ``lddt``: a fragment model cannot score above its coverage.

    Returns (global score in [0, 1], per-residue scores (L,)): residue i's score
    is over the pairs (i, j) above, so a reference residue the model lacks scores
    0; NaN where a residue has no scored pair (absent from the reference, or
    nothing within ``cutoff``). NaN global score when no pair is scored.
    """
    pred_d = np.asarray(pred_d, dtype=np.float64)
    true_d = np.asarray(true_d, dtype=np.float64)
    n = len(true_d)
    if pred_d.shape != true_d.shape or true_d.shape != (n, n):
        raise InputError(f"lddt needs two (L, L) matrices, got {pred_d.shape} and {true_d.shape}")
    pm = _pair_mask(n, mask) & ~np.eye(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        incl = pm & np.isfinite(true_d) & (true_d < cutoff)
    scored = incl if model_mask is None else incl & _pair_mask(n, model_mask)
    # a pair's preserved share is the number of thresholds it is within over len(thresholds);
    # sums of such shares are exact, so per-residue counts give the numbers of a float matrix
    within = np.zeros(n, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        err = np.abs(pred_d - true_d)  # NaN (never within) where the model has no distance
        for t in thresholds:
            within += _row_counts(scored & (err < t))
    preserved = within / len(thresholds)
    n_pairs = _row_counts(incl)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_res = np.where(n_pairs > 0, preserved / np.maximum(n_pairs, 1), np.nan)
    total = n_pairs.sum()
    score = float(preserved.sum() / total) if total else float("nan")
    return score, per_res


def _upper_mask(n: int, mask: np.ndarray | None, min_sep: int = 1, max_sep: int | None = None) -> np.ndarray:
    """(n, n) bool: the pairs i < j with min_sep <= j - i <= max_sep of residues in ``mask``.
    Indexing a matrix with it gives those pairs in the order of np.triu_indices, in a
    fraction of the time of indexing with (i, j) arrays."""
    keep = np.tri(n, k=-min_sep, dtype=bool).T  # i <= j - min_sep
    if max_sep is not None:
        keep = keep & ~np.tri(n, k=-(max_sep + 1), dtype=bool).T
    if mask is not None:
        m = np.asarray(mask, bool)
        keep = keep & m[:, None] & m[None, :]
    return keep


def distance_errors(pred_d: np.ndarray, true_d: np.ndarray, mask: np.ndarray | None = None,
                    min_sep: int = 1, max_sep: int | None = None) -> dict[str, float]:
    """MAE, RMSE (Å) and Pearson r over pairs i < j with min_sep <= j - i <= max_sep."""
    pred_d = np.asarray(pred_d, dtype=np.float64)
    true_d = np.asarray(true_d, dtype=np.float64)
    keep = _upper_mask(len(true_d), mask, min_sep, max_sep) & np.isfinite(pred_d) & np.isfinite(true_d)
    p, t = pred_d[keep], true_d[keep]
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
    pred_score = np.asarray(pred_score, dtype=np.float64)
    keep = _upper_mask(n, mask, min_sep) & np.isfinite(pred_score) & np.isfinite(true_d)
    s, t = pred_score[keep], true_d[keep]
    k = max(1, int(n * top_fraction))
    if len(s) == 0:
        return float("nan")
    key = -s if higher_is_contact else s
    if k < len(key):  # the k first of a stable sort, without sorting every pair
        kth = np.partition(key, k - 1)[k - 1]
        cand = np.flatnonzero(key <= kth)
        order = cand[np.argsort(key[cand], kind="stable")[:k]]
    else:
        order = np.argsort(key, kind="stable")[:k]
    return float((t[order] < threshold).mean())


# ---------------------------------------------------------------- coordinates

TM_N_ITER = 20
TM_N_INIT_MAX = 6
GDT_TS_CUTOFFS = (1.0, 2.0, 4.0, 8.0)
GDT_HA_CUTOFFS = (0.5, 1.0, 2.0, 4.0)
GDT_N_ITER = 20
GDT_MOVES = (1, 2, -1)
GDT_BEAM = 256
GDT_RANDOM_SEEDS = 1536
GDT_RANDOM_STATE = 20240605
#: Rows of a search step fitted in one call. The batched rotations cost a fixed ~0.2 ms a call
#: besides their cost per row, so larger blocks are faster: all of ``compare``'s scores took
#: 1.15x as long with 512-row blocks at N = 1000 and 1.36x at N = 2000, with the same numbers.
#: A block's memory is only its (rows, 17) sums and transforms: distances are computed in chunks.
BLOCK_ROWS = 8192
#: Within a block, fit sums and distances are computed a chunk of rows at a time in two reused
#: (rows, N) float64 scratch buffers of about this many bytes, so no block-sized array is
#: allocated per pass (fresh pages cost a fault each: the TM-score search of a 1000-residue
#: mirror image took 1.2-1.4x as long with whole 512-row arrays, 37,000 page faults against
#: 3,000). At N = 1000, 1-2 MB measured fastest; 0.25 and 8 MB 1.3-1.4x slower.
CHUNK_BYTES = 2 * 2**20
#: The GDT seeds' masks for every cutoff are kept at once up to this many bytes.
SHARED_MASK_BYTES = 32 * 2**20
CONTACT_DEFINITION = "C-alpha < 8 A, |i-j| >= 24, top L/5 by model distance"


def tm_d0(l_ref: int) -> float:
    """TM-score distance scale d0 (Å) for a reference of ``l_ref`` residues."""
    if l_ref <= 21:
        return 0.5
    return max(0.5, 1.24 * (l_ref - 15) ** (1.0 / 3.0) - 1.8)


def _as_xyz(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise InputError(f"{name} coordinates must be (N, 3), got shape {a.shape}")
    return a


def _pair(model, ref) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_xyz(model, "model"), _as_xyz(ref, "reference")
    if len(x) != len(y):
        raise InputError(f"model has {len(x)} residues but reference has {len(y)}; they must correspond row by row")
    if len(x) == 0:
        raise InputError("no residues to compare")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("coordinates contain NaN or infinity; pass a mask to score_coordinates instead")
    return x, y


def _seed_lengths(n: int, l_min: int = 4, n_init_max: int = TM_N_INIT_MAX) -> list[int]:
    """Fragment lengths of the TM-score program: n, n/2, n/4, ... (integer), then l_min."""
    l_min = min(l_min, n)
    out = []
    for i in range(n_init_max - 1):
        length = n // 2**i
        if length <= l_min:
            out.append(l_min)
            return out
        out.append(length)
    out.append(l_min)
    return out


def _fragment_masks(n: int, lengths: list[int]) -> np.ndarray:
    """(S, n) bool: one row per contiguous fragment of each length, at every start."""
    rows = []
    for length in dict.fromkeys(lengths):
        starts = np.arange(n - length + 1)
        m = np.zeros((len(starts), n), dtype=bool)
        m[np.arange(len(starts))[:, None], starts[:, None] + np.arange(length)[None, :]] = True
        rows.append(m)
    return np.concatenate(rows)


_BLAS_CONTROLLER = None


def _one_blas_thread():
    """The searches run thousands of small matrix products; a multi-threaded BLAS
    spends longer starting threads than computing them (10-40x slower measured
    on a busy 2-core machine), so they run with one BLAS thread."""
    global _BLAS_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - declared dependency
        import contextlib

        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


def _in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(len(keys),) bool: which of ``keys`` are in ``sorted_keys`` (sorted ascending), by binary
    search instead of np.isin's sort of both arrays."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


_BITWISE_COUNT = getattr(np, "bitwise_count", None)  # numpy >= 2.0


def _pack_rows(sel: np.ndarray) -> np.ndarray:
    """(S, ceil(N / 8)) uint8: each row's membership bits (np.packbits), for counting and hashing."""
    return np.packbits(sel, axis=1)


def _row_counts(sel: np.ndarray, packed: np.ndarray | None = None) -> np.ndarray:
    """(S,) members of each row of a (S, N) bool matrix. From its packed bits (``packed``, or
    packed here) where numpy counts bits: 2x faster than np.count_nonzero at N = 1000."""
    if _BITWISE_COUNT is None:
        return np.count_nonzero(sel, axis=1)
    if packed is None:
        packed = np.packbits(sel, axis=1)
    return _BITWISE_COUNT(packed).sum(1, dtype=np.intp)


def _row_slices(rows: int, step: int):
    """Slices of ``rows`` rows, ``step`` at a time (the last one shorter)."""
    for a in range(0, rows, step):
        yield slice(a, min(a + step, rows))


class _Superposer:
    """Batched Kabsch fits of x onto y and the squared distances they leave, each
    a single matrix product over precomputed per-residue features.

    Both sets are centred first (so the expanded distance formula loses no
    precision); transforms returned by :meth:`transform` are for the original
    coordinates.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.cx0, self.cy0 = x.mean(0), y.mean(0)
        x, y = x - self.cx0, y - self.cy0
        n = len(x)
        # [x (3), y (3), x_a y_b (9), |x|^2 + |y|^2, 1] per residue: weighted sums give centroids,
        # covariance and the subset's size, and a linear form in them gives |R x + t - y|^2
        self.feat = np.concatenate([x, y, (x[:, :, None] * y[:, None, :]).reshape(n, 9),
                                    ((x * x).sum(1) + (y * y).sum(1))[:, None], np.ones((n, 1))], axis=1)
        self.feat_t = np.ascontiguousarray(self.feat.T)
        self.n = n
        self._weights = None
        self._chunk_rows = max(8, CHUNK_BYTES // (8 * max(n, 1)))
        self._scratch = None
        self.forget()

    def fit(self, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """sel (S, N) bool/0-1, every row non-empty -> R (S, 3, 3), t (S, 3) (centred frame)."""
        sums = np.empty((len(sel), self.feat.shape[1]))
        weights = self.scratch(0)
        for c in self.chunks(len(sel)):
            w = weights[:c.stop - c.start]
            np.copyto(w, sel[c])  # 0/1 as float64, for the matrix product
            np.matmul(w, self.feat, out=sums[c])
        sw = sums[:, 16:17]  # whole numbers: exact
        cx = sums[:, 0:3] / sw
        cy = sums[:, 3:6] / sw
        cov = sums[:, 6:15].reshape(-1, 3, 3) - sw[:, :, None] * cx[:, :, None] * cy[:, None, :]
        # half the summed squared deviations of both sets bounds the rotation's eigenvalue (the fit's
        # squared residual is their sum less twice it); the margin covers the rounding of the difference
        spread = 0.5 * (sums[:, 15] - sw[:, 0] * ((cx * cx).sum(1) + (cy * cy).sum(1)))
        r = _rotations_from_covariance(cov, upper=spread + 1e-9 * sums[:, 15] + 1e-12)
        t = cy - np.einsum("sij,sj->si", r, cx)
        return r, t

    def _coefs(self, r: np.ndarray, t: np.ndarray, scale: float, offset: float) -> np.ndarray:
        """(S, 17): each transform's linear form in the residue features (see :meth:`sq_dists`)."""
        rt = r.transpose(0, 2, 1)
        coef = np.concatenate([2.0 * np.einsum("sij,sj->si", rt, t), -2.0 * t, -2.0 * rt.reshape(-1, 9),
                               np.ones((len(t), 1)), (t * t).sum(1)[:, None]], axis=1)
        if scale != 1.0:
            coef *= scale
        coef[:, 16] += offset
        return coef

    def sq_dists(self, r: np.ndarray, t: np.ndarray, scale: float = 1.0, offset: float = 0.0,
                 clip: bool = True) -> np.ndarray:
        """(S, N) ``offset + scale |R x_i + t - y_i|^2`` (centred frame), one matrix product.

        With the default scale and offset: squared distances, clipped at 0 (the expanded
        formula can round a distance of 0 to -1e-13) unless ``clip`` is False (for callers
        that only compare them with positive cutoffs)."""
        out = self._coefs(r, t, scale, offset) @ self.feat_t
        if clip and scale == 1.0 and offset == 0.0:
            np.maximum(out, 0.0, out=out)
        return out

    def sq_dist_chunks(self, r: np.ndarray, t: np.ndarray, scale: float = 1.0, offset: float = 0.0):
        """:meth:`sq_dists` (unclipped) a chunk of rows at a time: yields (rows, values), the
        values in scratch buffer 0, overwritten by the next chunk (the same numbers: each
        row is its own matrix product)."""
        coef = self._coefs(r, t, scale, offset)
        out = self.scratch(0)
        for c in self.chunks(len(t)):
            yield c, np.matmul(coef[c], self.feat_t, out=out[:c.stop - c.start])

    def chunks(self, rows: int):
        """Row slices of at most :meth:`scratch`'s rows."""
        return _row_slices(rows, self._chunk_rows)

    def scratch(self, k: int) -> np.ndarray:
        """Reused (chunk rows, N) float64 buffer k (0 or 1), one pair per instance (so one per
        search and thread)."""
        if self._scratch is None:
            self._scratch = np.empty((2, self._chunk_rows, self.n))
        return self._scratch[k]

    def new_rows(self, sel: np.ndarray, min_size: int = 1, limit: int | None = None,
                 packed: np.ndarray | None = None) -> np.ndarray:
        """Rows of sel with at least ``min_size`` members whose subset was never fitted
        before, each once; with ``limit``, only the ``limit`` largest. The rows returned
        are marked as fitted. ``packed``: sel's :func:`_pack_rows`, where the caller has it.

        A fit depends only on the subset, so a subset fitted earlier (from any
        seed, at an earlier or the same iteration) has already been followed
        at least as far: dropping it cannot change the maximum found. Subsets
        are compared by a 64-bit hash of their membership bits.
        """
        if packed is None:
            packed = _pack_rows(sel)
        size = _row_counts(sel, packed)
        if limit is not None and len(sel) > 2 * limit:
            return self._largest_new_rows(sel, packed, size, min_size, limit)
        keep = size >= min_size
        if not keep.all():
            sel, packed, size = sel[keep], packed[keep], size[keep]
        if not len(sel):
            return sel
        keys = self._keys(packed)
        _, first = np.unique(keys, return_index=True)
        first = np.sort(first)
        first = first[~_in_sorted(self.seen_keys, keys[first])]
        if limit is not None and len(first) > limit:
            first = first[np.argsort(-size[first], kind="stable")[:limit]]
        self._mark(keys[first])
        return sel if len(first) == len(sel) else sel[first]  # all rows new: first is 0, 1, ...

    def _largest_new_rows(self, sel: np.ndarray, packed: np.ndarray, size: np.ndarray, min_size: int,
                          limit: int) -> np.ndarray:
        """:meth:`new_rows` with a ``limit`` well under the number of rows, hashing only the rows
        it needs: largest first (ties in row order), in chunks, until ``limit`` + 1 new subsets
        are found. The same rows in the same order as hashing every row: the ``limit`` largest
        by size then row order, or, when there are no more than ``limit``, all in row order."""
        rows = np.flatnonzero(size >= min_size)
        rows = rows[np.argsort(-size[rows], kind="stable")]
        picked, picked_keys, got = [], np.zeros(0, dtype=np.uint64), 0
        for a in range(0, len(rows), 2 * limit):
            chunk = rows[a:a + 2 * limit]
            keys = self._keys(packed[chunk])
            _, first = np.unique(keys, return_index=True)  # identical subsets have equal sizes: the
            first = np.sort(first)  # first in this order is the first in row order
            first = first[~_in_sorted(self.seen_keys, keys[first]) & ~_in_sorted(picked_keys, keys[first])]
            first = first[:limit + 1 - got]
            picked.append(chunk[first])
            picked_keys = np.sort(np.concatenate([picked_keys, keys[first]]))
            got += len(first)
            if got > limit:
                picked_keys = picked_keys[picked_keys != keys[first[-1]]]  # the one past the limit
                break
        order = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        order = order[:limit] if got > limit else np.sort(order)
        self._mark(picked_keys)
        return sel[order]

    def _keys(self, packed: np.ndarray) -> np.ndarray:
        """A 64-bit hash of each row's membership bits (rows of :func:`_pack_rows`): the sum of
        its bytes times fixed odd random 64-bit weights, modulo 2^64. Two different rows
        collide with probability at most 2^-56 over the weights: a byte differs by less than
        2^8, so its product with an odd weight keeps at least 56 random bits. (Weighting whole 64-bit words instead
        is no hash: a word's high bits keep only a few bits of the weight, and real searches
        collided on a few thousand subsets.)"""
        # an integer matrix product: the same wrapped sums as multiplying and summing, without the
        # (S, bytes) uint64 temporaries (13x faster measured at N = 1000)
        return packed @ self._hash_weights(packed.shape[1])

    def _mark(self, keys: np.ndarray) -> None:
        """Record ``keys`` as fitted (``seen_keys`` stays sorted)."""
        new = np.sort(keys)
        # a merge of two sorted arrays (np.insert's general path costs ~50 us a call)
        at = np.searchsorted(self.seen_keys, new) + np.arange(len(new))
        merged = np.empty(len(self.seen_keys) + len(new), dtype=np.uint64)
        old = np.ones(len(merged), dtype=bool)
        old[at] = False
        merged[at] = new
        merged[old] = self.seen_keys
        self.seen_keys = merged

    def blocks(self, rows: int):
        """Row slices of at most BLOCK_ROWS."""
        return _row_slices(rows, BLOCK_ROWS)

    def _hash_weights(self, nbytes: int) -> np.ndarray:
        if self._weights is None or len(self._weights) != nbytes:
            rng = np.random.default_rng(0x5EED)
            self._weights = rng.integers(1, 2**63, size=nbytes, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        return self._weights

    def forget(self) -> None:
        self.seen_keys = np.zeros(0, dtype=np.uint64)

    def transform(self, r: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One centred-frame (R, t) as a transform of the original coordinates."""
        return r, t + self.cy0 - r @ self.cx0


def _tm_select(d2: np.ndarray, cut: float, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Pairs closer than ``cut``; where fewer than 3, ``cut`` grows by 0.5 Å until 3 are
    (the TM-score program's score_fun). ``d2`` holds ``offset + scale d^2`` (as
    :meth:`_Superposer.sq_dists` returns it), squared distances by default."""
    sel = d2 < offset + scale * cut * cut
    _grow_thin_rows(sel, _pack_rows(sel), lambda rows: d2[rows], cut, scale, offset)
    return sel


def _grow_thin_rows(sel: np.ndarray, packed: np.ndarray, d2_of, cut: float, scale: float,
                    offset: float) -> None:
    """:func:`_tm_select`'s growth, in place: rows of ``sel`` (and their ``packed`` bits) with
    fewer than 3 members take the pairs within the grown cutoff. ``d2_of(rows)``: those rows'
    ``offset + scale d^2``."""
    n = sel.shape[1]
    if n > 3:
        low = _row_counts(sel, packed) < 3
        if low.any():
            d2 = d2_of(low)
            third = np.sqrt(np.maximum((np.partition(d2, 2, axis=1)[:, 2] - offset) / scale, 0.0))
            grown = cut + 0.5 * (np.floor((third - cut) / 0.5) + 1.0)
            sel[low] = d2 < (offset + scale * grown * grown)[:, None]
            packed[low] = _pack_rows(sel[low])


def _check_lref(n: int, l_ref: int | None) -> int:
    l_ref = n if l_ref is None else int(l_ref)
    if l_ref < n:
        raise InputError(f"reference length {l_ref} is smaller than the {n} corresponded residues")
    return l_ref


def _tm_search(sp: _Superposer, l_ref: int, n_iter: int = TM_N_ITER, gdt_cutoffs=()):
    """The TM-score program's search. Returns (score, R, t (centred frame), {cutoff: best count})
    where the counts are the most residues within each GDT cutoff over every superposition tried."""
    n = sp.n
    d0 = tm_d0(l_ref)
    d0_search = min(max(d0, 4.5), 8.0)
    inv_d02 = 1.0 / (d0 * d0)
    best = [-1.0, np.eye(3), np.zeros(3)]
    counts = {float(c): 0 for c in gdt_cutoffs}

    def fit_score_select(sel, cut):
        """Fit every row of sel, keep the best score, return each fit's next subset and its
        packed bits."""
        nxt = np.empty(sel.shape, dtype=bool)
        packed = []
        within_q = 1.0 + inv_d02 * cut * cut  # as _tm_select computes it
        recip = sp.scratch(1)
        for block in sp.blocks(len(sel)):
            r, t = sp.fit(sel[block])
            s = np.empty(len(t))
            # q = 1 + d^2 / d0^2: each residue's TM term is 1 / q
            for c, q in sp.sq_dist_chunks(r, t, inv_d02, 1.0):
                sc = s[c] = np.divide(1.0, q, out=recip[:len(q)]).sum(1)  # np.divide: half np.reciprocal's time
                np.less(q, within_q, out=nxt[block][c])
                for cutoff in counts:
                    # every residue within the cutoff adds at least 1 / (1 + c^2 / d0^2) to a row's TM
                    # sum, so a row whose sum bounds its count at or below the best cannot raise it
                    bound = sc * (1.0 + cutoff * cutoff * inv_d02) * (1.0 + 1e-9) + 1e-9
                    rows = np.flatnonzero(bound > counts[cutoff])
                    if len(rows):
                        within = (q if len(rows) == len(q) else q[rows]) <= 1.0 + cutoff * cutoff * inv_d02
                        counts[cutoff] = max(counts[cutoff], int(_row_counts(within).max()))
            k = int(np.argmax(s))
            if s[k] / l_ref > best[0]:
                best[:] = [float(s[k] / l_ref), r[k], t[k]]
            bits = _pack_rows(nxt[block])
            _grow_thin_rows(nxt[block], bits, lambda rows: sp.sq_dists(r[rows], t[rows], inv_d02, 1.0),
                            cut, inv_d02, 1.0)
            packed.append(bits)
        return nxt, np.concatenate(packed)

    sel, packed = fit_score_select(_tm_seeds(n), d0_search - 1.0)
    sp.forget()
    for _ in range(n_iter):
        sel = sp.new_rows(sel, packed=packed)
        if not len(sel):
            break
        sel, packed = fit_score_select(sel, d0_search + 1.0)
    sp.forget()
    return best[0], best[1], best[2], counts


def tm_superposition(model: np.ndarray, ref: np.ndarray, l_ref: int | None = None,
                     n_iter: int = TM_N_ITER) -> tuple[float, np.ndarray, np.ndarray]:
    """TM-score with a fixed residue correspondence and the superposition that gives it.

    model, ref: (N, 3) Å, row i of one corresponds to row i of the other.
    l_ref: the reference length the score is normalised by (default N); it
    also sets d0. Returns (score, R (3, 3), t (3,)) with ``model @ R.T + t``
    the best superposition found.
    """
    x, y = _pair(model, ref)
    l_ref = _check_lref(len(x), l_ref)
    sp = _Superposer(x, y)
    with _one_blas_thread():
        score, r, t, _ = _tm_search(sp, l_ref, n_iter)
    r, t = sp.transform(r, t)
    return score, r, t


def tm_score(model: np.ndarray, ref: np.ndarray, l_ref: int | None = None) -> float:
    """TM-score (0-1] of corresponded C-alphas; see :func:`tm_superposition`."""
    return tm_superposition(model, ref, l_ref)[0]


#: Seed matrices up to this size are kept for the next chain of the same length (a few lengths).
SEED_CACHE_BYTES = 8 * 2**20


def _kept_seeds(make):
    """``make(n)`` -> read-only (S, n) bool seeds, the last four lengths' kept where each is at
    most SEED_CACHE_BYTES (evaluate scores the model and the prior of a chain at one length)."""
    kept: dict[int, np.ndarray] = {}
    lock = threading.Lock()

    @functools.wraps(make)
    def seeds(n: int) -> np.ndarray:
        with lock:
            got = kept.get(n)
        if got is not None:
            return got
        got = make(n)
        got.flags.writeable = False
        if got.nbytes <= SEED_CACHE_BYTES:
            with lock:
                kept[n] = got
                while len(kept) > 4:
                    del kept[next(iter(kept))]
        return got

    return seeds


@_kept_seeds
def _tm_seeds(n: int) -> np.ndarray:
    """The TM-score search's seeds for n residues."""
    return _fragment_masks(n, _seed_lengths(n))


@_kept_seeds
def _gdt_seeds(n: int) -> np.ndarray:
    """The GDT search's seeds for n residues: contiguous fragments, then random small subsets."""
    seeds = _fragment_masks(n, _seed_lengths(n, l_min=3))
    if n > 4 and GDT_RANDOM_SEEDS:
        # RANSAC-style seeds: random 3-, 4- and 5-residue subsets (fixed generator,
        # so results are reproducible); the best superposition often rests on a
        # few residues far apart in sequence, which no contiguous fragment holds.
        rng = np.random.default_rng(GDT_RANDOM_STATE)
        k = 3 + np.arange(GDT_RANDOM_SEEDS) % 3
        keys = rng.random((GDT_RANDOM_SEEDS, n))
        # each row's k-th smallest key (k <= 5 <= n): one partition at the 5th, then a sort of 5
        kth = np.sort(np.partition(keys, 4, axis=1)[:, :5], axis=1)[np.arange(GDT_RANDOM_SEEDS), k - 1]
        seeds = np.concatenate([seeds, keys <= kth[:, None]])
    return seeds


def _gdt_search(sp: _Superposer, cutoffs, n_iter: int = GDT_N_ITER, beam: int = GDT_BEAM) -> dict[float, int]:
    """Per-cutoff search for the most residues within each cutoff c.

    Seeds (one fit each, shared by all cutoffs): contiguous fragments of lengths
    n, n/2, n/4, ... down to 3 at every position, plus GDT_RANDOM_SEEDS random
    subsets of 3, 4 and 5 residues (a fixed generator: results are
    reproducible), because the best superposition often rests on a few
    residues far apart in sequence. Then, per cutoff, chains of Kabsch fits:
    the next subset is the pairs within c; where that subset repeats (a fixed
    point), the next subsets are instead the k closest pairs for k = count + 1,
    count + 2, count - 1 and the count closest with the farthest member swapped
    for the closest non-member. Subsets fitted before are dropped; at most
    ``beam`` subsets (the largest) go on per step, for at most ``n_iter``
    steps. Independent of the TM-score search, whose counts :func:`_best_counts`
    adds afterwards.
    """
    n = sp.n
    seeds = _gdt_seeds(n)
    fits = [sp.fit(seeds[block]) for block in sp.blocks(len(seeds))]

    def within(cuts: list[float]) -> dict[float, np.ndarray]:
        """{cutoff: (seeds, N) bool, the pairs within it under each seed's fit}."""
        out = {c: np.empty((len(seeds), n), dtype=bool) for c in cuts}
        at = 0
        for r, t in fits:
            for rows, d2 in sp.sq_dist_chunks(r, t):  # only compared with the cutoffs: unclipped
                for c in cuts:
                    np.less_equal(d2, c * c, out=out[c][at + rows.start:at + rows.stop])
            at += len(t)
        return out

    # the seeds' fits are shared by all cutoffs: where the (seeds, N) masks of every cutoff fit in
    # SHARED_MASK_BYTES, their distances are computed once instead of once per cutoff
    shared = within([float(c) for c in cutoffs]) if len(seeds) * n * len(cutoffs) <= SHARED_MASK_BYTES else {}
    # per cutoff: its best count, the subsets it goes on with, and the subsets it has fitted
    best: dict[float, int] = {}
    nxt: dict[float, np.ndarray] = {}
    seen: dict[float, np.ndarray] = {}
    for c in cutoffs:
        c = float(c)
        sp.forget()
        mask = shared.pop(c) if shared else within([c])[c]
        best[c] = int(_row_counts(mask).max())
        nxt[c] = sp.new_rows(mask, min_size=3, limit=beam)
        seen[c] = sp.seen_keys
        del mask
    # the cutoffs' chains are independent; each step fits the subsets of all of them at once
    for _ in range(n_iter):
        live = [c for c in nxt if len(nxt[c])]
        if not live:
            break
        sel_all = np.concatenate([nxt[c] for c in live])
        cut2 = np.concatenate([np.full(len(nxt[c]), c * c) for c in live])[:, None]
        r, t = sp.fit(sel_all)
        # each row's pairs within its cutoff, whether that is its own subset (a fixed point), and
        # the fixed points' squared distances (the moves below sort them)
        w_all = np.empty(sel_all.shape, dtype=bool)
        fixed_all = np.empty(len(sel_all), dtype=bool)
        fixed_d2 = []
        for rows, d2 in sp.sq_dist_chunks(r, t):
            w = np.less_equal(d2, cut2[rows], out=w_all[rows])
            fixed = fixed_all[rows] = (w == sel_all[rows]).all(1)
            if fixed.any():
                fixed_d2.append(np.maximum(d2[fixed], 0.0))  # sorted below: clipped as sq_dists does
        fixed_d2 = np.concatenate(fixed_d2) if fixed_d2 else np.zeros((0, n))
        at = at_fixed = 0
        for c in live:
            sel = nxt[c]
            w, fixed = w_all[at:at + len(sel)], fixed_all[at:at + len(sel)]
            at += len(sel)
            cnt = _row_counts(w)
            best[c] = max(best[c], int(cnt.max()))
            moves = [w]
            if fixed.any():
                dd, kk = fixed_d2[at_fixed:at_fixed + int(fixed.sum())], cnt[fixed]
                at_fixed += len(dd)
                srt = np.sort(dd, axis=1)
                moves = [w[~fixed]]
                for step in GDT_MOVES:
                    k = np.minimum(np.maximum(kk + step, 3), n)  # np.clip costs ~30 us a call
                    moves.append(dd <= srt[np.arange(len(dd)), k - 1][:, None])
                if n > 3:
                    k = np.minimum(np.maximum(kk, 3), n - 1)
                    swap = dd <= srt[np.arange(len(dd)), k][:, None]  # the k + 1 closest ...
                    far = np.argmax(np.where(swap & (dd <= srt[np.arange(len(dd)), k - 1][:, None]), dd, -1.0),
                                    axis=1)
                    swap[np.arange(len(dd)), far] = False  # ... less the farthest of the k closest
                    moves.append(swap)
            sp.seen_keys = seen[c]
            nxt[c] = sp.new_rows(np.concatenate(moves), min_size=3, limit=beam)
            seen[c] = sp.seen_keys
    sp.forget()
    return best


GDT_CUTOFFS = tuple(sorted(set(GDT_TS_CUTOFFS) | set(GDT_HA_CUTOFFS)))
#: How far below a search from every residue triple distfold's GDT-TS was measured to
#: fall on real chains (largest of 8 cases; tests/test_gdt_reference.py holds it to this).
GDT_TS_MEASURED_GAP = 1.5


def gdt(model: np.ndarray, ref: np.ndarray, l_ref: int | None = None, cutoffs=GDT_CUTOFFS) -> dict[float, float]:
    """Largest fraction of the ``l_ref`` reference residues within each cutoff (Å)
    that the search finds, each cutoff searched separately. model, ref: (N, 3)
    corresponded. Returns {cutoff: fraction in [0, 1]}; a residue counts when its
    distance <= cutoff. The superpositions of the TM-score search are tried as
    well. A lower bound of the maximum over all superpositions (measured gap in the
    module docstring, at most :data:`GDT_TS_MEASURED_GAP` GDT-TS on real chains).
    """
    x, y = _pair(model, ref)
    l_ref = _check_lref(len(x), l_ref)
    sp = _Superposer(x, y)
    with _one_blas_thread():
        *_, tm_counts = _tm_search(sp, l_ref, gdt_cutoffs=cutoffs)
        counts = _best_counts(tm_counts, _gdt_search(sp, cutoffs))
    return {float(c): counts[float(c)] / l_ref for c in cutoffs}


def _best_counts(a: dict[float, int], b: dict[float, int]) -> dict[float, int]:
    """Per cutoff, the larger count of two searches (the TM-score search's and the GDT search's)."""
    return {c: max(a[c], b[c]) for c in a}


def _gdt_from_fractions(frac: dict[float, float]) -> dict[str, float]:
    return {"gdt_ts": 100.0 * float(np.mean([frac[c] for c in GDT_TS_CUTOFFS])),
            "gdt_ha": 100.0 * float(np.mean([frac[c] for c in GDT_HA_CUTOFFS]))}


def gdt_scores(model: np.ndarray, ref: np.ndarray, l_ref: int | None = None) -> dict[str, float]:
    """{"gdt_ts": ..., "gdt_ha": ...} on the 0-100 scale."""
    return _gdt_from_fractions(gdt(model, ref, l_ref))


_TOPOLOGIES: dict[int, object] = {}


def _ca_topology(n: int):
    import mdtraj as md

    top = _TOPOLOGIES.get(n)
    if top is None:
        top = md.Topology()
        chain = top.add_chain()
        for _ in range(n):
            top.add_atom("CA", md.element.carbon, top.add_residue("ALA", chain))
        if n <= 4096:
            _TOPOLOGIES[n] = top
    return top


def rmsd(model: np.ndarray, ref: np.ndarray) -> float:
    """C-alpha RMSD (Å) after the optimal proper superposition, by ``mdtraj.rmsd``."""
    import mdtraj as md

    x, y = _pair(model, ref)
    top = _ca_topology(len(x))
    a = md.Trajectory(x[None] / 10.0, top)  # mdtraj works in nm
    b = md.Trajectory(y[None] / 10.0, top)
    # one frame: nothing to share out, and parallel=True (OpenMP) waited up to 0.1 s per call on
    # a busy machine for threads to wake (measured); the serial path is the same code
    return float(md.rmsd(a, b, 0, parallel=False)[0]) * 10.0


def mirror(coords: np.ndarray) -> np.ndarray:
    """The mirror image (z -> -z) of (N, 3) coordinates."""
    out = np.array(coords, dtype=np.float64, copy=True)
    out[:, 2] = -out[:, 2]
    return out


#: From this many corresponded residues, :func:`score_coordinates` runs its searches on two threads.
THREAD_MIN_RESIDUES = 300


def _cores() -> int:
    """CPU cores this process may run on (a seam for tests)."""
    return usable_cores()


def _run_tasks(tasks: list, threads: int) -> list:
    """``[fn() for fn in tasks]``, on ``threads`` threads taking the tasks in list order as they
    come free (the longest first keeps the last to finish short) where ``threads`` > 1."""
    if threads <= 1:
        return [fn() for fn in tasks]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(fn) for fn in tasks]
        return [f.result() for f in futures]


def score_coordinates(model_xyz: np.ndarray, ref_xyz: np.ndarray, mask: np.ndarray | None = None, *,
                      threads: bool = True) -> dict:
    """Every comparison metric of corresponded C-alpha coordinates.

    model_xyz, ref_xyz: (L, 3) Å; row i of one belongs with row i of the other.
    Rows of ``ref_xyz`` that are not finite are unobserved reference residues and
    are dropped first, so the reference length is the number of observed
    reference residues (as for a structure file). Rows of ``model_xyz`` that are
    not finite, or False in ``mask`` (L,), are reference residues the model does
    not cover: they count in the TM-score / GDT / lDDT denominators (lDDT: their
    pairs count as not preserved, the CASP standard) and are excluded from
    everything else. Sequence separations are counted over observed reference
    residues.

    From :data:`THREAD_MIN_RESIDUES` corresponded residues on, the three searches (TM-score,
    the mirror image's TM-score, GDT) and the matrix metrics run as four tasks on two
    threads where the process may use two cores (same numbers: the searches are
    independent, and the GDT counts are the larger of the two searches' counts either way);
    ``threads=False`` keeps them in the caller's thread (for callers that already keep
    every core busy, such as ``evaluate``'s worker processes).

    Returns a dict of floats: rmsd (Å), tm_score, tm_score_mirror (the model's
    mirror image), gdt_ts, gdt_ha (0-100), lddt (0-1, C-alpha, 15 Å, 0.5/1/2/4 Å,
    see :func:`lddt`), lddt_per_residue (list, one per observed reference
    residue: 0 where the model lacks the residue, NaN where the residue has no
    reference pair within 15 Å), distance_mae, distance_rmse (Å),
    distance_pearson (pairs i < j), contact_precision_l5 (C-alpha contacts, see
    CONTACT_DEFINITION), n_aligned, ref_length, coverage (n_aligned / ref_length:
    the fraction of reference residues the model has). NaN where a metric is
    undefined (e.g. no pair with |i-j| >= 24).
    """
    x = _as_xyz(model_xyz, "model")
    y = _as_xyz(ref_xyz, "reference")
    if len(x) != len(y):
        raise InputError(f"model has {len(x)} rows but reference has {len(y)}; they must correspond row by row")
    observed = np.isfinite(y).all(1)
    covered = np.isfinite(x).all(1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(y),):
            raise InputError(f"mask must have shape ({len(y)},), got {mask.shape}")
        covered &= mask
    x, y, covered = x[observed], y[observed], covered[observed]
    l_ref = len(y)
    n_aligned = int(covered.sum())
    if n_aligned == 0:
        raise InputError("no residue of the model corresponds to an observed reference residue")
    xa, ya = x[covered], y[covered]
    x_full = np.where(covered[:, None], x, np.nan)

    def matrix_metrics():
        dm, dr = distance_matrix(x_full), distance_matrix(y)
        return lddt(dm, dr, model_mask=covered), distance_errors(dm, dr, mask=covered), \
            contact_precision(dm, dr, mask=covered), rmsd(xa, ya)

    # the mirror's search first: it is the longest, as its fits rarely converge (splitting it by
    # seed measured 30 % more work: chains from different seeds meet on the same subsets)
    tasks = [lambda: _tm_search(_Superposer(mirror(xa), ya), l_ref)[0],
             lambda: _gdt_search(_Superposer(xa, ya), GDT_CUTOFFS),
             lambda: _tm_search(_Superposer(xa, ya), l_ref, gdt_cutoffs=GDT_CUTOFFS),
             matrix_metrics]
    with _one_blas_thread():  # numpy releases the GIL in its loops and matrix products
        tm_mirror, gdt_counts, (tm, _, _, tm_counts), ((score, per_res), err, cp, rms) = _run_tasks(
            tasks, 2 if threads and n_aligned >= THREAD_MIN_RESIDUES and _cores() > 1 else 1)
    counts = _best_counts(tm_counts, gdt_counts)
    g = _gdt_from_fractions({c: counts[c] / l_ref for c in GDT_CUTOFFS})
    return {
        "rmsd": rms,
        "tm_score": tm,
        "tm_score_mirror": tm_mirror,
        "gdt_ts": g["gdt_ts"],
        "gdt_ha": g["gdt_ha"],
        "lddt": score,
        "lddt_per_residue": [float(v) for v in per_res],
        "distance_mae": err["mae"],
        "distance_rmse": err["rmse"],
        "distance_pearson": err["pearson"],
        "contact_precision_l5": cp,
        "n_aligned": n_aligned,
        "ref_length": l_ref,
        "coverage": n_aligned / l_ref,
    }
