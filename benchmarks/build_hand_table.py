"""Build core/geometry/hand_table.json, the handedness evidence table, from the TRAINING split.

    python benchmarks/build_hand_table.py --data DATA_DIR            # writes the table
    python benchmarks/build_hand_table.py --data DATA_DIR --check    # rebuilds and compares

What it learns (see :mod:`distfold.geometry.handedness` for how it is used):

1. Chains: every ``train`` chain of ``chains.jsonl`` that is not a BioEmu benchmark
   structure (``bioemu_subsets`` empty): 952 chains. The val split is never read.
2. Structures the table is counted on, each oriented to the true hand:
   - the experimental C-alpha trace itself;
   - its reconstructions by ``smacof`` and ``classical`` from distances with
     multiplicative noise d * exp(s N(0, 1)), s = 0.1 and 0.2 (symmetric; the seed is
     a function of the chain's uid, and differs from the benchmark's), mirrored where the
     mirror superposes better on the truth; a reconstruction whose two hands lie within
     0.5 Å RMSD of each other has no hand and is left out.
   Chains weigh 1 / (number of training chains of their family).
3. For each spacing k = 1..4: a histogram over (virtual angle, pseudo-torsion) of every
   quadruple (i, i+k, i+2k, i+3k) that spans no chain break, each of its two inner angles
   counted with weight 1/2; ANGLE_BINS x TORSION_BINS cells; a pseudo-count of PSEUDO x
   the mean cell count; table = log p(a, t) - log p(a, -t), rounded to 4 decimals.
4. The calibration slope s of P(right) = 1 / (1 + exp(-s margin)), by maximum likelihood
   over the noisy training reconstructions (each counted once; its mirror is symmetric).

Deterministic for the same data, numpy / scipy and BLAS (one BLAS thread is used);
``--check`` rebuilds and reports the largest difference from the committed table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "core" / "geometry" / "hand_table.json"
SPACINGS = (1, 2, 3, 4)
ANGLE_BINS, TORSION_BINS = 8, 24
ANGLE_RANGE = {1: (70.0, 160.0), 2: (20.0, 180.0), 3: (20.0, 180.0), 4: (20.0, 180.0)}
CLIP = 1.0
PSEUDO = 0.5
NOISE = (0.1, 0.2)
METHODS = ("smacof", "classical")
NO_HAND_RMSD = 0.5  # Å: a reconstruction whose two hands superpose within this of each other has none


# -- shared with bench_handedness.py -------------------------------------------

def catalogue(data: Path, splits: tuple[str, ...]) -> list[dict]:
    """chains.jsonl records of the given splits, never a BioEmu benchmark structure."""
    out = []
    with open(data / "chains.jsonl") as fh:
        for line in fh:
            r = json.loads(line)
            if r["split"] in splits and not r.get("bioemu_subsets"):
                r["path"] = data / "structures" / r["split"] / f"{r['uid']}.pdb.gz"
                out.append(r)
    return out


def read_traces(records: list[dict], log=print) -> dict[str, np.ndarray]:
    from distfold.structure.io import read_chain

    out = {}
    t0 = time.time()
    for n, r in enumerate(records, 1):
        out[r["uid"]] = read_chain(r["path"]).ca
        if n % 200 == 0:
            log(f"  read {n}/{len(records)} chains ({time.time() - t0:.0f} s)")
    return out


def seed_of(uid: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{uid}".encode()).digest()[:8], "little")


def noisy_distances(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Symmetric multiplicative noise d * exp(sigma N(0, 1)) on the C-alpha distances, zero diagonal."""
    from scipy.spatial.distance import cdist

    d = cdist(x, x)
    rng = np.random.default_rng(seed)
    out = np.triu(d * np.exp(sigma * rng.standard_normal(d.shape)), 1)
    return out + out.T


def raw_reconstruction(method: str, d: np.ndarray) -> np.ndarray:
    """The plugin's coordinates, before the core chooses a hand."""
    from distfold.geometry.distmat import check_distances

    if method == "smacof":
        from distfold.plugins.mds_smacof.smacof import SMACOF as factory
    elif method == "classical":
        from distfold.plugins.mds_classical.classical import ClassicalMDS as factory
    elif method == "refine":
        from distfold.plugins.mds_smacof.refine import Refine as factory
    else:
        raise ValueError(method)
    return factory(negative_share=False).reconstruct(check_distances(d).distances).coords


def rmsd_proper(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD after the best proper rotation (Kabsch, det +1)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, s, vt = np.linalg.svd(b.T @ a)
    s[-1] *= np.sign(np.linalg.det(u @ vt))
    return float(np.sqrt(max((a * a).sum() + (b * b).sum() - 2.0 * s.sum(), 0.0) / len(a)))


def true_hand(y: np.ndarray, x: np.ndarray) -> tuple[bool | None, float, float]:
    """(is y right-handed w.r.t. the truth x? None when its hands are within NO_HAND_RMSD, rmsd, mirror rmsd)."""
    a, b = rmsd_proper(y, x), rmsd_proper(y * [1.0, 1.0, -1.0], x)
    return (None if abs(a - b) < NO_HAND_RMSD else a < b), a, b


# -- building ------------------------------------------------------------------

def build(data: Path, log=print) -> dict:
    from threadpoolctl import threadpool_limits

    from distfold.geometry.handedness import HandTable, chain_breaks, hand_features

    records = catalogue(data, ("train",))
    log(f"{len(records)} training chains (BioEmu structures excluded)")
    traces = read_traces(records, log)
    fam = Counter(r["family"] for r in records)
    weight = {r["uid"]: 1.0 / fam[r["family"]] for r in records}

    oriented: list[tuple[np.ndarray, float]] = [(traces[r["uid"]], weight[r["uid"]]) for r in records]
    noisy: list[np.ndarray] = []
    skipped = 0
    t0 = time.time()
    with threadpool_limits(1):
        for method in METHODS:
            for sigma in NOISE:
                for r in records:
                    x = traces[r["uid"]]
                    y = raw_reconstruction(method, noisy_distances(x, sigma, seed_of(r["uid"], f"table:{sigma}")))
                    right, _, _ = true_hand(y, x)
                    if right is None:
                        skipped += 1
                        continue
                    y = y if right else y * [1.0, 1.0, -1.0]
                    oriented.append((y, weight[r["uid"]]))
                    noisy.append(y)
                log(f"  {method} s={sigma}: done ({time.time() - t0:.0f} s)")
    log(f"{len(oriented)} oriented structures ({skipped} reconstructions without a hand left out)")

    te = np.linspace(-180.0, 180.0, TORSION_BINS + 1)
    llr = {}
    counts = {}
    for k in SPACINGS:
        ae = np.linspace(*ANGLE_RANGE[k], ANGLE_BINS + 1)
        hist = np.zeros((ANGLE_BINS, TORSION_BINS))
        for y, w in oriented:
            a1, a2, t = hand_features(y, k, chain_breaks(y))
            it = np.clip(np.searchsorted(te, t, side="right") - 1, 0, TORSION_BINS - 1)
            for a in (a1, a2):
                ia = np.clip(np.searchsorted(ae, a, side="right") - 1, 0, ANGLE_BINS - 1)
                np.add.at(hist, (ia, it), 0.5 * w)
        counts[k] = float(hist.sum())
        hist += PSEUDO * hist.sum() / hist.size
        logp = np.log(hist / hist.sum())
        llr[k] = np.round(logp - logp[:, ::-1], 4)

    table = {
        "about": "log p(angle, torsion) - log p(angle, -torsion) of C-alpha quadruples (i, i+k, i+2k, i+3k) "
                 "in real L-amino-acid chains; rows: angle bins, columns: torsion bins (-180..180 deg). "
                 "Built by benchmarks/build_hand_table.py from the train split of distfold's shared data "
                 "(BioEmu structures excluded); used by distfold.geometry.handedness.",
        "spacings": list(SPACINGS),
        "angle_bins": ANGLE_BINS,
        "angle_range": {str(k): list(ANGLE_RANGE[k]) for k in SPACINGS},
        "torsion_bins": TORSION_BINS,
        "clip": CLIP,
        "pseudo_count": PSEUDO,
        "training": {"chains": len(records), "families": len(fam), "noise": list(NOISE), "methods": list(METHODS),
                     "structures": len(oriented), "left_out_without_hand": skipped,
                     "weighted_quadruples": {str(k): round(counts[k], 1) for k in SPACINGS}},
        "llr": {str(k): llr[k].tolist() for k in SPACINGS},
        "calibration_slope": 1.0,
    }
    # the calibration slope, on the noisy training reconstructions
    from scipy.optimize import minimize_scalar

    tab = HandTable.from_json(table)
    margins = np.array([tab.terms(y).sum() for y in noisy])
    res = minimize_scalar(lambda s: float(np.logaddexp(0.0, -s * margins).sum()), bounds=(1e-4, 10.0),
                          method="bounded", options={"xatol": 1e-6})
    table["calibration_slope"] = round(float(res.x), 4)
    table["training"]["noisy_wrong_hand_in_sample"] = int(np.count_nonzero(margins <= 0))
    table["training"]["noisy_reconstructions"] = len(noisy)
    return table


def dump(table: dict) -> str:
    """JSON with one table row per line (small, and diffs read well)."""
    text = json.dumps(table, indent=1)
    # collapse the innermost lists (table rows) onto one line each
    import re

    return re.sub(r"\[\s+([-0-9.,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with chains.jsonl and structures/")
    ap.add_argument("--check", action="store_true", help="rebuild and compare with the committed table")
    ap.add_argument("-o", "--output", type=Path, default=TABLE)
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    table = build(args.data, log)
    if args.check:
        old = json.loads(TABLE.read_text())
        diff = max(float(np.abs(np.asarray(old["llr"][k]) - np.asarray(table["llr"][k])).max()) for k in table["llr"])
        slope = abs(old["calibration_slope"] - table["calibration_slope"])
        print(f"largest table difference {diff:.4g}, slope difference {slope:.4g}")
        return 0 if diff <= 1e-3 and slope <= 1e-3 else 1
    args.output.write_text(dump(table))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes); calibration slope {table['calibration_slope']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
