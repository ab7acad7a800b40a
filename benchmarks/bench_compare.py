"""Scoring speed: every metric of ``distfold compare`` now against a reference version.

For each L (default 100, 400, 1000), in one process and interleaved
(``--repeats`` rounds): :func:`distfold.structure.metrics.score_coordinates` (all of
``compare``'s metrics on corresponded C-alphas: RMSD, TM-score and its mirror,
GDT-TS/HA, lDDT, distance errors, contact precision) as it is now, and the same
function from ``core/structure/metrics.py`` at git revision ``--reference-rev``
(default: the last one before the scoring speed-ups), imported from a temporary copy
with the Kabsch rotations of ``core/geometry/superpose.py`` at that revision.
Reported: in-process wall and CPU seconds (min / median / max), the ratio
reference / now per round, and whether every returned value is identical
(NaN equal to NaN) or else the largest difference of each value that differs.

Reference structure: the shortest real chain with at least L residues (its first
L), from ``--data`` (a folder with ``chains.jsonl`` and ``structures/``) or, without
it, tests/data/chains; longer than every chain: real chains side by side, 10 A
apart. Model: the reference with its second half turned 25 degrees about an axis
through the middle residue (a hinge), Gaussian noise of 1.5 A per coordinate (fixed
seed) and 2 % of its residues missing (NaN), so the searches have work to do.

    python benchmarks/bench_compare.py --data PATH/TO/shared/data
    python benchmarks/bench_compare.py --lengths 100 400 1000 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEST_CHAINS = REPO / "tests" / "data" / "chains"
#: core/structure/metrics.py before the scoring speed-ups of issue 19 (target 4).
REFERENCE_REV = "9f94dad2e12b7245ece4f8f9c3b702749777dd6a"
METRICS_PATH = "core/structure/metrics.py"
SUPERPOSE_PATH = "core/geometry/superpose.py"


def chain_paths(data: Path | None) -> list[tuple[int, Path]]:
    """[(length, path)] of real chains, shortest first."""
    if data is None:
        from distfold.structure.io import read_chain

        return sorted((len(read_chain(p)), p) for p in TEST_CHAINS.glob("*.pdb.gz"))
    out = []
    for line in open(data / "chains.jsonl"):
        r = json.loads(line)
        if r.get("source") == "bioemu-benchmarks" or r.get("bioemu_subsets"):
            continue
        out.append((r["length"], data / "structures" / r["split"] / f"{r['uid']}.pdb.gz"))
    return sorted(out)


def reference_coords(paths: list[tuple[int, Path]], length: int) -> tuple[np.ndarray, str]:
    from distfold.structure.io import read_chain

    for n, p in paths:
        if n >= length:
            ca = read_chain(p).ca
            if len(ca) >= length:
                return ca[:length], f"{p.name}[:{length}]"
    parts, total = [], 0
    for n, p in reversed(paths):
        ca = read_chain(p).ca
        ca = ca - ca.mean(0)
        if parts:
            ca[:, 0] += parts[-1][:, 0].max() - ca[:, 0].min() + 10.0
        parts.append(ca)
        total += len(ca)
        if total >= length:
            return np.vstack(parts)[:length], f"{len(parts)} real chains side by side"
    raise SystemExit(f"bench_compare: the chains at hand hold fewer than {length} residues")


def model_of(y: np.ndarray, seed: int = 0) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    n = len(y)
    pivot = y[n // 2]
    x = y.copy()
    x[n // 2:] = (y[n // 2:] - pivot) @ Rotation.from_rotvec(np.deg2rad(25.0) * np.array([0.0, 0.6, 0.8])).as_matrix().T \
        + pivot
    x += rng.normal(scale=1.5, size=x.shape)
    x[rng.random(n) < 0.02] = np.nan
    return x


def _module_at(rev: str, path: str, name: str):
    got = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True, text=True)
    if got.returncode:
        sys.exit(f"bench_compare: cannot read {path} at revision {rev}: {got.stderr.strip()}")
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(got.stdout)
    spec = importlib.util.spec_from_file_location(name, tmp)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference_module(rev: str):
    """metrics.py as of ``rev``, with the Kabsch rotations of superpose.py as of ``rev`` too
    (the one distfold function it imports that the speed-ups touched)."""
    mod = _module_at(rev, METRICS_PATH, "metrics_reference")
    if hasattr(mod, "_rotations_from_covariance"):
        mod._rotations_from_covariance = _module_at(rev, SUPERPOSE_PATH, "superpose_reference")._rotations_from_covariance
    return mod


def identical(a: dict, b: dict) -> list[str]:
    """Keys whose values differ (NaN equals NaN)."""
    return [k for k in a if k not in b or not np.array_equal(np.asarray(a[k], dtype=float),
                                                             np.asarray(b[k], dtype=float), equal_nan=True)]


def differences(a: dict, b: dict) -> str:
    """'identical', or each differing key with its largest absolute difference."""
    diff = identical(a, b)
    if not diff:
        return "identical"
    out = []
    for k in diff:
        if k not in b:
            out.append(f"{k} missing")
            continue
        d = np.abs(np.asarray(a[k], dtype=float) - np.asarray(b[k], dtype=float))
        out.append(f"{k} by {np.nanmax(d):.1e}")
    return "DIFFER: " + ", ".join(out)


def spread(v: list[float]) -> str:
    return f"{np.min(v):.3f}/{np.median(v):.3f}/{np.max(v):.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[100, 400, 1000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--reference-rev", default=REFERENCE_REV)
    ap.add_argument("--threads", type=int, default=0, help="BLAS threads for both sides (0: leave alone)")
    args = ap.parse_args(argv)

    from distfold.structure import metrics as now

    ref = reference_module(args.reference_rev)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    paths = chain_paths(args.data)
    sides = {"reference": ref.score_coordinates, "now": now.score_coordinates}
    for length in args.lengths:
        y, origin = reference_coords(paths, length)
        x = model_of(y)
        for f in sides.values():  # warm-up: imports, mdtraj topology
            f(x[:20], y[:20])
        wall = {k: [] for k in sides}
        cpu = {k: [] for k in sides}
        results = {}
        for _ in range(args.repeats):
            for name, f in sides.items():
                t, c = time.perf_counter(), time.process_time()
                results[name] = f(x, y)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        diff = differences(results["reference"], results["now"])
        for name in sides:
            print(f"L={length:5d} {name:9s} wall {spread(wall[name])} s  cpu {spread(cpu[name])} s (min/median/max)")
        wr = [a / b for a, b in zip(wall["reference"], wall["now"])]
        cr = [a / b for a, b in zip(cpu["reference"], cpu["now"])]
        r = results["now"]
        print(f"L={length:5d} reference/now: wall x{spread(wr)}, cpu x{spread(cr)}; values "
              f"{diff} (tm {r['tm_score']:.4f}, "
              f"gdt_ts {r['gdt_ts']:.2f}, rmsd {r['rmsd']:.3f}) [{origin}]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
