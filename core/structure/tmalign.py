"""Sequence-independent structural alignment of two C-alpha traces: TM-align's
algorithm (Zhang & Skolnick, Nucleic Acids Res. 2005, 33:2302) in numpy.

``distfold compare --align structure`` uses it where the residue correspondence
cannot come from the sequences (homologues, different constructs, a model written
without a sequence). The steps and parameters are TM-align's (version 20210224,
the one the ``tmtools`` package wraps), so that the scores agree with the program to about 0.01 (the committed
fixtures in tests/data/reference_scores/ hold TM-align's own values):

1. Parameters for the search from the shorter length L_min: d0 = 1.24 (L_min -
   15)^(1/3) - 1.8 + 0.8 (0.168 + 0.8 for L_min <= 19), d0_search = d0 clipped to
   4.5-8 Å, score_d8 = 1.5 L_min^0.3 + 3.5 (pairs farther apart do not count during
   the search).
2. Initial alignments: gapless threading (every shift, scored by three Kabsch
   fits); a dynamic-programming alignment of secondary structure (helix, strand,
   turn, coil from C-alpha distances); local superposition of 20- and 100-residue
   fragments (the superposition's distances aligned by dynamic programming);
   secondary structure plus the best superposition so far; and gapless threading
   of the longest unbroken fragment.
3. Each initial alignment is refined by iterative dynamic programming on the
   TM-score matrix 1 / (1 + d_ij^2 / d0^2) of the current superposition (gap open
   -0.6, then 0), each new alignment superposed by the TM-score search (fragments of
   L, L/2, ..., 4 residues every 40 residues, each extended by up to 20 Kabsch fits).
4. The best alignment is superposed by the full search (every position); aligned
   pairs farther apart than score_d8 are dropped; the TM-score of the rest,
   normalised by the reference length with the reference's d0, is the result.

The dynamic programming is TM-align's own (a gap costs ``gap_open`` only when it
follows an aligned pair; end gaps are free); it runs over anti-diagonals in numpy,
and batched where TM-align runs many independent alignments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distfold.errors import InputError
from distfold.geometry.superpose import _rotations_from_covariance
from distfold.structure.metrics import _one_blas_thread, _Superposer, _tm_select, tm_superposition

N_ITER = 20
SIMPLIFY_STEP = 40
GAP_OPEN = (-0.6, 0.0)
DP_BATCH = 32


@dataclass(frozen=True)
class StructuralAlignment:
    """The result of :func:`tm_align`.

    model_index, ref_index: (K,) int, the aligned residue pairs (TM-align's output
    alignment: pairs within score_d8 after the final superposition), increasing.
    tm_score: normalised by the reference length (TM-align's "normalized by length of
    Structure_2" with the model as Structure_1); tm_score_model: by the model length.
    rotation, translation: ``model @ rotation.T + translation`` superposes the model.
    rmsd: of the aligned pairs under their own Kabsch fit, Å.
    """

    model_index: np.ndarray
    ref_index: np.ndarray
    tm_score: float
    tm_score_model: float
    rotation: np.ndarray
    translation: np.ndarray
    rmsd: float
    n_identical: int = 0

    @property
    def n_aligned(self) -> int:
        return int(len(self.ref_index))


@dataclass(frozen=True)
class _Params:
    lnorm: float
    d0: float
    d0_search: float
    score_d8: float
    d0_min: float
    dcu0: float = 4.25


def _search_params(xlen: int, ylen: int) -> _Params:
    lnorm = min(xlen, ylen)
    d0 = 0.168 if lnorm <= 19 else 1.24 * (lnorm - 15) ** (1.0 / 3.0) - 1.8
    d0 += 0.8
    return _Params(lnorm=float(lnorm), d0=d0, d0_search=min(max(d0, 4.5), 8.0),
                   score_d8=1.5 * lnorm ** 0.3 + 3.5, d0_min=d0)


# ---------------------------------------------------------------- superposition helpers

def _kabsch_masked(xs: np.ndarray, ys: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched Kabsch: xs, ys (B, N, 3), w (B, N) 0/1 -> R (B, 3, 3), t (B, 3); x R^T + t ~ y."""
    sw = np.maximum(w.sum(1), 1e-12)[:, None]
    wv = w[:, None, :]
    cx = np.matmul(wv, xs)[:, 0] / sw
    cy = np.matmul(wv, ys)[:, 0] / sw
    cov = np.matmul((xs - cx[:, None]).transpose(0, 2, 1) * wv, ys - cy[:, None])
    r = _rotations_from_covariance(cov)
    return r, cy - np.matmul(r, cx[:, :, None])[:, :, 0]


def _score_fast(x: np.ndarray, y: np.ndarray, y2x: np.ndarray, d0: float, d0_search: float) -> np.ndarray:
    """TM-align's get_score_fast for a batch of alignments y2x (B, ylen) (-1 = gap):
    a Kabsch fit on all aligned pairs; unless every pair lies within d0_search, a fit
    on those that do (at least the 3 closest), then one on the pairs within
    d0_search^2 + 1 (squared Å, as TM-align has it). Returns the best raw score
    sum_i 1 / (1 + d_i^2 / d0^2) of the three fits, (B,)."""
    aligned = y2x >= 0
    w = aligned.astype(np.float64)
    # Per aligned pair the features [x (3), y (3), x_a y_b (9)] of centred coordinates (so the
    # expanded distance formula keeps its precision): a fit's centroids and covariance are one
    # weighted sum of them, and |R x + t - y|^2 a linear form in them (as metrics._Superposer).
    xc, yc = x - x.mean(0), y - y.mean(0)
    xs = xc[np.maximum(y2x, 0)]
    b, n = y2x.shape
    feat = np.empty((b, n, 15))
    feat[:, :, 0:3] = xs
    feat[:, :, 3:6] = yc
    np.multiply(xs[:, :, :, None], yc[None, :, None, :], out=feat[:, :, 6:15].reshape(b, n, 3, 3))
    sq = (xs * xs).sum(2) + (yc * yc).sum(1)
    d02 = d0 * d0
    n_ali = aligned.sum(1)

    def fit(w):
        sw = np.maximum(w.sum(1), 1e-12)[:, None]
        sums = np.matmul(w[:, None, :], feat)[:, 0]
        cx, cy = sums[:, 0:3] / sw, sums[:, 3:6] / sw
        cov = sums[:, 6:15].reshape(b, 3, 3) - sw[:, :, None] * cx[:, :, None] * cy[:, None, :]
        r = _rotations_from_covariance(cov)
        t = cy - np.matmul(r, cx[:, :, None])[:, :, 0]
        rt = r.transpose(0, 2, 1)
        coef = np.concatenate([2.0 * np.matmul(rt, t[:, :, None])[:, :, 0], -2.0 * t, -2.0 * rt.reshape(b, 9)], axis=1)
        dis = np.matmul(feat, coef[:, :, None])[:, :, 0]
        dis += sq
        dis += (t * t).sum(1)[:, None]
        np.maximum(dis, 0.0, out=dis)
        return dis, np.where(aligned, 1.0 / (1.0 + dis / d02), 0.0).sum(1)

    def select(dis, cut2):
        masked = np.where(aligned, dis, np.inf)
        third = np.partition(masked, 2, axis=1)[:, 2] if masked.shape[1] > 2 else masked.max(1)
        cut = np.maximum(cut2, np.where(np.isfinite(third), third, cut2))
        return aligned & (dis <= cut[:, None])

    dis0, s0 = fit(w)
    sel1 = select(dis0, d0_search * d0_search)
    dis1, s1 = fit(sel1.astype(np.float64))
    sel2 = select(dis1, d0_search * d0_search + 1.0)
    _, s2 = fit(sel2.astype(np.float64))
    same = sel1.sum(1) == n_ali
    return np.where(same, s0, np.maximum(s0, np.maximum(s1, s2)))


def _tm8_search(xtm: np.ndarray, ytm: np.ndarray, step: int, score_d8: float | None,
                lnorm: float, d0: float, d0_search: float) -> tuple[float, np.ndarray, np.ndarray]:
    """TM-align's TMscore8_search on corresponded pairs: fragments of Lali, Lali/2, ...,
    4 residues starting every ``step`` residues (and at the last position), each
    extended by up to 20 Kabsch fits on the pairs within d0_search + 1. Scores count
    only pairs within ``score_d8`` (when given), divided by ``lnorm``. Returns
    (score, R, t) for the original coordinates."""
    n = len(xtm)
    if n == 0:
        return -1.0, np.eye(3), np.zeros(3)
    sp = _Superposer(xtm, ytm)
    inv_d02 = 1.0 / (d0 * d0)
    cut8 = None if score_d8 is None else score_d8 * score_d8
    lmin = min(4, n)
    lengths = []
    for i in range(5):
        length = int(n / 2 ** i)
        if length <= lmin:
            lengths.append(lmin)
            break
        lengths.append(length)
    else:
        lengths.append(lmin)
    rows = []
    for length in dict.fromkeys(lengths):
        last = n - length
        starts = list(range(0, last, step)) + [last] if last > 0 else [0]
        for s in dict.fromkeys(starts):
            m = np.zeros(n, bool)
            m[s:s + length] = True
            rows.append(m)
    sel = np.array(rows)
    best = [-1.0, np.eye(3), np.zeros(3)]

    def fit_score_select(sel, cut):
        r, t = sp.fit(sel)
        d2 = sp.sq_dists(r, t)
        term = 1.0 / (1.0 + d2 * inv_d02)
        if cut8 is not None:
            term = np.where(d2 <= cut8, term, 0.0)
        s = term.sum(1) / lnorm
        k = int(np.argmax(s))
        if s[k] > best[0]:
            best[:] = [float(s[k]), r[k], t[k]]
        return _tm_select(d2, cut)

    # Each row is one of TM-align's extension runs: fit, keep the pairs within d0_search + 1,
    # fit again, until the subset repeats or after N_ITER fits. The next subset depends on
    # the subset alone, so a run that reaches a subset some run already fitted in this loop
    # (at this or an earlier iteration: itself when it has converged, TM-align's stop) would
    # only retrace that run's fits; it is dropped, which leaves the best score unchanged.
    seen: set[bytes] = set()

    def unseen(sel):
        keep = []
        for k, key in enumerate(np.packbits(sel, axis=1)):
            key = key.tobytes()
            if key not in seen:
                seen.add(key)
                keep.append(k)
        return sel[keep]

    sel = unseen(fit_score_select(sel, d0_search - 1.0))
    for _ in range(N_ITER):
        if not len(sel):
            break
        sel = unseen(fit_score_select(sel, d0_search + 1.0))
    r, t = sp.transform(best[1], best[2])
    return best[0], r, t


def _pairs(y2x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    j = np.flatnonzero(y2x >= 0)
    return y2x[j], j


def _detailed_search(x, y, y2x, p: _Params, step: int):
    i, j = _pairs(y2x)
    return _tm8_search(x[i], y[j], step, p.score_d8, p.lnorm, p.d0, p.d0_search)


# ---------------------------------------------------------------- dynamic programming

def _nw(score: np.ndarray, gap_open: float) -> np.ndarray:
    """TM-align's NWDP_TM on a batch of score matrices (B, L1, L2): a gap costs
    ``gap_open`` when it follows an aligned pair and nothing when it follows a gap (so
    end gaps are free); ties go to the aligned pair, then to the gap in the first
    sequence. Returns y2x (B, L2), -1 where residue j of the second sequence is not
    aligned."""
    if gap_open == 0.0:
        return _nw_free(score)
    if len(score) == 1:
        return _nw_one(score[0], gap_open)[None]
    b, l1, l2 = score.shape
    nd = l1 + l2 + 1
    # Anti-diagonal layout: cell (i, j) of the (L1 + 1, L2 + 1) tables lives at [i + j, i],
    # so each anti-diagonal depends on the two before it through contiguous slices.
    val = np.zeros((b, nd, l1 + 1))
    passed = np.zeros((b, nd, l1 + 1))  # what a cell hands to a gap move: val, + gap_open if aligned
    path = np.zeros((b, nd, l1 + 1), dtype=bool)
    sd = np.zeros((b, nd, l1 + 1))
    ii, kk = _diagonal_index(l1, l2)
    sd[:, kk, ii] = score
    for k in range(2, l1 + l2 + 1):
        lo, hi = max(1, k - l2), min(l1, k - 1)
        d = val[:, k - 2, lo - 1:hi] + sd[:, k, lo:hi + 1]
        m = np.maximum(passed[:, k - 1, lo - 1:hi], passed[:, k - 1, lo:hi + 1])
        diag = d >= m
        v = np.maximum(d, m, out=val[:, k, lo:hi + 1])
        path[:, k, lo:hi + 1] = diag
        passed[:, k, lo:hi + 1] = v + gap_open * diag
    out = np.full((b, l2), -1, dtype=np.intp)
    for n in range(b):
        pn, en = path[n], passed[n]
        i, j = l1, l2
        while i > 0 and j > 0:
            if pn[i + j, i]:
                out[n, j - 1] = i - 1
                i -= 1
                j -= 1
            elif en[i + j - 1, i] >= en[i + j - 1, i - 1]:
                j -= 1
            else:
                i -= 1
    return out


def _nw_one(score: np.ndarray, gap_open: float) -> np.ndarray:
    """:func:`_nw` for one (L1, L2) matrix (the same loop without the batch axis)."""
    l1, l2 = score.shape
    nd = l1 + l2 + 1
    val = np.zeros((nd, l1 + 1))
    passed = np.zeros((nd, l1 + 1))
    path = np.zeros((nd, l1 + 1), dtype=bool)
    sd = np.zeros((nd, l1 + 1))
    ii, kk = _diagonal_index(l1, l2)
    sd[kk, ii] = score
    maximum, greater_equal, add = np.maximum, np.greater_equal, np.add
    for k in range(2, l1 + l2 + 1):
        lo, hi = max(1, k - l2), min(l1, k - 1)
        d = val[k - 2, lo - 1:hi] + sd[k, lo:hi + 1]
        pk = passed[k - 1]
        m = maximum(pk[lo - 1:hi], pk[lo:hi + 1])
        diag = greater_equal(d, m, out=path[k, lo:hi + 1])
        add(maximum(d, m, out=val[k, lo:hi + 1]), gap_open * diag, out=passed[k, lo:hi + 1])
    out = np.full(l2, -1, dtype=np.intp)
    diagonal, p = path.item, passed.item  # Python scalars: the same comparisons, faster
    i, j = l1, l2
    while i > 0 and j > 0:
        if diagonal(i + j, i):
            out[j - 1] = i - 1
            i -= 1
            j -= 1
        elif p(i + j - 1, i) >= p(i + j - 1, i - 1):
            j -= 1
        else:
            i -= 1
    return out


_DIAG_INDEX: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _diagonal_index(l1: int, l2: int) -> tuple[np.ndarray, np.ndarray]:
    key = (l1, l2)
    if key not in _DIAG_INDEX:
        ii, jj = np.meshgrid(np.arange(1, l1 + 1), np.arange(1, l2 + 1), indexing="ij")
        if len(_DIAG_INDEX) > 16:
            _DIAG_INDEX.clear()
        _DIAG_INDEX[key] = (ii, ii + jj)
    return _DIAG_INDEX[key]


def _nw_free(score: np.ndarray) -> np.ndarray:
    """:func:`_nw` with gap_open 0, row by row: a cell's value is the running maximum of
    (aligned, gap) candidates along its row."""
    b, l1, l2 = score.shape
    val = np.zeros((b, l1 + 1, l2 + 1))
    maximum, accumulate = np.maximum, np.maximum.accumulate
    for i in range(1, l1 + 1):
        prev = val[:, i - 1]
        accumulate(maximum(prev[:, :-1] + score[:, i - 1], prev[:, 1:]), axis=1, out=val[:, i, 1:])
    out = np.full((b, l2), -1, dtype=np.intp)
    for n in range(b):
        v, sc, on = val[n].item, score[n].item, out[n]  # Python floats: the same comparisons, faster
        i, j = l1, l2
        while i > 0 and j > 0:
            up, left = v(i - 1, j), v(i, j - 1)
            d = v(i - 1, j - 1) + sc(i - 1, j - 1)  # the cell's aligned candidate, as in the fill
            if d >= up and d >= left:
                on[j - 1] = i - 1
                i -= 1
                j -= 1
            elif left >= up:
                j -= 1
            else:
                i -= 1
    return out


def _tm_matrix(x, y, r, t, d02) -> np.ndarray:
    """(L1, L2) 1 / (1 + d_ij^2 / d02) for x moved by (r, t)."""
    xt = x @ r.T + t
    d2 = (xt * xt).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (xt @ y.T)
    np.maximum(d2, 0.0, out=d2)
    d2 *= 1.0 / d02
    d2 += 1.0
    return np.reciprocal(d2, out=d2)


def _dp_iter(x, y, r, t, p: _Params, g1: int, g2: int, iteration_max: int):
    """TM-align's DP_iter: alternate dynamic programming on the TM-score matrix of the
    current superposition and the TM-score search of the new alignment."""
    best_score, best_map = -1.0, None
    d02 = p.d0 * p.d0
    for g in range(g1, g2):
        old = 0.0
        for it in range(iteration_max):
            y2x = _nw(_tm_matrix(x, y, r, t, d02)[None], GAP_OPEN[g])[0]
            score, r, t = _detailed_search(x, y, y2x, p, SIMPLIFY_STEP)
            if score > best_score:
                best_score, best_map = score, y2x
            if it > 0 and abs(old - score) < 1e-6:
                break
            old = score
    return best_score, best_map, r, t


# ---------------------------------------------------------------- initial alignments

def _threading_maps(xlen: int, ylen: int, xidx: np.ndarray, min_ali: int, step: int = 1) -> np.ndarray:
    """Gapless threading of the x residues ``xidx`` along y: one y2x row per shift."""
    lx = len(xidx)
    ks = np.arange(-ylen + min_ali, lx - min_ali + 1, step)
    i = np.arange(ylen)[None, :] + ks[:, None]
    ok = (i >= 0) & (i < lx)
    return np.where(ok, xidx[np.clip(i, 0, lx - 1)], -1)


def _best_by_fast_score(x, y, maps: np.ndarray, p: _Params) -> tuple[float, np.ndarray]:
    """The map with the highest get_score_fast (the last of equals, as TM-align's >=)."""
    scores = np.concatenate([_score_fast(x, y, maps[a:a + 256], p.d0, p.d0_search)
                             for a in range(0, len(maps), 256)])
    k = len(scores) - 1 - int(np.argmax(scores[::-1]))
    return float(scores[k]), maps[k]


def _initial_threading(x, y, p: _Params) -> np.ndarray:
    min_ali = max(min(len(x), len(y)) // 2, 5)
    return _best_by_fast_score(x, y, _threading_maps(len(x), len(y), np.arange(len(x)), min_ali), p)[1]


def secondary_structure(ca: np.ndarray) -> np.ndarray:
    """TM-align's C-alpha secondary structure: 1 coil, 2 helix, 3 turn, 4 strand, from
    the distances among residues i-2 .. i+2 (TM-align 20210224 defines a smoothing step
    but does not call it; neither does this). (N,) int8."""
    n = len(ca)
    sec = np.ones(n, dtype=np.int8)
    if n >= 5:
        def d(a, b):  # distance between residues i - 2 + a and i - 2 + b for i = 2 .. n - 3
            return np.linalg.norm(ca[a:n - 4 + a] - ca[b:n - 4 + b], axis=1)

        d13, d14, d15, d24, d25, d35 = d(0, 2), d(0, 3), d(0, 4), d(1, 3), d(1, 4), d(2, 4)
        helix = ((np.abs(d15 - 6.37) < 2.1) & (np.abs(d14 - 5.18) < 2.1) & (np.abs(d25 - 5.18) < 2.1)
                 & (np.abs(d13 - 5.45) < 2.1) & (np.abs(d24 - 5.45) < 2.1) & (np.abs(d35 - 5.45) < 2.1))
        strand = ((np.abs(d15 - 13) < 1.42) & (np.abs(d14 - 10.4) < 1.42) & (np.abs(d25 - 10.4) < 1.42)
                  & (np.abs(d13 - 6.1) < 1.42) & (np.abs(d24 - 6.1) < 1.42) & (np.abs(d35 - 6.1) < 1.42))
        core = np.where(helix, 2, np.where(strand, 4, np.where(d15 < 8, 3, 1)))
        sec[2:n - 2] = core
    return sec


def _initial_local(x, y, p: _Params) -> np.ndarray | None:
    """TM-align's get_initial5: superpose fragments of 20 and 100 residues (at most a
    third / half of the shorter chain) taken every 15-45 residues of each chain, align
    by dynamic programming (gap 0) on 1 / (1 + d^2 / (d0 + 1.5)^2), keep the best by
    get_score_fast."""
    xlen, ylen = len(x), len(y)
    d01 = max(p.d0 + 1.5, p.d0_min)
    d02 = d01 * d01

    def jump(n):
        j = 45 if n > 250 else 35 if n > 200 else 25 if n > 150 else 15
        return max(min(j, n // 3), 1)

    aL = min(xlen, ylen)
    best, best_map = 0.0, None
    for frag in (min(20, aL // 3), min(100, aL // 2)):
        if frag < 3:
            continue
        starts = [(i, j) for i in range(0, xlen - frag + 1, jump(xlen)) for j in range(0, ylen - frag + 1, jump(ylen))]
        for a in range(0, len(starts), DP_BATCH):
            chunk = starts[a:a + DP_BATCH]
            xs = np.stack([x[i:i + frag] for i, _ in chunk])
            ys = np.stack([y[j:j + frag] for _, j in chunk])
            r, t = _kabsch_masked(xs, ys, np.ones((len(chunk), frag)))
            xt = np.einsum("bij,nj->bni", r, x) + t[:, None]
            d2 = (xt * xt).sum(2)[:, :, None] + (y * y).sum(1)[None, None, :]
            d2 -= 2.0 * xt @ y.T
            np.maximum(d2, 0.0, out=d2)
            d2 /= d02
            d2 += 1.0
            maps = _nw(np.divide(1.0, d2, out=d2), 0.0)
            scores = _score_fast(x, y, maps, p.d0, p.d0_search)
            for k in range(len(chunk)):
                if scores[k] > best:
                    best, best_map = float(scores[k]), maps[k]
    return best_map


def _initial_ssplus(x, y, secx, secy, y2x0, p: _Params) -> np.ndarray:
    i, j = _pairs(y2x0)
    r, t = _kabsch_masked(x[i][None], y[j][None], np.ones((1, len(i))))
    d01 = max(p.d0 + 1.5, p.d0_min)
    score = _tm_matrix(x, y, r[0], t[0], d01 * d01) + 0.5 * (secx[:, None] == secy[None, :])
    return _nw(score[None], -1.0)[0]


def _longest_fragment(ca: np.ndarray, dcu0: float) -> tuple[int, int]:
    """TM-align's find_max_frag: the longest run of consecutive C-alphas closer than
    dcu0 (grown by 10 % until the run has min(4, L/3) residues)."""
    n = len(ca)
    r_min = min(int(n / 3.0), 4)
    step = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    inc = 0
    while True:
        cut = dcu0 * 1.1 ** inc
        best_len, best = 0, (0, 0)
        start, run = 0, 1
        for i in range(1, n):
            if step[i - 1] < cut:
                run += 1
                if i == n - 1 and run > best_len:
                    best_len, best = run, (start, i)
            else:
                if run > best_len:
                    best_len, best = run, (start, i - 1)
                run, start = 1, i
        if best_len >= r_min or n < 2:
            return best
        inc += 1


def _x_fragment_maps(ifr: np.ndarray, xlen: int, ylen: int) -> np.ndarray:
    """Thread the x residues ifr gaplessly along y (every shift)."""
    min_ali = max(int(min(len(ifr), ylen) / 2.5), 3)
    return _threading_maps(xlen, ylen, ifr, min_ali)


def _y_fragment_maps(ifr: np.ndarray, xlen: int, ylen: int) -> np.ndarray:
    """Thread the y residues ifr gaplessly along x (every shift)."""
    l2 = len(ifr)
    min_ali = max(int(min(xlen, l2) / 2.5), 3)
    ks = np.arange(-l2 + min_ali, xlen - min_ali + 1)
    i = np.arange(l2)[None, :] + ks[:, None]
    ok = (i >= 0) & (i < xlen)
    m = np.full((len(ks), ylen), -1, dtype=np.intp)
    rows = np.broadcast_to(np.arange(len(ks))[:, None], i.shape)
    m[rows[ok], np.broadcast_to(ifr[None, :], i.shape)[ok]] = i[ok]
    return m


def _trim(ifr: np.ndarray, l0: int) -> np.ndarray:
    """A fragment as long as the whole chain loses its first 10 % and last 11 %."""
    return ifr[int(l0 * 0.1):int(l0 * 0.89) + 1] if len(ifr) == l0 else ifr


def _initial_fragment_threading(x, y, p: _Params) -> np.ndarray:
    """TM-align's get_initial_fgt: gapless threading of the longest unbroken fragment
    (the shorter of the two chains' longest fragments), scored by get_score_fast."""
    xlen, ylen = len(x), len(y)
    xs, xe = _longest_fragment(x, p.dcu0)
    ys, ye = _longest_fragment(y, p.dcu0)
    lx, ly = xe - xs + 1, ye - ys + 1
    if lx == ly and xlen == ylen:  # TM-align tries both and keeps the better
        maps = [_x_fragment_maps(_trim(np.arange(xs, xs + lx), xlen), xlen, ylen),
                _y_fragment_maps(_trim(np.arange(ys, ys + ly), xlen), xlen, ylen)]
    elif lx < ly or (lx == ly and xlen < ylen):
        maps = [_x_fragment_maps(_trim(np.arange(xs, xs + min(lx, ly)), min(xlen, ylen)), xlen, ylen)]
    else:
        maps = [_y_fragment_maps(_trim(np.arange(ys, ys + min(lx, ly)), min(xlen, ylen)), xlen, ylen)]
    return _best_by_fast_score(x, y, np.concatenate(maps), p)[1]


# ---------------------------------------------------------------- the entry point

def tm_align(model: np.ndarray, ref: np.ndarray, model_seq: str = "", ref_seq: str = "") -> StructuralAlignment:
    """TM-align of a model C-alpha trace (Structure_1) onto a reference (Structure_2).

    model, ref: (N, 3), (M, 3) Å, at least 5 residues each. The sequences, when given,
    only count identical aligned pairs. See the module docstring for the steps.
    """
    x = np.asarray(model, dtype=np.float64)
    y = np.asarray(ref, dtype=np.float64)
    for name, a in (("model", x), ("reference", y)):
        if a.ndim != 2 or a.shape[1] != 3 or not np.isfinite(a).all():
            raise InputError(f"{name} coordinates must be finite (N, 3), got shape {a.shape}")
        if len(a) < 5:
            raise InputError(f"structural alignment needs at least 5 residues; the {name} has {len(a)}")
    with _one_blas_thread():  # thousands of small products: one BLAS thread is faster
        return _tm_align(x, y, model_seq, ref_seq)


def _tm_align(x: np.ndarray, y: np.ndarray, model_seq: str, ref_seq: str) -> StructuralAlignment:
    p = _search_params(len(x), len(y))
    ddcc = 0.1 if p.lnorm <= 40 else 0.4
    secx, secy = secondary_structure(x), secondary_structure(y)
    best = [-1.0, None]

    def consider(score, y2x):
        if y2x is not None and score > best[0]:
            best[:] = [score, y2x]

    # 1. gapless threading, always refined
    y2x = _initial_threading(x, y, p)
    score, r, t = _detailed_search(x, y, y2x, p, SIMPLIFY_STEP)
    best[0] = max(best[0], score)
    if best[1] is None:
        best[1] = y2x
    consider(*_dp_iter(x, y, r, t, p, 0, 2, 30)[:2])
    # 2. secondary structure
    y2x = _nw((secx[:, None] == secy[None, :]).astype(np.float64)[None], -1.0)[0]
    score, r, t = _detailed_search(x, y, y2x, p, SIMPLIFY_STEP)
    consider(score, y2x)
    if score > best[0] * 0.2:
        consider(*_dp_iter(x, y, r, t, p, 0, 2, 30)[:2])
    # 3. local superposition
    y2x = _initial_local(x, y, p)
    if y2x is not None:
        score, r, t = _detailed_search(x, y, y2x, p, SIMPLIFY_STEP)
        consider(score, y2x)
        if score > best[0] * ddcc:
            consider(*_dp_iter(x, y, r, t, p, 0, 2, 2)[:2])
    # 4. secondary structure plus the best superposition so far
    y2x = _initial_ssplus(x, y, secx, secy, best[1], p)
    score, r, t = _detailed_search(x, y, y2x, p, SIMPLIFY_STEP)
    consider(score, y2x)
    if score > best[0] * ddcc:
        consider(*_dp_iter(x, y, r, t, p, 0, 2, 30)[:2])
    # 5. fragment gapless threading
    y2x = _initial_fragment_threading(x, y, p)
    score, r, t = _detailed_search(x, y, y2x, p, SIMPLIFY_STEP)
    consider(score, y2x)
    if score > best[0] * ddcc:
        consider(*_dp_iter(x, y, r, t, p, 1, 2, 2)[:2])

    # final: full search on the best alignment, keep pairs within score_d8, score by each length
    y2x = best[1]
    _, r, t = _detailed_search(x, y, y2x, p, 1)
    i, j = _pairs(y2x)
    d = np.linalg.norm(x[i] @ r.T + t - y[j], axis=1)
    keep = d <= p.score_d8
    mi, ri = i[keep], j[keep]
    if len(mi) == 0:
        raise InputError("structural alignment found no pair of residues within reach of each other")
    tm_ref, rot, tr = tm_superposition(x[mi], y[ri], l_ref=len(y))
    tm_model = tm_superposition(x[mi], y[ri], l_ref=len(x))[0]
    from distfold.geometry.superpose import superposed_rmsd

    rmsd = superposed_rmsd(x[mi], y[ri]) if len(mi) >= 3 else float("nan")
    n_id = 0
    if model_seq and ref_seq:
        n_id = sum(1 for a, b in zip(mi, ri) if model_seq[a] == ref_seq[b] and model_seq[a] != "X")
    return StructuralAlignment(mi, ri, float(tm_ref), float(tm_model), rot, tr, float(rmsd), n_id)
