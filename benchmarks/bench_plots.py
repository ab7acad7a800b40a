"""The five ``distfold evaluate`` plots (distfold.report.plots) now against a git revision's, side by side.

Draws the distance maps (three chains), error histogram, error by separation,
calibration and training curves from synthetic inputs the size of a 70-chain
evaluation (maps of 36, 84 and 147 residues, 8,306 calibration residues, a
1,000-step training log), once with ``core/report/plots.py`` as it is at ``--vs REV``
and once with the working tree's, alternating which goes first, ``--rounds`` times
after one warm-up each (fonts). Reported: CPU and wall seconds of the five plots
(min / median / max) and the ratio before / now per round. The PNGs of the last
round are kept under ``--keep`` to compare by eye.

    python benchmarks/bench_plots.py --vs HEAD~1 --rounds 5 --keep PLOTS_DIR
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import ROOT


def plots_at(rev: str, tmp: Path):
    """``core/report/plots.py`` of git revision ``rev``, imported as its own module."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:core/report/plots.py"], capture_output=True)
    if src.returncode != 0:
        sys.exit(f"git show {rev}:core/report/plots.py: {src.stderr.decode().strip()}")
    path = tmp / "plots_before.py"
    path.write_bytes(src.stdout)
    spec = importlib.util.spec_from_file_location("plots_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inputs(rng: np.random.Generator) -> dict:
    """Synthetic inputs of each plot, the size of the 70-chain val evaluation's."""
    from scipy.spatial.distance import cdist

    maps = []
    for which, n in (("best", 36), ("median", 84), ("worst", 147)):
        x = np.cumsum(rng.normal(size=(n, 3)), axis=0) * 2.5
        true = cdist(x, x)
        true[3] = true[:, 3] = np.nan
        pred = np.abs(np.nan_to_num(true, nan=10.0) + rng.normal(0, 2, (n, n)))
        maps.append({"title": f"{which} lDDT: c0123456789ab (L={n}, lDDT 0.500, TM 0.300)", "pred": (pred + pred.T) / 2,
                     "true": true})
    edges = np.arange(-30, 30.25, 0.5)
    counts = {m: rng.integers(0, 20000, len(edges) - 1) for m in ("model", "prior")}
    sep_counts = np.arange(256, 0, -1).astype(float) * 70
    sums = {m: sep_counts * np.log1p(np.arange(256)) * 2 for m in ("model", "prior")}
    conf = rng.random(8306) * 60
    table = [{"bin": f"{lo}-{lo + 10}", "n": 100, "mean_predicted": lo + 5.0, "mean_observed": lo + 8.0}
             for lo in range(0, 60, 10)]
    log = [{"kind": "train", "step": s, "loss": -1.1 - s / 1500 + rng.normal(0, 0.03), "grad_norm": 1 + rng.random()}
           for s in range(10, 1001, 10)]
    log += [{"kind": "val", "step": s, "mae": 9.5 - s / 1e4, "prior_mae": 7.1, "rmse": 9.6, "lddt": 0.3 + s / 1e4,
             "prior_lddt": 0.25, "q3": 0.6} for s in range(250, 1001, 250)]
    return {"maps": maps, "edges": edges, "counts": counts, "mae": {"model": 8.43, "prior": 8.62},
            "n": {"model": 622499, "prior": 622499}, "sums": sums, "sep_counts": sep_counts, "conf": conf,
            "obs": np.clip(conf + rng.normal(5, 10, len(conf)), 0, 100), "table": table, "log": log}


def draw_all(plots, d: dict, out: Path) -> tuple[float, float]:
    """(CPU s, wall s) of the five plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    c, w = time.process_time(), time.perf_counter()
    plots.distance_maps(out / "distance_maps.png", d["maps"])
    plots.error_histogram(out / "error_histogram.png", d["edges"], d["counts"], d["mae"], d["n"])
    plots.error_by_separation(out / "error_by_separation.png", d["sums"], d["sep_counts"])
    plots.calibration(out / "calibration.png", d["conf"], d["obs"], d["table"])
    plots.training_curves(out / "training_curves.png", d["log"])
    return time.process_time() - c, time.perf_counter() - w


def spread(values: list[float], fmt: str = ".2f") -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vs", required=True, metavar="REV", help="git revision whose plots.py is the 'before'")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="keep the last round's PNGs under this folder")
    args = ap.parse_args(argv)
    from distfold.report import plots as now

    with tempfile.TemporaryDirectory(prefix="distfold-bench-plots-") as tmp:
        tmp = Path(tmp)
        sides = {"before": plots_at(args.vs, tmp), "now": now}
        d = inputs(np.random.default_rng(0))
        out = args.keep or tmp / "png"
        for side, module in sides.items():  # warm-up: fonts, caches
            draw_all(module, d, out / side)
        cpu: dict[str, list[float]] = {"before": [], "now": []}
        wall: dict[str, list[float]] = {"before": [], "now": []}
        for rnd in range(args.rounds):
            for side in (("before", "now") if rnd % 2 == 0 else ("now", "before")):
                c, w = draw_all(sides[side], d, out / side)
                cpu[side].append(c)
                wall[side].append(w)
        print(f"five evaluation plots, {args.rounds} rounds, min / median / max:")
        for side in ("before", "now"):
            label = f"{side} ({args.vs})" if side == "before" else side
            print(f"  {label:20s} cpu {spread(cpu[side])} s   wall {spread(wall[side])} s")
        print(f"  before / now          cpu x{spread([a / b for a, b in zip(cpu['before'], cpu['now'])])}   "
              f"wall x{spread([a / b for a, b in zip(wall['before'], wall['now'])])}")
        if args.keep:
            print(f"  PNGs: {args.keep}/before, {args.keep}/now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
