"""Accuracy and cost of the negative-eigenvalue share's estimate (stochastic Lanczos quadrature).

For real chains (C-alpha distances times exp(s N(0, 1)), symmetric, as in
bench_reconstruct.py) this compares the share sum|lambda-| / sum|lambda| of
B = -1/2 J D^2 J computed exactly (every eigenvalue) with the SLQ estimate of
:func:`distfold.geometry.classical.negative_eigenvalue_share`
(top-3 eigenpairs deflated, as the reconstructors do) for a grid of
(probes, Lanczos steps), over several chains, noise levels and probe seeds.
It prints, per length and (probes, steps): the mean, standard deviation and
largest absolute error of the estimate (share units, i.e. 0.01 = 1 %
absolute; also the largest per noise level), and the time of the estimate next to the exact eigenvalues and to
distfold ``smacof`` without the share, on the same matrix (minimum over
``--repeats``; one BLAS thread by default).

Chains: for each length, the ``--chains`` shortest real chains of distinct
families with at least that many residues (their first L), never a BioEmu
benchmark structure; a length longer than every chain uses bench_reconstruct's
two-chain assembly.

    python benchmarks/bench_negative_share.py --data PATH/TO/shared/data
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reconstruct import load_catalogue, matrix_for_length, noisy  # noqa: E402


def matrices(cat: list[dict], n: int, count: int) -> list[tuple[np.ndarray, str]]:
    from distfold.structure.io import read_chain

    out, families = [], set()
    for c in sorted((c for c in cat if c["length"] >= n), key=lambda c: c["length"]):
        if c["family"] in families:
            continue
        ca = read_chain(c["path"]).ca
        if len(ca) < n:
            continue
        families.add(c["family"])
        out.append((cdist(ca[:n], ca[:n]), f"{c['uid']}[:{n}]"))
        if len(out) == count:
            return out
    if not out:
        got = matrix_for_length(cat, n)
        if got is not None:
            out.append(got)
    return out


def timed_min(func, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t)
    return best


def bench(args) -> int:
    from distfold.geometry.classical import (SHARE_PROBES, SHARE_STEPS, double_centre, negative_eigenvalue_share,
                                             top_eigenpairs)
    from distfold.geometry.reconstruct import reconstruct
    from distfold.plugins.mds_smacof.smacof import SMACOF

    combos = [tuple(int(v) for v in c.split("x")) for c in args.combos]
    cat = load_catalogue(args.data)
    print(f"# noise levels {args.noise}, probe seeds 0..{args.seeds - 1}, up to {args.chains} chains per length, "
          f"defaults probes x steps = {SHARE_PROBES}x{SHARE_STEPS}")
    for n in args.lengths:
        mats = matrices(cat, n, args.chains)
        if not mats:
            print(f"\nL = {n}: no chain this long")
            continue
        print(f"\n## L = {n}: {len(mats)} chains ({', '.join(label for _, label in mats)})")
        errors = {c: {s: [] for s in args.noise} for c in combos}
        shares = []
        for k, (d0, _) in enumerate(mats):
            for s in args.noise:
                d = noisy(d0, s, seed=1000 * k + int(100 * s))
                b = double_centre(d)
                exact, method = negative_eigenvalue_share(b, exact_max_length=n)
                assert method == "exact"
                shares.append(exact)
                top = top_eigenpairs(b, 3, 64, 1e-10, 0)
                for probes, steps in combos:
                    for seed in range(args.seeds):
                        est, method = negative_eigenvalue_share(b, 0, probes, steps, seed, top=top)
                        assert method == "slq"
                        errors[(probes, steps)][s].append(est - exact)
        print(f"exact shares: {min(shares):.3f}-{max(shares):.3f}")
        # cost on the first chain at noise 0.2 (or the first level)
        d = noisy(mats[0][0], 0.2 if 0.2 in args.noise else args.noise[0], seed=1)
        b = double_centre(d)
        top = top_eigenpairs(b, 3, 64, 1e-10, 0)
        t_exact = timed_min(lambda: negative_eigenvalue_share(b, exact_max_length=n), args.repeats)
        smacof = SMACOF(negative_share=False)
        t_smacof = timed_min(lambda: reconstruct(smacof, d), args.repeats)
        print(f"exact share {t_exact:.4f} s, smacof without the share {t_smacof:.4f} s")
        print(f"{'probes x steps':>14} {'mean err':>9} {'sd':>7} {'max |err|':>9} {'slq s':>8} {'% smacof':>9}"
              f" {'% exact':>8}  " + " ".join(f"{'max s=' + str(s):>10}" for s in args.noise))
        for (probes, steps), by_noise in errors.items():
            e = np.concatenate([np.array(v) for v in by_noise.values()])
            t = timed_min(lambda: negative_eigenvalue_share(b, 0, probes, steps, 0, top=top), args.repeats)
            print(f"{probes:>6} x {steps:<5} {e.mean():+9.4f} {e.std():7.4f} {np.abs(e).max():9.4f} {t:8.4f}"
                  f" {100 * t / t_smacof:8.1f}% {100 * t / t_exact:7.1f}%  "
                  + " ".join(f"{np.abs(v).max():10.4f}" for v in by_noise.values()))
        sys.stdout.flush()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="folder with chains.jsonl and structures/")
    p.add_argument("--lengths", type=int, nargs="+", default=[313, 600, 1024, 2048])
    p.add_argument("--chains", type=int, default=5, help="chains per length")
    p.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5])
    p.add_argument("--seeds", type=int, default=5, help="probe seeds per matrix")
    p.add_argument("--combos", nargs="+", default=["4x8", "8x6", "6x8", "8x8", "8x10", "16x8", "8x15"],
                   help="probes x Lanczos steps")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: unlimited)")
    args = p.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads, user_api="blas"):
            return bench(args)
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
