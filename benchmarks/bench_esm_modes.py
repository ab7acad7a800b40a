"""The esm backbone's two ways to train, measured on a tiny random ESM-2: which is the default.

``finetune="lora"`` (LoRA adapters on the frozen language model, last layer's features) and
``finetune="frozen"`` (no gradients into the language model; a learned mix of every layer's
states through a trainable projection) are trained the same way -- same tiny random ESM-2
(hidden 64, 4 layers, 4 heads, FFN 256, the real ESM-2 tokenizer), same regression head,
normaliser, seed, crops and steps -- on real chains, and scored on held-out chains with
distfold's own validation (distance MAE and C-alpha lDDT beside the separation prior).
Each mode runs in its own subprocess, so its peak RSS is its own.

The chains: the first ``--train`` files of ``--data/train`` and ``--val`` of ``--data/val``
(sorted by name; the project's ``../shared/data/structures``), or distfold's five test
chains when that folder is absent. Every chain is its own family (weight 1).

Random weights say nothing about what pretrained ESM-2 features are worth; what this
measures is how well each way of training adapts the same network in the same budget,
and what it costs per step. Usage::

    python benchmarks/bench_esm_modes.py [--steps 150] [--train 120] [--val 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchlib import run_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "structures"
MODES = {"lora": {"finetune": "lora"}, "frozen": {"finetune": "frozen"}}


def make_esm(path: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from trainkit import make_tiny_esm

    return make_tiny_esm(path, hidden_size=64, layers=4, heads=4)


def make_data(path: Path, data: Path, n_train: int, n_val: int) -> Path:
    import numpy as np

    from distfold.data.dataset import write_dataset
    from distfold.structure.io import read_chain

    if (data / "train").is_dir() and (data / "val").is_dir():
        files = [(f, "train") for f in sorted((data / "train").glob("*.pdb*"))[:n_train]]
        files += [(f, "val") for f in sorted((data / "val").glob("*.pdb*"))[:n_val]]
    else:  # distfold's test chains
        splits = {"c55406f94174e": "train", "c51d4cae83570": "train", "c9fa041c82503": "train",
                  "cb98f573e0d35": "val", "c70b106ab8731": "val"}
        files = [(ROOT / "tests" / "data" / "chains" / f"{uid}.pdb.gz", split) for uid, split in splits.items()]
    records, coords = [], []
    for f, split in files:
        chain = read_chain(f)
        uid = f.name.split(".")[0]
        records.append({"id": uid, "sequence": chain.sequence, "source": f.name, "chain": chain.chain_id,
                        "family": uid, "split": split, "weight": 1.0, "duplicates": []})
        coords.append(np.asarray(chain.ca, np.float32))
    return write_dataset(path, records, coords, params={"benchmark": "bench_esm_modes"})


def run_mode(mode: str, esm: str, ds: str, out: str, steps: int, crop: int, batch: int, lr: float) -> dict:
    import torch

    from distfold.pipeline.train import TrainOptions, train

    torch.set_num_threads(1)
    opts = TrainOptions(backbone="esm", backbone_params={"base_model": esm, **MODES[mode]},
                        head="regression", head_params={"pair_dim": 16, "n_blocks": 2}, normaliser="log1p",
                        crop=crop, batch_size=batch, lr=lr, warmup=10, max_steps=steps, eval_every=0, seed=0,
                        log_every=steps, val_max_length=256)
    t0 = time.perf_counter()
    summary = train(ds, out, opts, quiet=True)
    wall = time.perf_counter() - t0
    val = summary["final_val"] or {}
    return {"mode": mode, "steps": steps, "trainable_parameters": summary["trainable_parameters"],
            "train_s": summary["train_s"], "s_per_step": round(summary["train_s"] / steps, 3),
            "wall_s": round(wall, 1), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "val_mae": val.get("mae"), "val_lddt": val.get("lddt"), "prior_mae": val.get("prior_mae"),
            "prior_lddt": val.get("prior_lddt"), "val_chains": val.get("n_chains")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--train", type=int, default=120, help="train chains (from --data)")
    ap.add_argument("--val", type=int, default=30, help="val chains (from --data)")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--esm", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ds", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.esm, args.ds, args.out, args.steps, args.crop, args.batch_size,
                                  args.lr)))
        return
    with tempfile.TemporaryDirectory(prefix="distfold-esm-modes-") as tmp:
        tmp = Path(tmp)
        esm = make_esm(tmp / "tiny-esm2")
        ds = make_data(tmp / "ds", args.data, args.train, args.val)
        results = []
        for mode in MODES:
            cmd = [sys.executable, __file__, "--mode", mode, "--esm", str(esm), "--ds", str(ds),
                   "--out", str(tmp / mode), "--steps", str(args.steps), "--crop", str(args.crop),
                   "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
            res = run_json(cmd, mode)
            results.append(res)
            print(f"{mode:7s} {res['trainable_parameters']:>8,} trainable  {res['s_per_step']:.3f} s/step  "
                  f"peak {res['peak_rss_mib']} MiB  val MAE {res['val_mae']:.3f} A  lDDT {res['val_lddt']:.4f}  "
                  f"(prior {res['prior_mae']:.3f} A, {res['prior_lddt']:.4f}; {res['val_chains']} chains)",
                  file=sys.stderr)
    best = min(results, key=lambda r: r["val_mae"])
    summary = {"results": results, "lower_val_mae": best["mode"],
               "setup": {"steps": args.steps, "crop": args.crop, "batch_size": args.batch_size, "lr": args.lr,
                         "esm": "hidden 64, 4 layers, 4 heads, FFN 256, random", "threads": 1}}
    print(json.dumps(summary, indent=2) if args.json else f"lower validation MAE: {best['mode']}")


if __name__ == "__main__":
    main()
