"""Whole ``distfold evaluate`` now against a git revision, side by side, and its numbers value by value.

Each round runs ``python -m distfold evaluate DATA --split SPLIT --max-length N -o OUT``
once with the code of ``--vs REV`` (exported from git and first on PYTHONPATH; checked to
be what imports) and once with the working tree, alternating which goes first. Reported:
wall seconds of each whole process (min / median / max over ``--rounds``), the child's
CPU seconds, the ratio before / now per round, and every value of the two metrics.json
that differs (timings, the chains' ``seconds`` and ``model_timings`` and ``total_s`` left
out, and the model's path, which is the export's copy; NaN equals NaN; with ``--rtol``, floats
that close count as equal and the largest such difference is printed). Exit status 1 when a
value differs. The working tree includes uncommitted work: give ``--vs`` a revision whose only
differences from it are the change being measured.

    python benchmarks/bench_evaluate.py --vs HEAD~3
    python benchmarks/bench_evaluate.py --data ../runs/ds_ss --split val --max-length 256 --vs REV --rounds 3
    python benchmarks/bench_evaluate.py --vs 7f4a686 --model core/default_model   # one model for both sides
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, package_at

#: Keys whose values are timings, not results.
TIMING_KEYS = {"total_s", "seconds", "model_timings"}
#: Values that name where the code ran from (the export's copy of the shipped model), not results.
LOCATION_PATHS = {"/model/path"}


def run_evaluate(env: dict[str, str], data: Path, split: str, max_length: int, out: Path,
                 model: Path | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of one whole ``distfold evaluate`` process (its worker processes included:
    they are its children, waited for)."""
    cmd = [sys.executable, "-m", "distfold", "evaluate", str(data), "--split", split, "--max-length",
           str(max_length), "-o", str(out)] + (["--model", str(model)] if model is not None else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def differences(a, b, path: str = "", rtol: float = 0.0, largest: list[float] | None = None) -> list[str]:
    """Paths where two JSON values differ (timing keys skipped; NaN/None equal themselves).
    Floats within ``rtol`` of each other (relative to the larger) count as equal; ``largest``
    (a one-element list) receives the largest relative difference of such floats."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in TIMING_KEYS or f"{path}/{k}" in LOCATION_PATHS:
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k} (only in {'now' if k in b else 'before'})")
            else:
                out += differences(a[k], b[k], f"{path}/{k}", rtol, largest)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", rtol, largest)]
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return []
        if a != b and math.isfinite(a) and math.isfinite(b):
            rel = abs(a - b) / max(abs(a), abs(b))
            if rel <= rtol:
                if largest is not None:
                    largest[0] = max(largest[0], rel)
                return []
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} vs {b!r}"]


def spread(values: list[float], fmt: str = ".2f") -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vs", required=True, metavar="REV", help="git revision to compare with (the 'before')")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "runs" / "ds_ss")
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP/BLAS threads for both sides (0: leave the environment alone)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the two first reports under this folder")
    ap.add_argument("--model", type=Path, default=None,
                    help="model folder for both sides (default: each side's shipped model, which differs "
                         "between revisions that ship different models)")
    ap.add_argument("--rtol", type=float, default=0.0,
                    help="floats whose relative difference is at most this count as equal (default 0: "
                         "identical); the largest such difference is printed")
    args = ap.parse_args(argv)
    if not (args.data / "dataset.json").is_file():
        sys.exit(f"bench_evaluate: {args.data}: not a distfold dataset")

    with tempfile.TemporaryDirectory(prefix="distfold-bench-evaluate-") as tmp:
        tmp = Path(tmp)
        envs = {"before": package_at(args.vs, tmp), "now": dict(os.environ)}
        if args.threads:
            for env in envs.values():
                env.update({k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                             "MKL_NUM_THREADS")})
        keep = args.keep or tmp / "reports"
        wall: dict[str, list[float]] = {"before": [], "now": []}
        cpu: dict[str, list[float]] = {"before": [], "now": []}
        for rnd in range(args.rounds):
            order = ("before", "now") if rnd % 2 == 0 else ("now", "before")
            for side in order:
                out = keep / side if rnd == 0 else tmp / f"{side}_{rnd}"
                w, c = run_evaluate(envs[side], args.data, args.split, args.max_length, out, args.model)
                wall[side].append(w)
                cpu[side].append(c)
                print(f"round {rnd + 1} {side:6s} wall {w:.2f} s  cpu {c:.2f} s", file=sys.stderr, flush=True)
        metrics = {side: json.loads((keep / side / "metrics.json").read_text()) for side in envs}
        largest = [0.0]
        diff = differences(metrics["before"], metrics["now"], rtol=args.rtol, largest=largest)
        n_chains = metrics["now"]["dataset"]["n_chains"]
        model = f" --model {args.model}" if args.model is not None else ""
        print(f"distfold evaluate {args.data} --split {args.split} --max-length {args.max_length}{model} "
              f"({n_chains} chains), {args.rounds} rounds, min / median / max:")
        for side in ("before", "now"):
            label = f"{side} ({args.vs})" if side == "before" else side
            print(f"  {label:20s} wall {spread(wall[side])} s   cpu {spread(cpu[side])} s")
        print(f"  before / now          wall x{spread([a / b for a, b in zip(wall['before'], wall['now'])])}   "
              f"cpu x{spread([a / b for a, b in zip(cpu['before'], cpu['now'])])}")
        if diff:
            print(f"  metrics.json: {len(diff)} values differ:")
            for d in diff[:40]:
                print(f"    {d}")
            return 1
        if largest[0] > 0:
            print(f"  metrics.json: every value equal within a relative {args.rtol:g} (largest difference "
                  f"{largest[0]:.1e}; timings left out)")
        else:
            print("  metrics.json: every value identical (timings left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
