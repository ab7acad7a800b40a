"""refine from exact distances of real chains with chain breaks or cis peptides.

    python benchmarks/bench_refine_breaks.py --data DATA_DIR [--max-length 2000]
                                             [--before-max-length 300] [--json out.json]

Reference: the experimental structure. Chains: every chain of the shared data (train and val,
BioEmu benchmark structures never read) with at least one consecutive C-alpha distance more than
0.5 Å from 3.8 Å (a chain break or a cis peptide): 572 of 1,042. For each, ``refine`` (default
settings) from the exact C-alpha distances, RMSD to the experimental trace after the best proper
rotation, and whether it converged; "before" is the same with every consecutive pair bonded and
pulled to 3.8 Å (``bond_tolerance = 1e9, fit_spread = inf``, the rule before issue 15), run on
chains up to --before-max-length.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_hand_table import catalogue, read_traces, rmsd_proper  # noqa: E402


def main(argv=None) -> int:
    from scipy.spatial.distance import cdist
    from threadpoolctl import threadpool_limits

    from distfold.geometry.reconstruct import reconstruct
    from distfold.plugins.mds_smacof.refine import Refine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--max-length", type=int, default=100_000)
    ap.add_argument("--before-max-length", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    records = [r for r in catalogue(args.data, ("train", "val")) if r["length"] <= args.max_length]
    traces = read_traces(records, log)
    rows = []
    t0 = time.time()
    with threadpool_limits(1):
        for r in records:
            x = traces[r["uid"]]
            bonds = np.linalg.norm(np.diff(x, axis=0), axis=1)
            if not (np.abs(bonds - 3.8) > 0.5).any():
                continue
            d = cdist(x, x)
            out = reconstruct(Refine(negative_share=False), d)
            row = {"uid": r["uid"], "split": r["split"], "length": len(x),
                   "breaks": int(np.count_nonzero(bonds > 4.3)), "cis": int(np.count_nonzero(bonds < 3.3)),
                   "rmsd": rmsd_proper(out.coords, x), "converged": out.diagnostics["converged"],
                   "unbonded": len(out.diagnostics["unbonded_pairs"])}
            if len(x) <= args.before_max_length:
                old = reconstruct(Refine(negative_share=False, bond_tolerance=1e9, fit_spread=float("inf")), d)
                row["rmsd_before"] = rmsd_proper(old.coords, x)
                row["converged_before"] = old.diagnostics["converged"]
            rows.append(row)
            if len(rows) % 50 == 0:
                log(f"  {len(rows)} chains ({time.time() - t0:.0f} s)")
    after = np.array([q["rmsd"] for q in rows])
    both = [q for q in rows if "rmsd_before" in q]
    before = np.array([q["rmsd_before"] for q in both])
    after_b = np.array([q["rmsd"] for q in both])
    print(f"chains with a break or cis peptide: {len(rows)} (of {len(records)}), "
          f"{sum(q['breaks'] > 0 for q in rows)} with breaks > 4.3 A")
    print(f"after:  RMSD median {np.median(after):.3f} A, max {after.max():.3f} A, "
          f">= 0.1 A on {int((after >= 0.1).sum())}; not converged {sum(not q['converged'] for q in rows)}")
    if both:
        print(f"before (L <= {args.before_max_length}, {len(both)} chains): RMSD median {np.median(before):.3f} A, "
              f"max {before.max():.3f} A, >= 0.1 A on {int((before >= 0.1).sum())}; "
              f"after on the same: median {np.median(after_b):.3f}, max {after_b.max():.3f}")
    worst = sorted(rows, key=lambda q: -q["rmsd"])[:5]
    print("worst after:", ", ".join(f"{q['uid']} (L={q['length']}, {q['rmsd']:.3f} A)" for q in worst))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
