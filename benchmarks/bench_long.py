"""Long chains: time and peak memory of ``distfold predict``'s path by length.

Each length runs in a fresh child process that loads the model, predicts a
synthetic sequence of that length window by window
(:func:`distfold.pipeline.windows.predict_windowed`), reconstructs it with the chosen
reconstructor (weights 1/variance, as ``distfold predict`` does) and computes the
per-residue confidence -- :meth:`distfold.pipeline.predictor.Predictor.predict`, the same
method ``distfold predict`` calls. The child reports its own peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the whole process:
interpreter, torch, model and every array), so lengths do not share a peak.

A ``--lengths 0`` child loads the model and predicts nothing: its peak is the
fixed cost. ``(peak - fixed) / L^2`` is the quadratic cost per residue pair
that :data:`distfold.pipeline.windows.BYTES_PER_PAIR` should not undershoot.

Usage::

    python benchmarks/bench_long.py                       # 512 1024 2048 4096, default model, smacof
    python benchmarks/bench_long.py --lengths 512 2048 --reconstruct refine --json

Sequences are drawn uniformly from the 20 amino acids with a fixed seed; the
model's cost does not depend on which residues they are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

AA = "ACDEFGHIKLMNPQRSTVWY"


def child(length: int, model_dir: str | None, reconstruct: str, window: int | None, stride: int | None,
          threads: int | None) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    from distfold.pipeline.predictor import Predictor

    predictor = Predictor.load(model_dir, reconstruct, "cpu", window, stride)
    load_s = time.perf_counter() - t0
    out = {"length": length, "model": predictor.identity["path"], "reconstructor": reconstruct,
           "load_s": round(load_s, 3),
           "torch_threads": torch.get_num_threads()}
    if length > 0:
        rng = np.random.default_rng(length)
        seq = "".join(rng.choice(list(AA), length))
        t = time.perf_counter()
        pred = predictor.predict(seq)
        out.update({k: round(v, 3) for k, v in pred.timings.items()})
        out["predict_total_s"] = round(time.perf_counter() - t, 3)
        out["windows"] = pred.diagnostics.get("windows")
        out["uncovered_pair_fraction"] = pred.diagnostics.get("uncovered_pair_fraction")
        out["reconstruct_iterations"] = pred.diagnostics.get("iterations")
        out["mean_confidence"] = pred.mean_confidence
    # ru_maxrss is in KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_bytes"] = ru.ru_maxrss * scale
    out["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)  # whole child, model loading included
    return out


def _ms_per_iteration(row: dict) -> str:
    """Reconstruction time per iteration (it includes the one-off start: classical MDS, V+)."""
    it = row.get("reconstruct_iterations")
    return f"{1000 * row['reconstruct_s'] / it:.0f}" if it else "-"


def run_child(length: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(length), "--reconstruct", args.reconstruct]
    for flag, value in (("--model", args.model), ("--window", args.window), ("--stride", args.stride),
                        ("--threads", args.threads)):
        if value is not None:
            cmd += [flag, str(value)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"length": length, "error": (proc.stderr.strip().splitlines() or ["?"])[-1], "wall_s": round(wall, 2)}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = round(wall, 2)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--reconstruct", default="smacof")
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each child")
    ap.add_argument("--no-fixed", action="store_true", help="skip the length-0 child (fixed cost)")
    ap.add_argument("--json", action="store_true", help="print JSON rows instead of the table")
    ap.add_argument("--out", default=None, help="also write the JSON rows to this file")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.model, args.reconstruct, args.window, args.stride, args.threads)))
        return 0

    lengths = list(args.lengths)
    if not args.no_fixed and 0 not in lengths:
        lengths = [0] + lengths
    rows = []
    for n in lengths:
        r = run_child(n, args)
        rows.append(r)
        if not args.json:
            print(f"L={n}: " + (r.get("error") or f"{r['wall_s']} s, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB"),
                  file=sys.stderr)
    base = next((r for r in rows if r["length"] == 0 and "error" not in r), None)
    prev = None
    for r in rows:
        if r["length"] > 0 and "error" not in r:
            if base is not None:
                r["bytes_per_pair_above_fixed"] = round((r["peak_rss_bytes"] - base["peak_rss_bytes"])
                                                        / r["length"] ** 2, 1)
                r["cpu_s_above_fixed"] = round(r["cpu_s"] - base["cpu_s"], 2)
            if prev is not None:  # local exponent of time vs length: wall, and CPU (robust to a busy machine)
                ratio = math.log(r["length"] / prev["length"])
                r["time_exponent_vs_previous"] = round(
                    math.log(r["predict_total_s"] / prev["predict_total_s"]) / ratio, 2)
                if "cpu_s_above_fixed" in r:
                    r["cpu_exponent_vs_previous"] = round(
                        math.log(r["cpu_s_above_fixed"] / prev["cpu_s_above_fixed"]) / ratio, 2)
            prev = r
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2, sort_keys=True)
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    head = (f"{'L':>5} {'windows':>7} {'model s':>8} {'recon s':>8} {'iters':>5} {'ms/iter':>7} {'conf s':>7} {'total s':>8} "
            f"{'exp':>5} {'cpu s':>7} {'cpu exp':>7} {'peak GiB':>8} {'B/pair':>7}")
    print(head)
    for r in rows:
        if "error" in r:
            print(f"{r['length']:>5} failed: {r['error']}")
            continue
        if r["length"] == 0:
            print(f"{0:>5} {'-':>7} {'-':>8} {'-':>8} {'-':>5} {'-':>7} {'-':>7} {'-':>8} {'-':>5} {r['cpu_s']:>7.1f} "
                  f"{'-':>7} {r['peak_rss_bytes'] / 2**30:>8.2f} {'-':>7}   (model loaded, nothing predicted)")
            continue
        print(f"{r['length']:>5} {r['windows']:>7} {r['model_s']:>8.1f} {r['reconstruct_s']:>8.1f} "
              f"{str(r.get('reconstruct_iterations', '-')):>5} {_ms_per_iteration(r):>7} {r['confidence_s']:>7.1f} {r['predict_total_s']:>8.1f} "
              f"{r.get('time_exponent_vs_previous', '-'):>5} {r['cpu_s']:>7.1f} "
              f"{r.get('cpu_exponent_vs_previous', '-'):>7} {r['peak_rss_bytes'] / 2**30:>8.2f} "
              f"{r.get('bytes_per_pair_above_fixed', '-'):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
