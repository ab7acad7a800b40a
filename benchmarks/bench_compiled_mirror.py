"""What a compiled kernel would buy ``compare``'s scoring: a measurement for a decision.

Not part of distfold, and it needs numba, which is **not** a distfold dependency
(``pip install numba`` into the benchmark's environment). Issue 19's target 4 asks for
``compare`` at L = 1000 under 0.5 s of compute; the numpy routes of
:mod:`distfold.structure.metrics` are measured out (see the issue's closing notes), so
the next step would be compiled code, which is the maintainers' choice. This script
measures that step for the longest of the three searches, the TM-score search of the
model's mirror image, before anyone commits to it:

1. the mirror search alone: :func:`distfold.structure.metrics._tm_search` (numpy) against
   the same search as one numba kernel per search step (Kabsch fit by Horn's quaternion
   with QCP's Newton iteration, distances, TM sum, next subset and its hash fused per
   row; subsets deduplicated as distfold does), CPU seconds and the two scores;
2. the whole :func:`~distfold.structure.metrics.score_coordinates` with only the mirror
   search swapped for the kernel, interleaved rounds, wall and CPU seconds and every value
   compared;
3. the start-up a one-shot ``distfold compare`` would pay, each in a fresh child
   process: ``import numba``, then the kernel's first call with its on-disk cache warm,
   and with no cache (a read-only install compiles on every run).

Reference and model are those of benchmarks/bench_compare.py (a real chain, a hinge,
1.5 A noise, 2 % of residues missing).

    pip install numba   # a scratch environment: not a distfold dependency
    python benchmarks/bench_compiled_mirror.py --data PATH/TO/shared/data --length 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import numba as nb
except ImportError:  # pragma: no cover - the point of the message
    sys.exit("bench_compiled_mirror: needs numba (pip install numba), which is not a distfold dependency")

import bench_compare as bc

HERE = Path(__file__).resolve().parent
KERNEL_OPTS = dict(cache=True, nogil=True, error_model="numpy")  # numpy's error model: no
# per-division ZeroDivisionError check, without which the distance loop does not vectorise (4x)


@nb.njit(**KERNEL_OPTS)
def _minor3(a, r, c):
    """Determinant of the 4x4 ``a`` without row r and column c."""
    r0, r1, r2 = (1 if r == 0 else 0), (2 if r <= 1 else 1), (3 if r <= 2 else 2)
    c0, c1, c2 = (1 if c == 0 else 0), (2 if c <= 1 else 1), (3 if c <= 2 else 2)
    return (a[r0, c0] * (a[r1, c1] * a[r2, c2] - a[r1, c2] * a[r2, c1])
            - a[r0, c1] * (a[r1, c0] * a[r2, c2] - a[r1, c2] * a[r2, c0])
            + a[r0, c2] * (a[r1, c0] * a[r2, c1] - a[r1, c1] * a[r2, c0]))


@nb.njit(**KERNEL_OPTS)
def _rotation(h, upper, n4, r):
    """r <- the proper rotation best mapping centred x onto centred y, from their covariance h
    (3x3): Horn's 4x4 matrix n4, its largest eigenvalue by Newton from ``upper`` (QCP), the
    quaternion from the adjugate column with the largest diagonal entry (as distfold does)."""
    sxx, sxy, sxz, syx, syy, syz, szx, szy, szz = (h[0, 0], h[0, 1], h[0, 2], h[1, 0], h[1, 1], h[1, 2],
                                                   h[2, 0], h[2, 1], h[2, 2])
    n4[0, 0], n4[0, 1], n4[0, 2], n4[0, 3] = sxx + syy + szz, syz - szy, szx - sxz, sxy - syx
    n4[1, 1], n4[1, 2], n4[1, 3] = sxx - syy - szz, sxy + syx, szx + sxz
    n4[2, 2], n4[2, 3] = -sxx + syy - szz, syz + szy
    n4[3, 3] = -sxx - syy + szz
    for i in range(4):
        for j in range(i):
            n4[i, j] = n4[j, i]
    frob = 0.0
    for i in range(3):
        for j in range(3):
            frob += h[i, j] * h[i, j]
    c2 = -2.0 * frob
    c1 = -8.0 * (sxx * (syy * szz - syz * szy) - sxy * (syx * szz - syz * szx) + sxz * (syx * szy - syy * szx))
    c0 = 0.0
    for c in range(4):
        c0 += (1.0 - 2.0 * (c % 2)) * n4[0, c] * _minor3(n4, 0, c)
    lam = min(np.sqrt(3.0 * frob), upper)
    for _ in range(50):
        x2 = lam * lam
        step = ((x2 + c2) * x2 + c1 * lam + c0) / ((4.0 * x2 + 2.0 * c2) * lam + c1)
        lam -= step
        if not abs(step) > 1e-11 * lam:
            break
    for i in range(4):
        n4[i, i] -= lam
    best, col = -1.0, 0
    for j in range(4):
        d = abs(_minor3(n4, j, j))
        if d > best:
            best, col = d, j
    q = np.empty(4)
    for i in range(4):
        q[i] = (1.0 - 2.0 * ((i + col) % 2)) * _minor3(n4, col, i)
    q /= np.sqrt((q * q).sum())
    q0, q1, q2, q3 = q[0], q[1], q[2], q[3]
    r[0, 0], r[0, 1], r[0, 2] = q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3, 2 * (q1 * q2 - q0 * q3), 2 * (q1 * q3 + q0 * q2)
    r[1, 0], r[1, 1], r[1, 2] = 2 * (q1 * q2 + q0 * q3), q0 * q0 - q1 * q1 + q2 * q2 - q3 * q3, 2 * (q2 * q3 - q0 * q1)
    r[2, 0], r[2, 1], r[2, 2] = 2 * (q1 * q3 - q0 * q2), 2 * (q2 * q3 + q0 * q1), q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3


@nb.njit(fastmath=True, **KERNEL_OPTS)
def _search_step(sel, xy, inv_d02, cut, weights, nxt, score, keys):
    """One step of the TM-score search for every row of sel (S, N) bool: fit, TM sum (score),
    the next subset (nxt: pairs closer than cut, grown by 0.5 A until 3; the TM-score
    program's rule) and its hash (keys: the sum of its members' odd 64-bit weights)."""
    x0, x1, x2, y0, y1, y2 = xy[0], xy[1], xy[2], xy[3], xy[4], xy[5]
    n_rows, n = sel.shape
    members = np.empty(n, np.int64)
    q = np.empty(n)
    h = np.empty((3, 3))
    n4 = np.empty((4, 4))
    r = np.empty((3, 3))
    for s in range(n_rows):
        k = 0
        for i in range(n):
            members[k] = i
            k += sel[s, i]
        sx0 = sx1 = sx2 = sy0 = sy1 = sy2 = sq = 0.0
        h00 = h01 = h02 = h10 = h11 = h12 = h20 = h21 = h22 = 0.0
        for m in range(k):
            i = members[m]
            a0, a1, a2, b0, b1, b2 = x0[i], x1[i], x2[i], y0[i], y1[i], y2[i]
            sx0 += a0
            sx1 += a1
            sx2 += a2
            sy0 += b0
            sy1 += b1
            sy2 += b2
            h00 += a0 * b0
            h01 += a0 * b1
            h02 += a0 * b2
            h10 += a1 * b0
            h11 += a1 * b1
            h12 += a1 * b2
            h20 += a2 * b0
            h21 += a2 * b1
            h22 += a2 * b2
            sq += a0 * a0 + a1 * a1 + a2 * a2 + b0 * b0 + b1 * b1 + b2 * b2
        w = float(k)
        cx0, cx1, cx2, cy0, cy1, cy2 = sx0 / w, sx1 / w, sx2 / w, sy0 / w, sy1 / w, sy2 / w
        h[0, 0], h[0, 1], h[0, 2] = h00 - w * cx0 * cy0, h01 - w * cx0 * cy1, h02 - w * cx0 * cy2
        h[1, 0], h[1, 1], h[1, 2] = h10 - w * cx1 * cy0, h11 - w * cx1 * cy1, h12 - w * cx1 * cy2
        h[2, 0], h[2, 1], h[2, 2] = h20 - w * cx2 * cy0, h21 - w * cx2 * cy1, h22 - w * cx2 * cy2
        spread = 0.5 * (sq - w * (cx0 * cx0 + cx1 * cx1 + cx2 * cx2 + cy0 * cy0 + cy1 * cy1 + cy2 * cy2))
        _rotation(h, spread + 1e-9 * sq + 1e-12, n4, r)
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = (r[0, 0], r[0, 1], r[0, 2], r[1, 0], r[1, 1], r[1, 2],
                                                       r[2, 0], r[2, 1], r[2, 2])
        t0 = cy0 - (r00 * cx0 + r01 * cx1 + r02 * cx2)
        t1 = cy1 - (r10 * cx0 + r11 * cx1 + r12 * cx2)
        t2 = cy2 - (r20 * cx0 + r21 * cx1 + r22 * cx2)
        total = 0.0
        for i in range(n):
            p0 = r00 * x0[i] + r01 * x1[i] + r02 * x2[i] + t0 - y0[i]
            p1 = r10 * x0[i] + r11 * x1[i] + r12 * x2[i] + t1 - y1[i]
            p2 = r20 * x0[i] + r21 * x1[i] + r22 * x2[i] + t2 - y2[i]
            qi = 1.0 + (p0 * p0 + p1 * p1 + p2 * p2) * inv_d02
            q[i] = qi
            total += 1.0 / qi
        score[s] = total
        c = cut
        while True:
            within_q = 1.0 + inv_d02 * c * c
            count = 0
            key = np.uint64(0)
            for i in range(n):
                b = q[i] < within_q
                nxt[s, i] = b
                count += b
                key += weights[i] * np.uint64(b)
            if count >= 3 or n <= 3:
                break
            c += 0.5
        keys[s] = key


def compiled_tm_search(x: np.ndarray, y: np.ndarray, l_ref: int, n_iter: int) -> tuple[float, int]:
    """The TM-score search of metrics._tm_search (no GDT counts) with each step one kernel call.
    Returns (score, fits)."""
    from distfold.structure.metrics import _tm_seeds, tm_d0

    x, y = x - x.mean(0), y - y.mean(0)
    n = len(x)
    xy = np.ascontiguousarray(np.concatenate([x, y], 1).T)
    d0 = tm_d0(l_ref)
    d0_search = min(max(d0, 4.5), 8.0)
    inv_d02 = 1.0 / (d0 * d0)
    weights = np.random.default_rng(0x5EED).integers(1, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    sel, cut, seen, best, fits = _tm_seeds(n), d0_search - 1.0, np.zeros(0, np.uint64), -1.0, 0
    for step in range(n_iter + 1):
        nxt = np.empty(sel.shape, dtype=bool)
        score, keys = np.empty(len(sel)), np.empty(len(sel), dtype=np.uint64)
        _search_step(sel, xy, inv_d02, cut, weights, nxt, score, keys)
        fits += len(sel)
        best = max(best, float(score.max()) / l_ref)
        if step == n_iter:
            break
        _, first = np.unique(keys, return_index=True)  # first of each subset, in row order,
        first = np.sort(first)  # never fitted before (the seeds' keys are not kept: as distfold)
        if len(seen):
            pos = np.minimum(np.searchsorted(seen, keys[first]), len(seen) - 1)
            first = first[seen[pos] != keys[first]]
        seen = np.sort(np.concatenate([seen, keys[first]]))
        sel, cut = nxt[first], d0_search + 1.0
        if not len(sel):
            break
    return best, fits


def _child_startup(cache_dir: str) -> dict:
    """In a fresh process: seconds to import numba, then to make the kernel's first call."""
    code = (
        "import sys, time, json; sys.path.insert(0, %r); t = time.perf_counter(); import numba; "
        "t1 = time.perf_counter(); import numpy as np, bench_compiled_mirror as b, distfold.structure.metrics; "
        "t2 = time.perf_counter(); "
        "x = np.random.default_rng(0).normal(size=(60, 3)) * 5; b.compiled_tm_search(x, x + 0.3, 60, 2); "
        "t3 = time.perf_counter(); print(json.dumps({'import_numba': t1 - t, 'first_call': t3 - t2}))" % str(HERE))
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args(argv)

    from distfold.structure import metrics as M

    y, origin = bc.reference_coords(bc.chain_paths(args.data), args.length)
    x = bc.model_of(y)
    ok = np.isfinite(x).all(1)
    xm, ya = M.mirror(x[ok]), y[ok]
    print(f"L={args.length} [{origin}]")

    # 1. the mirror search alone, serial
    compiled_tm_search(xm, ya, args.length, M.TM_N_ITER)  # compile (or load the cache)
    cpu = {"numpy": [], "numba": []}
    with M._one_blas_thread():
        for _ in range(args.rounds):
            c = time.process_time()
            s_np = M._tm_search(M._Superposer(xm, ya), args.length)[0]
            cpu["numpy"].append(time.process_time() - c)
            c = time.process_time()
            s_nb, fits = compiled_tm_search(xm, ya, args.length, M.TM_N_ITER)
            cpu["numba"].append(time.process_time() - c)
    print(f"mirror search, CPU s (min/median/max): numpy {bc.spread(cpu['numpy'])}, numba {bc.spread(cpu['numba'])}; "
          f"ratio x{np.median(cpu['numpy']) / np.median(cpu['numba']):.2f}; {fits} fits; "
          f"scores {s_np:.15f} / {s_nb:.15f} (differ by {abs(s_np - s_nb):.1e})")

    # 2. the whole score with the mirror search compiled, interleaved with the numpy one
    numpy_search = M._tm_search

    def swapped(sp, l_ref, n_iter=M.TM_N_ITER, gdt_cutoffs=()):
        if gdt_cutoffs:  # the model's own search (with GDT counts) stays numpy
            return numpy_search(sp, l_ref, n_iter, gdt_cutoffs)
        # the mirror's: its centred coordinates are the superposer's first six features
        return compiled_tm_search(sp.feat[:, 0:3], sp.feat[:, 3:6], l_ref, n_iter)[0], None, None, {}

    wall = {"numpy": [], "numba": []}
    cpu = {"numpy": [], "numba": []}
    results = {}
    try:
        for i in range(args.rounds):
            for side in (("numpy", "numba") if i % 2 == 0 else ("numba", "numpy")):
                M._tm_search = swapped if side == "numba" else numpy_search
                t, c = time.perf_counter(), time.process_time()
                results[side] = M.score_coordinates(x, y)
                wall[side].append(time.perf_counter() - t)
                cpu[side].append(time.process_time() - c)
    finally:
        M._tm_search = numpy_search
    ratio = [a / b for a, b in zip(wall["numpy"], wall["numba"])]
    for side in wall:
        print(f"score_coordinates, {side:5s} mirror search: wall {bc.spread(wall[side])} s, cpu {bc.spread(cpu[side])} s")
    print(f"wall ratio x{bc.spread(ratio)}; values {bc.differences(results['numpy'], results['numba'])}")

    # 3. what a one-shot process would pay before scoring
    with tempfile.TemporaryDirectory() as cache:
        cold = _child_startup(cache)  # compiles, then writes the cache
        warm = _child_startup(cache)
    print(f"start-up: import numba {warm['import_numba']:.2f} s; first call {warm['first_call']:.2f} s with the "
          f"cache warm, {cold['first_call']:.2f} s compiling (no cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
