"""Check a built dataset: sequences against a reference chains.jsonl, and the split against
every train x val pair (exhaustive, no prefilter).

    python benchmarks/check_dataset.py DATASET_DIR [--chains chains.jsonl] [--workers 2] [--json out.json]

Reports (stdout):
- per chain: is its id (file stem) in chains.jsonl and is the sequence identical; for differences,
  the kind (length, letters) and positions;
- cross-split pairs: for all train x val pairs, the local-alignment E-value, and for those with
  E <= 1e-2 the identity (the builder's definition, distfold.databuild.IDENTITY_DEFINITION);
  counts of pairs with identity >= the dataset's threshold, split by whether they also meet the
  dataset's E-value gate (the builder's relation) or not. A pair that fails the E-value gate
  cannot have identity above the threshold unless the shorter chain is short, so the script also
  aligns every pair whose shorter chain has fewer than 80 residues, whatever its E-value.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from distfold.databuild import _aligner, _clean, _local_aligner, alignment_evalue, sequence_identity
from distfold.dataset import Dataset


def _chunk(args):
    seqs, pairs = args
    glob, loc = _aligner(), _local_aligner()
    out = []
    for i, j in pairs:
        a, b = seqs[i], seqs[j]
        ev = alignment_evalue(loc.score(_clean(a), _clean(b)), len(a), len(b))
        ident = sequence_identity(a, b, glob) if (ev <= 1e-2 or min(len(a), len(b)) < 80) else None
        out.append((i, j, ev, ident))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--chains", help="reference chains.jsonl (uid, sequence)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="write the full result here")
    args = ap.parse_args()
    ds = Dataset(args.dataset)
    params = ds.meta.get("params", {})
    thr, max_ev = float(params.get("identity", 0.3)), float(params.get("max_evalue", 1e-5))
    result: dict = {"dataset": args.dataset, "chains": len(ds.records), "identity": thr, "max_evalue": max_ev}

    if args.chains:
        ref = {}
        with open(args.chains) as fh:
            for line in fh:
                r = json.loads(line)
                ref[r["uid"]] = r
        same, diff, missing = 0, [], []
        for r in ds.records:
            q = ref.get(r["id"])
            if q is None:
                missing.append(r["id"])
            elif q["sequence"] == r["sequence"]:
                same += 1
            else:
                pos = [k for k, (x, y) in enumerate(zip(q["sequence"], r["sequence"])) if x != y]
                diff.append({"id": r["id"], "len_ref": len(q["sequence"]), "len": len(r["sequence"]),
                             "positions": pos[:20], "ref": [q["sequence"][k] for k in pos[:20]],
                             "ours": [r["sequence"][k] for k in pos[:20]]})
        ids = {r["id"] for r in ds.records} | {d for r in ds.records for d in r.get("duplicates", [])}
        result["sequences"] = {"identical": same, "different": diff, "not_in_reference": missing,
                               "reference_uids_absent_from_dataset": sorted(set(ref) - ids)}
        print(f"sequences: {same} identical to the reference, {len(diff)} different, {len(missing)} ids not in "
              f"the reference; {len(set(ref) - ids)} reference uids absent from the dataset (excluded or filtered)")
        for d in diff[:20]:
            print("  differs:", json.dumps(d))

    seqs = [r["sequence"] for r in ds.records]
    tr = [i for i, r in enumerate(ds.records) if r["split"] == "train"]
    va = [i for i, r in enumerate(ds.records) if r["split"] == "val"]
    pairs = [(i, j) for i in tr for j in va]
    t0 = time.perf_counter()
    size = max(100, len(pairs) // (args.workers * 20) + 1)
    jobs = [(seqs, pairs[s:s + size]) for s in range(0, len(pairs), size)]
    rows = []
    with ProcessPoolExecutor(args.workers) as ex:
        for k, r in enumerate(ex.map(_chunk, jobs), 1):
            rows.extend(r)
            print(f"  {min(k * size, len(pairs))}/{len(pairs)} pairs", file=sys.stderr)
    related = [(i, j, ev, v) for i, j, ev, v in rows if v is not None and v >= thr and ev <= max_ev]
    above_nonsig = [(i, j, ev, v) for i, j, ev, v in rows if v is not None and v >= thr and ev > max_ev]
    result["cross_split"] = {
        "pairs": len(pairs), "seconds": round(time.perf_counter() - t0, 1),
        "related_pairs": [(ds.records[i]["id"], ds.records[j]["id"], round(v, 3), ev) for i, j, ev, v in related],
        "identity_above_but_not_significant": len(above_nonsig),
        "examples_not_significant": [(ds.records[i]["id"], ds.records[j]["id"], round(v, 3), ev,
                                      min(len(seqs[i]), len(seqs[j])))
                                     for i, j, ev, v in sorted(above_nonsig, key=lambda x: -x[3])[:10]],
        "max_identity_significant": max((v for i, j, ev, v in rows if v is not None and ev <= max_ev), default=0),
    }
    cs = result["cross_split"]
    print(f"cross-split: {cs['pairs']} train x val pairs in {cs['seconds']} s; {len(related)} related "
          f"(identity >= {thr} and E <= {max_ev:g}); {len(above_nonsig)} with identity >= {thr} but E > {max_ev:g}; "
          f"max identity among significant pairs {cs['max_identity_significant']:.3f}")
    for x in cs["related_pairs"][:20]:
        print("  related:", x)
    for x in cs["examples_not_significant"]:
        print("  not significant:", x)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
