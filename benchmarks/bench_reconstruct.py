"""Speed of distfold's reconstructors against scikit-learn and a full eigh.

Runs, in one process and on the same real noisy matrices (C-alpha distances
of real chains times exp(s N(0, 1)), symmetric):

1. SMACOF: distfold ``smacof`` in its DEFAULT config ("ours": it reports the
   negative-eigenvalue share, exact up to 256 residues, estimated by
   stochastic Lanczos quadrature above; the share, its method and the exact
   value, computed untimed, are printed)
   and, as an extra column, with ``negative_share=False`` (no diagnostic, which
   scikit-learn does not compute either) against ``sklearn.manifold.MDS(n_components=3,
   metric="precomputed", init="classical_mds", n_init=1, max_iter=300,
   eps=1e-6, normalized_stress=False)``. Both use the same stop rule; the final
   raw stress of both is recomputed here with one definition,
   sum_{i<j} (|x_i - x_j| - d_ij)^2.
2. Classical MDS: distfold ``classical`` (Lanczos top-3 eigenpairs; default
   config, plus the column without the share) against the textbook version
   with a full ``numpy.linalg.eigh``; "same coordinates" is the largest
   difference between their pairwise distance matrices.

Times are the minimum over ``--repeats`` interleaved runs (the machine may be
shared; ratios are what count). BLAS threads are limited to ``--threads`` for
both sides (threadpoolctl); 0 leaves them alone.

Chains: the shortest real chain with at least L residues (its first L),
never a BioEmu benchmark structure. With ``--data`` (a folder holding
``chains.jsonl`` and ``structures/``) every length can be served; without it,
only the chains committed under tests/data/chains. A length longer than every
chain uses a two-chain assembly: the two longest chains of different
families, the second placed 10 A beyond the first along x (labelled so).

    python benchmarks/bench_reconstruct.py --data PATH/TO/shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

HERE = Path(__file__).resolve().parent
TEST_CHAINS = HERE.parent / "tests" / "data" / "chains"


def load_catalogue(data: Path | None) -> list[dict]:
    """[{uid, length, family, path}] of usable real chains."""
    if data is None:
        from distfold.structure.io import read_chain

        out = []
        for p in sorted(TEST_CHAINS.glob("*.pdb.gz")):
            out.append({"uid": p.name.split(".")[0], "length": len(read_chain(p)), "family": p.name, "path": p})
        return out
    out = []
    with open(data / "chains.jsonl") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("source") == "bioemu-benchmarks" or r.get("bioemu_subsets"):
                continue
            out.append({"uid": r["uid"], "length": r["length"], "family": r["family"],
                        "path": data / "structures" / r["split"] / f"{r['uid']}.pdb.gz"})
    return out


def matrix_for_length(cat: list[dict], n: int) -> tuple[np.ndarray, str] | None:
    """True (L, L) C-alpha distances of a real chain (or two) and a label."""
    from distfold.structure.io import read_chain

    longer = sorted((c for c in cat if c["length"] >= n), key=lambda c: c["length"])
    for c in longer:
        ca = read_chain(c["path"]).ca
        if len(ca) >= n:
            return cdist(ca[:n], ca[:n]), f"{c['uid']}[:{n}] (of {len(ca)})"
    by_len = sorted(cat, key=lambda c: -c["length"])
    if len(by_len) < 2 or by_len[0]["length"] + by_len[1]["length"] < n:
        return None
    first = by_len[0]
    second = next(c for c in by_len[1:] if c["family"] != first["family"])
    a = read_chain(first["path"]).ca
    b = read_chain(second["path"]).ca[: n - len(a)]
    a = a - a.mean(0)
    b = b - b.mean(0)
    b[:, 0] += a[:, 0].max() - b[:, 0].min() + 10.0
    x = np.vstack([a, b])
    return cdist(x, x), f"{first['uid']} + {second['uid']}[:{len(b)}] (two-chain assembly)"


def noisy(d: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.triu(d * np.exp(sigma * rng.standard_normal(d.shape)), 1)
    return out + out.T


def raw_stress(x: np.ndarray, d: np.ndarray) -> float:
    diff = cdist(x, x) - d
    return float((diff * diff).sum()) / 2.0


def timed(func):
    t = time.perf_counter()
    out = func()
    return time.perf_counter() - t, out


def sklearn_mds(d: np.ndarray):
    from sklearn.manifold import MDS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mds = MDS(n_components=3, metric="precomputed", init="classical_mds", n_init=1, max_iter=300, eps=1e-6,
                  normalized_stress=False)
        y = mds.fit_transform(d)
    return y, mds.n_iter_


def full_eigh_classical(d: np.ndarray) -> np.ndarray:
    from distfold.geometry.classical import double_centre

    vals, vecs = np.linalg.eigh(double_centre(d))
    return vecs[:, -3:][:, ::-1] * np.sqrt(np.clip(vals[-3:][::-1], 0.0, None))


def exact_share(d: np.ndarray) -> float:
    """The negative-eigenvalue share from every eigenvalue (untimed; for comparison)."""
    from distfold.geometry.classical import double_centre, negative_eigenvalue_share

    return negative_eigenvalue_share(double_centre(d), exact_max_length=len(d))[0]


def bench(args) -> int:
    import sklearn

    from distfold.plugins.mds_classical.classical import ClassicalMDS
    from distfold.geometry.reconstruct import reconstruct
    from distfold.plugins.mds_smacof.smacof import SMACOF

    cat = load_catalogue(args.data)
    print(f"# numpy {np.__version__}, scikit-learn {sklearn.__version__}, BLAS threads: "
          f"{args.threads or 'unlimited'}, repeats {args.repeats} (min time), noise s = {args.noise}, "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ours_default = SMACOF()
    ours_fast = SMACOF(negative_share=False)
    print(f"# distfold smacof config: {json.dumps(ours_default.get_config(), sort_keys=True)}")
    rows = []
    print("\n## SMACOF: distfold vs scikit-learn MDS")
    print(f"{'L':>5}  {'chain':<44} {'sk s':>7} {'ours s':>7} {'ratio':>6} {'share (method)':>15}"
          f" {'exact':>6} {'no-share s':>10} {'ratio':>6}  {'sk stress':>12} {'ours stress':>12} {'diff %':>7}"
          f" {'it sk/ours':>10}")
    for n in args.lengths:
        got = matrix_for_length(cat, n)
        if got is None:
            print(f"{n:>5}  (no chain this long in the catalogue; pass --data)")
            continue
        true_d, label = got
        d = noisy(true_d, args.noise, seed=n)
        t_sk, t_fast, t_def = [], [], []
        for _ in range(args.repeats):
            t, (y_sk, it_sk) = timed(lambda: sklearn_mds(d))
            t_sk.append(t)
            t, _ = timed(lambda: reconstruct(ours_fast, d))
            t_fast.append(t)
            t, rec_def = timed(lambda: reconstruct(ours_default, d))
            t_def.append(t)
        s_sk, s_ours = raw_stress(y_sk, d), raw_stress(rec_def.coords, d)
        share, method = (rec_def.diagnostics["negative_eigenvalue_share"],
                         rec_def.diagnostics["negative_eigenvalue_share_method"])
        exact = exact_share(d)
        row = {"L": n, "chain": label, "sklearn_s": min(t_sk), "ours_s": min(t_def), "ours_no_share_s": min(t_fast),
               "ratio": min(t_sk) / min(t_def), "ratio_no_share": min(t_sk) / min(t_fast),
               "negative_eigenvalue_share": share, "negative_eigenvalue_share_method": method,
               "negative_eigenvalue_share_exact": exact, "stress_sklearn": s_sk, "stress_ours": s_ours,
               "stress_diff_pct": 100.0 * (s_ours - s_sk) / s_sk,
               "iterations_sklearn": int(it_sk), "iterations_ours": int(rec_def.diagnostics["iterations"])}
        rows.append(row)
        print(f"{n:>5}  {label:<44} {row['sklearn_s']:7.3f} {row['ours_s']:7.3f} {row['ratio']:6.1f}"
              f" {f'{share:.4f} ({method})':>15} {exact:6.4f} {row['ours_no_share_s']:10.3f}"
              f" {row['ratio_no_share']:6.1f}"
              f"  {s_sk:12.6g} {s_ours:12.6g} {row['stress_diff_pct']:+7.3f} {it_sk:>4d}/{row['iterations_ours']:<4d}")
        sys.stdout.flush()

    print("\n## Classical MDS: distfold (Lanczos top-3) vs full numpy.linalg.eigh")
    print(f"{'L':>5}  {'eigh s':>7} {'ours s':>7} {'ratio':>6} {'share (method)':>15} {'exact':>6} {'no-share s':>10}"
          f" {'ratio':>6}"
          f" {'max |dD| A':>11}")
    cls_fast = ClassicalMDS(negative_share=False)
    cls_default = ClassicalMDS()
    for n in args.classical_lengths:
        got = matrix_for_length(cat, n)
        if got is None:
            print(f"{n:>5}  (no chain this long in the catalogue; pass --data)")
            continue
        d = noisy(got[0], args.noise, seed=n)
        t_full, t_fast, t_def = [], [], []
        for _ in range(args.repeats):
            t, ref = timed(lambda: full_eigh_classical(d))
            t_full.append(t)
            t, _ = timed(lambda: reconstruct(cls_fast, d))
            t_fast.append(t)
            t, rec_def = timed(lambda: reconstruct(cls_default, d))
            t_def.append(t)
        dd = float(np.abs(cdist(rec_def.coords, rec_def.coords) - cdist(ref, ref)).max())
        share, method = (rec_def.diagnostics["negative_eigenvalue_share"],
                         rec_def.diagnostics["negative_eigenvalue_share_method"])
        exact = exact_share(d)
        row = {"L": n, "eigh_s": min(t_full), "ours_s": min(t_def), "ours_no_share_s": min(t_fast),
               "ratio": min(t_full) / min(t_def), "ratio_no_share": min(t_full) / min(t_fast),
               "negative_eigenvalue_share": share, "negative_eigenvalue_share_method": method,
               "negative_eigenvalue_share_exact": exact, "max_dD": dd}
        rows.append({"classical": row})
        print(f"{n:>5}  {row['eigh_s']:7.3f} {row['ours_s']:7.3f} {row['ratio']:6.1f} {f'{share:.4f} ({method})':>15}"
              f" {exact:6.4f} {row['ours_no_share_s']:10.3f} {row['ratio_no_share']:6.1f} {dd:11.2e}")
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, sort_keys=True))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="folder with chains.jsonl and structures/")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--classical-lengths", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--noise", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides (0: unlimited)")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads, user_api="blas"):
            return bench(args)
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
