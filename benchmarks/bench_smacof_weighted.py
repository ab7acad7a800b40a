"""Weighted SMACOF on predicted matrices: today's loop against a reference version.

The matrices are what ``distfold predict`` reconstructs: the default model's
(L, L) distances of a real sequence and the weights it passes,
:func:`distfold.pipeline.confidence.weights_from_variance` of the reconstruction
variance (1/variance, a range of 1,000x and more). Sequences: the longest real
chain with at least L residues, cut to L; above the longest chain, real chains
joined (``--data``: a folder holding ``chains.jsonl``; without it, the chains
committed under tests/data/chains). Predictions are cached in ``--cache``.

For each L, in one process and interleaved (``--repeats`` rounds), the
``smacof`` reconstructor as it is now (default config) and the reference: the
same file at git revision ``--reference-rev`` (default: the last one before
Anderson acceleration), imported from a temporary copy. Both start from the same
classical MDS and both answers are scored with one function,
:func:`distfold.geometry.distmat.stress` (sum_{i<j} w_ij (|x_i - x_j| - d_ij)^2).
Reported per L and side: iterations, converged (the stop rule met before
``max_iter``), weighted stress, and wall and CPU seconds of ``reconstruct``
(min / median / max over the rounds); then the time ratio reference / now.

    python benchmarks/bench_smacof_weighted.py --data PATH/TO/shared/data
    python benchmarks/bench_smacof_weighted.py --lengths 128 256 512 1024 --repeats 3 --threads 1 --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEST_CHAINS = REPO / "tests" / "data" / "chains"
#: plugins/mds_smacof/smacof.py before Anderson acceleration (plain Guttman transform, 300 iterations).
REFERENCE_REV = "b947cf47cd756d48a2e99c4fd737e2d7f3eb5e95"
SMACOF_PATH = "plugins/mds_smacof/smacof.py"


def sequences(data: Path | None) -> list[str]:
    """Real sequences, longest first."""
    if data is not None:
        rows = [json.loads(line) for line in open(data / "chains.jsonl")]
        seqs = [r["sequence"] for r in rows]
    else:
        from distfold.structure.io import read_chain

        seqs = [read_chain(p).sequence for p in sorted(TEST_CHAINS.glob("*.pdb.gz"))]
    return sorted(seqs, key=len, reverse=True)


def sequence_of_length(seqs: list[str], length: int) -> tuple[str, str]:
    """(sequence, how it was made): the shortest real chain with >= length residues cut to
    length, else the real chains joined (longest first) and cut."""
    fits = [s for s in seqs if len(s) >= length]
    if fits:
        return fits[-1][:length], "real chain, first L residues"
    return "".join(seqs)[:length], "real chains joined"


def predicted(length: int, seqs: list[str], cache: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(distances, weights, origin) of the default model's prediction, cached."""
    path = cache / f"pred_{length}.npz"
    if path.exists():
        z = np.load(path)
        return z["distance"], z["weights"], str(z["origin"])
    from distfold.pipeline.confidence import weights_from_variance
    from distfold.pipeline.predictor import Predictor

    seq, origin = sequence_of_length(seqs, length)
    pred = Predictor.load(None, None).distances(seq)
    d = pred.distance.astype(np.float64)
    w = weights_from_variance(pred.weight_variance)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, distance=d, weights=w, origin=origin)
    return d, w, origin


def reference_module(rev: str):
    """plugins/mds_smacof/smacof.py at ``rev``, imported from a temporary copy."""
    got = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{SMACOF_PATH}"], capture_output=True, text=True)
    if got.returncode:
        sys.exit(f"bench_smacof_weighted: cannot read {SMACOF_PATH} at revision {rev}: {got.stderr.strip()}")
    src = got.stdout
    tmp = Path(tempfile.mkdtemp()) / "smacof_reference.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("smacof_reference", tmp)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_once(reconstructor, d: np.ndarray, w: np.ndarray) -> dict:
    from distfold.geometry.distmat import as_checked, stress

    t, c = time.perf_counter(), time.process_time()
    rec = reconstructor.reconstruct(d, w)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"wall_s": wall, "cpu_s": cpu, "iterations": rec.diagnostics["iterations"],
            "converged": bool(rec.diagnostics["converged"]),
            "stress": float(stress(np.asarray(rec.coords), as_checked(d, w))[0])}


def spread(values: list[float]) -> dict:
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="folder with chains.jsonl (default: tests/data/chains)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "distfold_bench_smacof_weighted")
    ap.add_argument("--reference-rev", default=REFERENCE_REV)
    ap.add_argument("--threads", type=int, default=0, help="BLAS threads for both sides (0: leave alone)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from distfold.plugins.mds_smacof.smacof import SMACOF

    ref_mod = reference_module(args.reference_rev)
    sides = {"reference": ref_mod.SMACOF(), "now": SMACOF()}
    seqs = sequences(args.data)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    rows = []
    for length in args.lengths:
        d, w, origin = predicted(length, seqs, args.cache)
        runs = {k: [] for k in sides}
        for _ in range(args.repeats):
            for name, rec in sides.items():
                runs[name].append(run_once(rec, d, w))
        row = {"length": length, "input": origin}
        for name, rs in runs.items():
            row[name] = {"iterations": rs[0]["iterations"], "converged": rs[0]["converged"],
                         "stress": rs[0]["stress"], "wall_s": spread([r["wall_s"] for r in rs]),
                         "cpu_s": spread([r["cpu_s"] for r in rs])}
        row["wall_ratio"] = spread([a["wall_s"] / b["wall_s"] for a, b in zip(runs["reference"], runs["now"])])
        row["cpu_ratio"] = spread([a["cpu_s"] / b["cpu_s"] for a, b in zip(runs["reference"], runs["now"])])
        row["stress_ratio"] = row["now"]["stress"] / row["reference"]["stress"]
        rows.append(row)
        if not args.json:
            for name in sides:
                s = row[name]
                print(f"L={length:5d} {name:9s} it={s['iterations']:4d} converged={str(s['converged']):5s} "
                      f"stress={s['stress']:.6e} wall {s['wall_s']['min']:.3f}/{s['wall_s']['median']:.3f}/"
                      f"{s['wall_s']['max']:.3f} s  cpu {s['cpu_s']['min']:.3f}/{s['cpu_s']['median']:.3f}/"
                      f"{s['cpu_s']['max']:.3f} s", flush=True)
            print(f"L={length:5d} reference/now: wall x{row['wall_ratio']['min']:.2f}/{row['wall_ratio']['median']:.2f}/"
                  f"{row['wall_ratio']['max']:.2f}, cpu x{row['cpu_ratio']['min']:.2f}/"
                  f"{row['cpu_ratio']['median']:.2f}/{row['cpu_ratio']['max']:.2f} (min/median/max), "
                  f"stress now/reference {row['stress_ratio']:.5f}  [{origin}]", flush=True)
    if args.json:
        print(json.dumps({"reference_rev": args.reference_rev, "threads": args.threads or None,
                          "cpus": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
