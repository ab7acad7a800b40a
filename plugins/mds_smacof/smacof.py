"""SMACOF (stress majorisation) started from classical MDS, optionally weighted.

Minimises raw stress sum_{i<j} w_ij (|x_i - x_j| - d_ij)^2 by the Guttman
transform (de Leeuw 1977; Borg & Groenen, *Modern Multidimensional Scaling*,
ch. 8):

- unweighted: X <- B(X) X / L, with B(X) = diag(R 1) - R, R_ij = d_ij / |x_i - x_j|;
- weighted: X <- V^+ B(X) X, R_ij = w_ij d_ij / |x_i - x_j|, V = diag(W 1) - W,
  its pseudo-inverse computed once (:func:`weight_laplacian_pinv`). Weights that
  are equal on every pair take the unweighted path. With 1/variance weights of
  a predicted matrix (a range of 1,000x and more) the plain transform crawls (it
  stopped at its 300-iteration limit from L = 256-512 on), so by default the weighted
  transform runs with Anderson acceleration (:func:`_anderson_loop`), safeguarded
  so stress never rises and stopped by the same rule on a plain step.

Each iteration is one pass of :class:`GuttmanKernel` over the pairs i < j;
stress comes from sum_{i<j} w |x_i - x_j|^2 (L sum |x_i - x_c|^2, or tr X'VX),
sum w d |x_i - x_j| (from the kernel) and a constant, so no further (L, L)
pass. Stop rule as scikit-learn's: (stress_old - stress_new) /
sum_{i<j} w_ij |x_i - x_j|^2 < eps. The reported stress is recomputed directly
from the final coordinates. With ``relaxation`` a != 1 the update is
X <- X + a (G(X) - X) (de Leeuw & Heiser 1980); a = 2 reflects X through the
majoriser's minimum, which never raises stress but stops earlier (at higher
stress) under the same eps; 1 is the plain transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distfold.components import Configurable, Reconstruction
from distfold.geometry.classical import (LANCZOS_MIN_LENGTH, LANCZOS_TOL, SHARE_EXACT_MAX_LENGTH, SHARE_PROBES,
                                         SHARE_STEPS, ClassicalStart)
from distfold.geometry.distmat import CheckedDistances, as_checked, stress


def weight_laplacian(w: np.ndarray) -> np.ndarray:
    """V = diag(W 1) - W, (L, L)."""
    v = -w.copy()
    v[np.diag_indices(len(w))] = w.sum(1)
    return v


def weight_laplacian_pinv(w: np.ndarray) -> np.ndarray:
    """Moore-Penrose pseudo-inverse of V = diag(W 1) - W, (L, L).

    Connected weight graph: V^+ = (V + 11'/L)^-1 - 11'/L, the inverse taken from a
    Cholesky factor (LAPACK potrf + potri: L^3 flops against 2 L^3 for an LU inverse).
    The Guttman loop then applies it with numpy: per-iteration triangular solves through
    scipy would alternate between scipy's and numpy's separate OpenBLAS thread pools,
    whose spinning threads fight over the cores (7x slower per iteration at 512 residues
    with 2 threads, measured). Otherwise ``scipy.linalg.pinvh``.
    """
    n = len(w)
    from scipy.linalg import lapack, pinvh

    if _connected(w):
        a = weight_laplacian(w)
        a += 1.0 / n  # positive definite: V's null space is span(1)
        c, info = lapack.dpotrf(a, lower=1, clean=0, overwrite_a=1)
        if info == 0:
            c, info = lapack.dpotri(c, lower=1, overwrite_c=1)
        if info == 0:  # the lower triangle holds (V + 11'/n)^-1
            c = np.tril(c)
            c += np.tril(c, -1).T
            c -= 1.0 / n
            return c
    return pinvh(weight_laplacian(w))


def _connected(w: np.ndarray) -> bool:
    """Whether the graph of the pairs with positive weight is connected; every pair
    weighted (1/variance weights) answers without a graph search (0.2 s at 1024 residues)."""
    off = w > 0
    np.fill_diagonal(off, True)
    if off.all():
        return True
    from scipy.sparse.csgraph import connected_components

    return connected_components(off, directed=False)[0] == 1


class GuttmanKernel:
    """Per-iteration work of SMACOF, blocked and symmetric.

    For coordinates X (L, 3), centred, it returns R X and R 1 as one (L, 4)
    array, with R_ij = wd_ij / |x_i - x_j| (0 on the diagonal and for
    coincident points), and sum_{i<j} wd_ij |x_i - x_j|. Only blocks on and
    above the diagonal are visited, each small enough to stay in cache:
    distances come from one (b, 5) x (5, b) product |x_i|^2 + |x_j|^2 -
    2 x_i.x_j (round-off about 1e-13 A^2 for protein-sized coordinates), then
    sqrt, divide and two thin products, all in place; the sum comes from R X
    and R 1 themselves (sum_i |x_i|^2 (R 1)_i - x_i . (R X)_i). If the result is
    not finite (coincident points), the pass is redone with negative squares
    clamped to 0 and zero distances given a ratio of 0. ``wd`` (L, L) is
    copied once into contiguous blocks.
    """

    def __init__(self, wd: np.ndarray, block_size: int):
        n = len(wd)
        b = max(int(block_size), 1)
        self.n = n
        self.bounds = [(s, min(s + b, n)) for s in range(0, n, b)]
        self.pairs = [(p, q) for p in range(len(self.bounds)) for q in range(p, len(self.bounds))]
        self.blocks = []
        for p, q in self.pairs:
            (i0, i1), (j0, j1) = self.bounds[p], self.bounds[q]
            self.blocks.append(np.ascontiguousarray(wd[i0:i1, j0:j1]))
        self.buf = np.empty(min(b, n) ** 2)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            rx, cross = self._pass(x, safe=False)
        if not (np.isfinite(cross) and np.all(np.isfinite(rx))):
            # (nearly) coincident points: a round-off negative |x_i - x_j|^2 or a 0 distance
            with np.errstate(invalid="ignore", divide="ignore"):
                rx, cross = self._pass(x, safe=True)
        return rx, cross

    def _pass(self, x: np.ndarray, safe: bool) -> tuple[np.ndarray, float]:
        n = self.n
        sq = np.einsum("ij,ij->i", x, x)
        ones = np.ones((n, 1))
        left = np.hstack([-2.0 * x, sq[:, None], ones])  # (n, 5)
        right = np.ascontiguousarray(np.hstack([x, ones, sq[:, None]]).T)  # (5, n)
        aux = np.hstack([x, ones])  # (n, 4)
        rx = np.zeros((n, 4))
        for (p, q), wdb in zip(self.pairs, self.blocks):
            (i0, i1), (j0, j1) = self.bounds[p], self.bounds[q]
            dist = self.buf[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
            np.matmul(left[i0:i1], right[:, j0:j1], out=dist)
            if p == q:
                np.fill_diagonal(dist, np.inf)  # the diagonal is no pair: ratio 0
            if safe:
                np.maximum(dist, 0.0, out=dist)
            np.sqrt(dist, out=dist)
            if safe:
                dist[dist == 0.0] = np.inf  # coincident points: ratio 0
            np.divide(wdb, dist, out=dist)
            rx[i0:i1] += dist @ aux[j0:j1]
            if p != q:
                rx[j0:j1] += dist.T @ aux[i0:i1]
        # sum_{i<j} wd_ij |x_i - x_j| = 1/2 sum_ij R_ij |x_i - x_j|^2 = sum_i |x_i|^2 (R 1)_i - x_i . (R X)_i:
        # from the row sums already made, no further pass over the pairs
        cross = float(np.dot(sq, rx[:, 3]) - np.einsum("ij,ij->", x, rx[:, :3]))
        return rx, cross


def smacof_loop(checked: CheckedDistances, x0: np.ndarray, max_iter: int, eps: float,
                relaxation: float, block_size: int, acceleration: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Run SMACOF from x0 (L, 3).

    ``acceleration`` > 0 with ``relaxation`` 1: Anderson acceleration of that depth
    on the weighted Guttman transform (:func:`_anderson_loop`); otherwise, and for
    unweighted input, the plain (or relaxed) transform.
    Returns the coordinates (centred) and loop diagnostics (iterations,
    converged, stress_start: the raw stress of x0, from the expansion; with
    acceleration also accelerated_steps and rejected_steps).
    """
    d = checked.distances
    w = checked.weights
    n = len(d)
    x = np.array(x0, dtype=np.float64, copy=True)
    x -= x.mean(0)
    if n < 2:
        return x, {"iterations": 0, "converged": True, "stress_start": 0.0}
    weighted = w is not None and not _constant_offdiag(w)
    if weighted:
        wd = w * d
        vplus = weight_laplacian_pinv(w)
        wsum = w.sum(1)
    else:
        wd = d if w is None else w[0, 1] * d  # a constant weight scales the stress only
    const = float(np.dot(wd.ravel(), d.ravel())) / 2.0

    def sum_wd2(x):  # sum_{i<j} w_ij |x_i - x_j|^2 without an (L, L) pass
        if weighted:  # x'(diag(W 1) - W) x
            return float(np.einsum("i,ij,ij->", wsum, x, x) - np.einsum("ij,ij->", x, w @ x))
        scale = 1.0 if w is None else float(w[0, 1])
        return scale * n * float(np.einsum("ij,ij->", x, x))  # x is centred

    kernel = GuttmanKernel(wd, block_size)
    rx, cross = kernel(x)
    old = sum_wd2(x) - 2.0 * cross + const
    start = max(old, 0.0)
    if weighted and acceleration > 0 and relaxation == 1.0:
        x, info = _anderson_loop(kernel, vplus, x, rx, old, const, max_iter, eps, int(acceleration))
        return x, {**info, "stress_start": start}
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        bx = rx[:, 3:4] * x - rx[:, :3]  # B(X) X
        if weighted:
            g = vplus @ bx
        else:
            g = bx / (n if w is None else n * float(w[0, 1]))
        x = g if relaxation == 1.0 else x + relaxation * (g - x)
        x -= x.mean(0)
        rx, cross = kernel(x)
        if weighted and relaxation == 1.0:
            # V x = V V^+ B(X) X = B(X) X (its columns sum to zero): saves a dense pass over V
            den = float(np.einsum("ij,ij->", x, bx))
        else:
            den = sum_wd2(x)
        new = den - 2.0 * cross + const
        if den <= 0 or (old - new) / den < eps:
            converged = True
            break
        old = new
    return x, {"iterations": it, "converged": converged, "stress_start": start}


#: Plain Guttman transforms before Anderson acceleration starts. Extrapolating from the
#: classical start at once can carry the loop into another basin of the stress: on 9
#: predicted matrices (L = 128-1024 and the shipped example, one BLAS thread) no warm-up
#: ended 0.02-0.24 % above the plain transform's stress at two of them; with 10 plain
#: steps first, at or below it on all 9. The weighted stress has many nearby minima:
#: round-off alone (BLAS threads) can move the end point by about 0.01 % either way.
ANDERSON_WARMUP = 10


def _anderson_loop(kernel: GuttmanKernel, vplus: np.ndarray, x: np.ndarray, rx: np.ndarray, old: float,
                   const: float, max_iter: int, eps: float, depth: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Weighted SMACOF with Anderson acceleration (type II, Walker & Ni 2011) of the
    Guttman transform G(X) = V^+ B(X) X, safeguarded so that stress never rises.

    The first :data:`ANDERSON_WARMUP` iterations are plain transforms. Each
    iteration forms G(X_k) and, from the last ``depth`` differences of the
    residuals F = G(X) - X, the extrapolation X' = G(X_k) - sum_m gamma_m dG_m with
    gamma the least-squares fit of F_k by the dF_m. X' is kept when its stress
    (one kernel pass, which also gives B(X') X' for the next step) is at most
    that of X_k; otherwise the history keeps only its last difference and the
    plain step G(X_k) is taken, which the majorisation never lets raise stress
    (one more pass). V X' comes from the same combination of the B(X_m) X_m
    (V V^+ B X = B X), so stress needs no pass over V. Stop rule as the plain
    loop's, (stress_old - stress_new) / sum w |x_i - x_j|^2 < eps, but only on a
    plain step: an extrapolated step that meets it is followed by a plain one
    that must meet it too, so the loop stops where the plain transform would.
    On the predicted matrices of ``benchmarks/bench_smacof_weighted.py`` this meets the
    stop rule well before the 300-iteration limit that the plain transform ran into from
    L = 256 on, at equal or lower stress (numbers in that benchmark's output).
    """
    dfs, dgs, dbs = [], [], []  # the last ``depth`` differences of F, G(X) and B(X) X
    prev = None
    converged = False
    plain_next = False
    accelerated = rejected = it = 0
    for it in range(1, max_iter + 1):
        bx = rx[:, 3:4] * x - rx[:, :3]  # B(X) X
        g = vplus @ bx  # centred: V^+ maps into the range of V, orthogonal to 1
        f = g - x
        if prev is not None:
            dfs.append((f - prev[1]).ravel())
            dgs.append(g - prev[0])
            dbs.append(bx - prev[2])
            if len(dfs) > depth:
                del dfs[0], dgs[0], dbs[0]
        prev = (g, f, bx)
        step_accelerated = bool(dfs) and not plain_next and it > ANDERSON_WARMUP
        if step_accelerated:
            gamma = np.linalg.lstsq(np.stack(dfs, axis=1), f.ravel(), rcond=None)[0]
            xn, vxn = g.copy(), bx.copy()
            for c, dg, db in zip(gamma, dgs, dbs):
                xn -= c * dg
                vxn -= c * db
            xn -= xn.mean(0)
        else:
            xn, vxn = g, bx
        rxn, cross = kernel(xn)
        den = float(np.einsum("ij,ij->", xn, vxn))  # sum_{i<j} w_ij |x'_i - x'_j|^2 = tr X'V X'
        new = den - 2.0 * cross + const
        if step_accelerated and not new <= old:
            rejected += 1
            del dfs[:-1], dgs[:-1], dbs[:-1]
            step_accelerated = False
            xn, vxn = g, bx
            rxn, cross = kernel(xn)
            den = float(np.einsum("ij,ij->", xn, vxn))
            new = den - 2.0 * cross + const
        accelerated += step_accelerated
        x, rx = xn, rxn
        small = den <= 0 or (old - new) / den < eps
        old = new
        if small and not step_accelerated:
            converged = True
            break
        plain_next = small
    return x, {"iterations": it, "converged": converged, "accelerated_steps": accelerated,
               "rejected_steps": rejected}


def _constant_offdiag(w: np.ndarray) -> bool:
    n = len(w)
    if n < 2:
        return True
    first = w[0, 1]
    off = w != first
    np.fill_diagonal(off, False)
    return not off.any()


def final_stress(x: np.ndarray, checked: CheckedDistances) -> tuple[float, float]:
    """(raw stress, Stress-1) of coordinates x, computed directly, not by the
    expansion the loop uses (which loses digits when stress is tiny)."""
    return stress(x, checked)


class SMACOF(ClassicalStart, Configurable):
    """Stress majorisation from classical MDS, with optional per-pair weights.

    max_iter: Guttman transforms at most.
    eps: stop when the stress decrease relative to sum w |x_i - x_j|^2 falls below it.
    relaxation: update X + a (G(X) - X); 1 plain, 2 over-relaxed (never raises stress).
    acceleration: depth of the Anderson acceleration of weighted SMACOF (0: the plain
        transform). Used only with relaxation 1; unweighted input always takes the plain
        transform.
    block_size: residues per block of the pair loop (speed only; results agree to round-off).
    negative_share / negative_share_exact_max_length / negative_share_probes /
        negative_share_steps / lanczos_min_length / lanczos_tol / seed: the
        classical-MDS start and its negative-eigenvalue share (see
        :class:`distfold.geometry.classical.ClassicalStart`).
    """

    accepts_weights = True

    def __init__(self, max_iter: int = 300, eps: float = 1e-6, relaxation: float = 1.0, block_size: int = 256,
                 acceleration: int = 5, negative_share: bool = True, negative_share_exact_max_length: int = SHARE_EXACT_MAX_LENGTH,
                 negative_share_probes: int = SHARE_PROBES, negative_share_steps: int = SHARE_STEPS,
                 lanczos_min_length: int = LANCZOS_MIN_LENGTH, lanczos_tol: float = LANCZOS_TOL, seed: int = 0):
        self.max_iter = int(max_iter)
        self.eps = float(eps)
        self.relaxation = float(relaxation)
        self.block_size = int(block_size)
        self.acceleration = int(acceleration)
        if not 0.0 < self.relaxation <= 2.0:
            raise ValueError(f"relaxation must be in (0, 2], got {relaxation}")
        if self.max_iter < 0 or self.block_size < 1 or self.acceleration < 0:
            raise ValueError("max_iter must be >= 0, block_size >= 1 and acceleration >= 0")
        self._init_classical(negative_share, negative_share_exact_max_length, negative_share_probes,
                             negative_share_steps, lanczos_min_length, lanczos_tol, seed)

    def embed(self, checked: CheckedDistances) -> tuple[np.ndarray, dict[str, Any]]:
        """Coordinates (hand not yet chosen) and diagnostics for checked input."""
        x0, info = self._classical_start(checked)
        x, loop = smacof_loop(checked, x0, self.max_iter, self.eps, self.relaxation, self.block_size,
                              self.acceleration)
        info = {**info, "iterations": loop["iterations"], "converged": loop["converged"],
                "stress_classical": loop["stress_start"]}
        if "accelerated_steps" in loop:
            info.update(accelerated_steps=loop["accelerated_steps"], rejected_steps=loop["rejected_steps"])
        return x, info

    def reconstruct(self, distances, weights=None) -> Reconstruction:
        """Checked (L, L) float64 distances in Å, (L, L) weights >= 0 or None -> (L, 3) Å, any hand."""
        checked = as_checked(distances, weights)
        x, info = self.embed(checked)
        raw, s1 = final_stress(x, checked)
        return Reconstruction(x, {"method": "smacof", "stress": raw, "stress1": s1, **info})
