"""Model time of ``distfold predict`` per chain (``Predictor.distances``: the windows, the model,
the merge; no reconstruction), for one or more model directories side by side, interleaved.

    python benchmarks/bench_model_time.py MODEL_DIR [MODEL_DIR ...] [--length 256] [--repeats 7]

Prints min / median / max seconds per model on one random 256-residue sequence (seeded).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from distfold.pipeline.predictor import Predictor

    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), args.length))
    preds = [Predictor.load(m, reconstructor=None) for m in args.models]
    for p in preds:
        p.distances(seq)  # warm-up
    times: list[list[float]] = [[] for _ in preds]
    for _ in range(args.repeats):
        for k, p in enumerate(preds):
            t = time.perf_counter()
            p.distances(seq)
            times[k].append(time.perf_counter() - t)
    for m, t in zip(args.models, times):
        print(f"{m}: model time per {args.length}-residue chain min {min(t):.3f} / median {np.median(t):.3f} / "
              f"max {max(t):.3f} s over {len(t)} runs")


if __name__ == "__main__":
    main()
