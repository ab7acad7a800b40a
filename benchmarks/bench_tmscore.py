"""TM-score speed: distfold's search vs tmtools (TM-align with a fixed alignment).

Both score the same real model/reference pairs with the same residue
correspondence (distfold's sequence alignment, cropped to L corresponding
residues), each pair also as a mirror image (a poor model, whose search
converges slowest). Times are the best of --repeat runs of one call, in ms,
wall clock. Run from the repository root:

    python benchmarks/bench_tmscore.py [--repeat 5]

Target (issue 4): distfold no more than 2x slower than tmtools at L = 300.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from distfold.structure import metrics as M
from distfold.structure.alignment import correspond
from distfold.structure.io import read_chain

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [
    # (L, model file, reference file, what)
    (100, "tests/data/compare/d1lfma.pdb.gz", "tests/data/compare/d1cih.pdb.gz",
     "cytochrome c 1LFM vs 1CIH (homologues)"),
    (300, "benchmarks/data/1civ_A.ca.pdb.gz", "benchmarks/data/1ldm_A.ca.pdb.gz",
     "malate dehydrogenase 1CIV vs lactate dehydrogenase 1LDM"),
    (600, "benchmarks/data/4fxd_A.ca.pdb.gz", "benchmarks/data/4fxd_B.ca.pdb.gz",
     "4FXD chain A vs chain B"),
]


def best_ms(fn, repeat: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * min(times)


def crop(length: int, model_path: str, ref_path: str):
    m, r = read_chain(ROOT / model_path), read_chain(ROOT / ref_path)
    c = correspond(m, r)
    if c.n_aligned < length:
        raise SystemExit(f"{model_path} vs {ref_path}: only {c.n_aligned} corresponding residues")
    im, ir = c.model_index[:length], c.ref_index[:length]
    x, y = m.ca[im], r.ca[ir]
    seq_x = "".join(m.sequence[i] for i in im)
    seq_y = "".join(r.sequence[j] for j in ir)
    return x, y, seq_x, seq_y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import tmtools

    import os

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; numpy "
          f"{np.__version__}, tmtools {getattr(tmtools, '__version__', '?')}; best of {args.repeat}, ms")
    header = f"{'L':>4}  {'pair':<56} {'model':<7} {'TM ours':>8} {'TM tmtools':>10} {'ours ms':>8} " \
             f"{'tmtools ms':>10} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for length, mp, rp, what in PAIRS:
        x, y, sx, sy = crop(length, mp, rp)
        for kind, xx in (("as is", x), ("mirror", M.mirror(x))):
            xx = np.ascontiguousarray(xx)
            ours = M.tm_score(xx, y)
            theirs = tmtools.tm_align(xx, y, sx, sy, alignment=[sx, sy]).tm_norm_chain2
            t_ours = best_ms(lambda: M.tm_score(xx, y), args.repeat)
            t_theirs = best_ms(lambda: tmtools.tm_align(xx, y, sx, sy, alignment=[sx, sy]), args.repeat)
            print(f"{length:>4}  {what:<56} {kind:<7} {ours:>8.4f} {theirs:>10.4f} {t_ours:>8.1f} "
                  f"{t_theirs:>10.1f} {t_ours / t_theirs:>6.2f}")


if __name__ == "__main__":
    main()
