"""Structural alignment (``distfold compare --align structure``): speed and agreement
with TM-align.

For every pair of the committed fixture (tests/data/reference_scores/
tmalign_reference.json: TM-align 20210224's own scores, by tmtools), prints distfold's
TM-align TM-score (normalised by the reference), TM-align's, their difference, the
time of one call, and what ``compare`` gave before structural alignment existed (the
TM-score with residues paired by sequence alignment, the TM-score program's fixed
correspondence). Then times the 300 x 300 pairs (best of --repeat; wall clock and
CPU time, which a busy shared machine inflates less). Run from the repository root:

    python benchmarks/bench_tmalign.py [--repeat 3] [--tmtools] [--vs REV]

With --tmtools (needs the test extra), also times tmtools on the same pairs. With --vs REV
(a git revision, e.g. HEAD~3), core/structure/tmalign.py as it was at REV is loaded beside the
current one and the two are timed in turn (REV, now, REV, now, ...) on the 300 x 300 pairs, with
min/median/max of each and the median of the per-round ratios; their results are checked equal.
Targets (issue 15): within 0.01 of TM-align on different proteins of 50-500 residues;
under 1 s for a 300 x 300 pair.
"""

from __future__ import annotations

import argparse
import json
import os
import importlib.util
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distfold.structure.alignment import align_sequences
from distfold.structure.io import read_chain
from distfold.structure.metrics import tm_score
from distfold.structure.tmalign import tm_align

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmtools", action="store_true")
    ap.add_argument("--vs", metavar="REV", help="also time tmalign.py as of this git revision, side by side")
    args = ap.parse_args()
    ref = json.loads((ROOT / "tests/data/reference_scores/tmalign_reference.json").read_text())
    chains = {k: read_chain(ROOT / v["file"]) for k, v in ref["chains"].items()}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("model         reference      Lm   Lr  TM-align  distfold    diff  time_s  by_sequence")
    worst, worst_before = 0.0, 0.0
    for p in ref["pairs"]:
        a, b = chains[p["model"]], chains[p["reference"]]
        t = time.perf_counter()
        res = tm_align(a.ca, b.ca, a.sequence, b.sequence)
        dt = time.perf_counter() - t
        c = align_sequences(a.sequence, b.sequence)
        before = tm_score(a.ca[c.model_index], b.ca[c.ref_index], len(b)) if c.n_aligned else 0.0
        diff = res.tm_score - p["tm_score_ref"]
        worst = max(worst, abs(diff))
        worst_before = max(worst_before, abs(before - p["tm_score_ref"]))
        print(f"{p['model']:13s} {p['reference']:13s} {len(a):4d} {len(b):4d}  {p['tm_score_ref']:.4f}    "
              f"{res.tm_score:.4f}  {diff:+.4f}  {dt:6.2f}  {before:.4f}")
    print(f"largest |distfold - TM-align| {worst:.2e}; by sequence pairing (before) {worst_before:.3f}")
    for m, r in (("1us0", "1o6z"), ("1o6z", "2e37")):
        a, b = chains[m], chains[r]
        times, cpu = [], []
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            tm_align(a.ca, b.ca)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        line = f"{m} x {r} ({len(a)} x {len(b)}): distfold best {min(times):.2f} s wall, {min(cpu):.2f} s CPU"
        if args.tmtools:
            import tmtools

            tt, tc = [], []
            for _ in range(args.repeat):
                t, c = time.perf_counter(), time.process_time()
                tmtools.tm_align(np.ascontiguousarray(a.ca), np.ascontiguousarray(b.ca), a.sequence, b.sequence)
                tt.append(time.perf_counter() - t)
                tc.append(time.process_time() - c)
            line += f"; tmtools best {min(tt):.3f} s wall, {min(tc):.3f} s CPU"
        print(line)
    if args.vs:
        side_by_side(chains, args.vs, args.repeat)


def module_at(rev: str):
    """core/structure/tmalign.py as of git revision ``rev``, imported as its own module."""
    text = subprocess.run(["git", "show", f"{rev}:core/structure/tmalign.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "tmalign_at_rev.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("tmalign_at_rev", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tmalign_at_rev"] = mod
    spec.loader.exec_module(mod)
    return mod


def side_by_side(chains, rev: str, repeat: int) -> None:
    old = module_at(rev)
    print(f"side by side, {repeat} rounds, load {os.getloadavg()[0]:.1f}: wall / CPU seconds, min/median/max")
    for m, r in (("1us0", "1o6z"), ("1o6z", "2e37")):
        a, b = chains[m], chains[r]
        times = {rev: ([], []), "now": ([], [])}
        results = {}
        for _ in range(repeat):
            for name, fn in ((rev, old.tm_align), ("now", tm_align)):
                t, c = time.perf_counter(), time.process_time()
                results[name] = fn(a.ca, b.ca)
                times[name][0].append(time.perf_counter() - t)
                times[name][1].append(time.process_time() - c)
        same = (np.array_equal(results[rev].model_index, results["now"].model_index)
                and np.array_equal(results[rev].ref_index, results["now"].ref_index)
                and results[rev].tm_score == results["now"].tm_score)
        for name, (w, c) in times.items():
            print(f"  {m} x {r} {name:>8s}: wall {min(w):.3f}/{np.median(w):.3f}/{max(w):.3f}  "
                  f"CPU {min(c):.3f}/{np.median(c):.3f}/{max(c):.3f}")
        ratio = np.median(np.array(times["now"][1]) / np.array(times[rev][1]))
        print(f"  {m} x {r}: CPU ratio now / {rev} (median of rounds) {ratio:.3f}; identical result: {same}")


if __name__ == "__main__":
    main()
