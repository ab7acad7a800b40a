"""How often distfold gives a reconstruction the right hand, over every real chain outside BioEmu.

    python benchmarks/bench_handedness.py --data DATA_DIR [--methods smacof,classical]
                                          [--noise 0.1,0.2] [--splits train,val] [--json out.json]

Reference: the hand of the experimental structure itself. For each chain (train and val
splits of the shared data, 1,042 chains; BioEmu benchmark structures never read):

- exact: classical MDS from the exact C-alpha distances (the plugin's raw output, in
  whichever hand its eigenvectors gave), then the core's :func:`choose_hand`; right when
  the result superposes on the experimental trace by a proper rotation better than its
  mirror does.
- noisy: the same from distances times exp(s N(0, 1)) (symmetric), s in --noise, for each
  reconstructor in --methods (the seeds differ from those build_hand_table.py learned on).
  A reconstruction whose two hands lie within 0.5 Å RMSD of each other has no hand; it is
  counted apart ("no hand") and left out of the rates.

Columns: chains, without a hand, wrong with the learned rule (of which decided "uncertain"),
wrong among the confident decisions, and the old helix-window rule's wrong answers on the same
structures (as the old code did, a tie, margin 0, kept the reconstructor's arbitrary hand).
The train split is where the table was learned; val never was.

    python benchmarks/bench_handedness.py --evaluate-dir EVAL_OUT [--min-tm 0.25] [--helix-weights 1,2,4]

``--evaluate-dir``: the reconstructions a ``distfold evaluate -o EVAL_OUT`` wrote
(``structures/<id>.pdb``, the predicted helices as HELIX records, and ``per_chain.tsv``,
whose model TM-score and mirror TM-score say which hand is right), for chains with TM-score
>= ``--min-tm``. Beside the learned rule on the whole chain (what ``choose_hand`` decided),
it scores rules that trust the predicted helices more: margin(whole chain) + w x
margin(the quadruples inside predicted helices), and the helices alone (w = inf; the whole
chain where no helix has a quadruple). A rule right on more chains would be a candidate for
``choose_hand`` (issue 17: "a reconstruction whose predicted helices are left-handed is
mirrored").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_hand_table import (catalogue, noisy_distances, raw_reconstruction, read_traces,  # noqa: E402
                              seed_of, true_hand)


def evaluate(y: np.ndarray, x: np.ndarray) -> dict:
    from distfold.geometry.handedness import choose_hand, helix_window_margin

    right, a, b = true_hand(y, x)
    out, d = choose_hand(y)
    old = helix_window_margin(y)
    row = {"has_hand": right is not None, "rmsd": min(a, b), "decision": d.decision,
           "probability": d.probability, "margin": d.margin, "old_margin": old}
    if right is not None:
        # the returned coordinates are right-handed iff (input right) xor (mirrored)
        row["new_right"] = bool(right != d.mirrored)
        row["old_right"] = bool(right != (old < 0))  # the old code: a tie kept the input's hand
    return row


def summarise(rows: list[dict]) -> dict:
    handed = [r for r in rows if r["has_hand"]]
    wrong = [r for r in handed if not r["new_right"]]
    confident = [r for r in handed if r["decision"] != "uncertain"]
    return {
        "chains": len(rows), "no_hand": len(rows) - len(handed),
        "new_wrong": len(wrong), "new_wrong_uncertain": sum(r["decision"] == "uncertain" for r in wrong),
        "uncertain": sum(r["decision"] == "uncertain" for r in handed),
        "confident": len(confident), "confident_wrong": sum(not r["new_right"] for r in confident),
        "old_wrong": sum(not r["old_right"] for r in handed),
        "new_right_rate": 1.0 - len(wrong) / len(handed) if handed else None,
        "old_right_rate": 1.0 - sum(not r["old_right"] for r in handed) / len(handed) if handed else None,
    }


def helix_segments(pdb: Path) -> list[tuple[int, int]]:
    """0-based inclusive (start, end) of the HELIX records of a model written by distfold
    (residues numbered from 1)."""
    out = []
    for line in pdb.read_text().splitlines():
        if line.startswith("HELIX "):
            out.append((int(line[21:25]) - 1, int(line[33:37]) - 1))
    return out


def ss_weighted_hand(evaluate_dir: Path, min_tm: float, weights: list[float]) -> dict:
    """Per rule, how many chains with TM >= min_tm get the right hand (module docstring)."""
    import csv

    from distfold.geometry.handedness import chain_breaks, hand_table
    from distfold.structure.io import chains_of, load_structure

    tab = hand_table()
    rows = []
    with open(evaluate_dir / "per_chain.tsv") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            tm, tm_m = float(r["model_tm_score"]), float(r["model_tm_score_mirror"])
            if tm < min_tm:  # the written model's TM-score, as evaluate counts "hand right"
                continue
            pdb = evaluate_dir / "structures" / f"{r['id']}.pdb"
            x = np.asarray(chains_of(load_structure(pdb))[0].ca, dtype=np.float64)
            brk = chain_breaks(x)
            full = float(tab.terms(x, brk).sum())
            helix = sum(float(tab.terms(x[a:b + 1], brk[a:b]).sum()) for a, b in helix_segments(pdb) if b - a >= 3)
            written_right = tm >= tm_m  # the written hand is the right one
            row = {"id": r["id"], "tm": max(tm, tm_m), "written_right": written_right, "margin": full,
                   "helix_margin": helix}
            for w in weights + [math.inf]:
                m = (helix if helix != 0 else full) if math.isinf(w) else full + w * helix
                row[f"right_w{w}"] = bool(written_right == (m >= 0))  # m < 0: this rule mirrors it
            rows.append(row)
    return {"rows": rows, "chains": len(rows),
            "right": {("learned rule (as written)" if k == "written_right" else k): sum(q[k] for q in rows)
                      for k in ["written_right"] + [f"right_w{w}" for w in weights + [math.inf]]}}


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--evaluate-dir", type=Path, help="score helix-weighted hand rules on evaluate's reconstructions")
    ap.add_argument("--min-tm", type=float, default=0.25)
    ap.add_argument("--helix-weights", default="1,2,4")
    ap.add_argument("--methods", default="smacof,classical")
    ap.add_argument("--noise", default="0.1,0.2")
    ap.add_argument("--splits", default="train,val")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.evaluate_dir is not None:
        res = ss_weighted_hand(args.evaluate_dir, args.min_tm, [float(w) for w in args.helix_weights.split(",")])
        for q in res["rows"]:
            print(f"{q['id']}\tTM {q['tm']:.3f}\twritten right {q['written_right']}\tmargin {q['margin']:.2f}\t"
                  f"helix margin {q['helix_margin']:.2f}")
        print(f"chains with TM >= {args.min_tm}: {res['chains']}; right hand: " +
              ", ".join(f"{k} {v}" for k, v in res["right"].items()))
        if args.json:
            args.json.write_text(json.dumps(res, indent=1) + "\n")
        return 0
    if args.data is None:
        ap.error("--data (or --evaluate-dir) is required")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    records = catalogue(args.data, tuple(args.splits.split(",")))
    log(f"{len(records)} chains")
    traces = read_traces(records, log)
    settings = [("exact", "classical", 0.0)] + [(f"s={s}", m, float(s)) for s in args.noise.split(",")
                                                 for m in args.methods.split(",")]
    results = {}
    with threadpool_limits(1):
        for label, method, sigma in settings:
            t0 = time.time()
            rows = []
            for r in records:
                x = traces[r["uid"]]
                if sigma == 0:
                    from scipy.spatial.distance import cdist

                    d = cdist(x, x)
                else:
                    d = noisy_distances(x, sigma, seed_of(r["uid"], f"bench:{sigma}"))
                row = evaluate(raw_reconstruction(method, d), x)
                row.update(uid=r["uid"], split=r["split"], length=len(x))
                rows.append(row)
            key = f"{label} {method}"
            results[key] = {"rows": rows,
                            "summary": {sp: summarise([q for q in rows if sp == "all" or q["split"] == sp])
                                        for sp in ("all", *args.splits.split(","))}}
            log(f"  {key}: {time.time() - t0:.0f} s")
    print("| input | reconstructor | split | chains | no hand | wrong (uncertain) | right rate | "
          "confident: n, wrong | old rule wrong | old right rate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, res in results.items():
        label, method = key.split(" ")
        for sp, s in res["summary"].items():
            print(f"| {label} | {method} | {sp} | {s['chains']} | {s['no_hand']} | {s['new_wrong']} "
                  f"({s['new_wrong_uncertain']}) | {100 * s['new_right_rate']:.2f} % | {s['confident']}, "
                  f"{s['confident_wrong']} | {s['old_wrong']} | {100 * s['old_right_rate']:.2f} % |")
    if args.json:
        args.json.write_text(json.dumps({k: v["summary"] for k, v in results.items()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
