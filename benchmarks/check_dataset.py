"""Check a built dataset: sequences against a reference chains.jsonl, and the split against
every train x val pair (exhaustive, no prefilter).

    python benchmarks/check_dataset.py DATASET_DIR [--chains chains.jsonl] [--workers 2] [--json out.json]

Reports (stdout):
- per chain: is its id (file stem) in chains.jsonl and is the sequence identical; for differences,
  the kind (length, letters) and positions;
- cross-split pairs: for all train x val pairs, the local-alignment E-value and the identity (the
  builder's definition, distfold.data.build.IDENTITY_DEFINITION); counts of pairs with identity >=
  the dataset's threshold, split by whether they also meet the dataset's E-value gate (the
  builder's relation) or not, with the length of the shorter chain and the E-values of the latter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from distfold.data.build import _aligner, _clean, _local_aligner, alignment_evalue, sequence_identity
from distfold.data.dataset import Dataset


def _chunk(args):
    seqs, pairs = args
    glob, loc = _aligner(), _local_aligner()
    out = []
    for i, j in pairs:
        a, b = seqs[i], seqs[j]
        ev = alignment_evalue(loc.score(_clean(a), _clean(b)), len(a), len(b))
        ident = sequence_identity(a, b, glob)
        out.append((i, j, ev, ident))
    return out


def _ca_residues(path: str) -> int:
    """Distinct (chain, residue number, insertion code, segment) with a CA atom in model 1, by plain text."""
    from distfold.fileio import read_text
    from distfold.structure.io import residue_letter, split_pdb_chain_segments

    text = read_text(path)
    if path.endswith((".cif", ".cif.gz", ".mmcif", ".mmcif.gz")):
        return -1
    text, _ = split_pdb_chain_segments(text)
    seen = set()
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if line.startswith(("ATOM  ", "HETATM")) and line[12:16] == " CA " and residue_letter(line[17:20]):
            seen.add((line[21], line[22:27]))
    return len(seen)


def check_sequences(ds, chains_path: str) -> dict:
    """Compare each reference uid's sequence with the chains the dataset read from its file."""
    from Bio.Align import PairwiseAligner

    ref = {}
    with open(chains_path) as fh:
        for line in fh:
            r = json.loads(line)
            ref[r["uid"]] = r
    by_stem: dict[str, list[dict]] = {}
    for r in ds.records:
        by_stem.setdefault(r["id"].split("_")[0], []).append(r)
        for d in r.get("duplicates", []):
            by_stem.setdefault(d.split("_")[0], []).append(r)
    al = PairwiseAligner(mode="global")
    al.match_score, al.mismatch_score, al.open_gap_score, al.extend_gap_score = 1, -2, -3, -1
    out = {"identical": 0, "differences": {}, "files": 0, "files_fully_read": 0, "reference_uids_in_dataset": 0}
    files_seen = set()
    for uid, q in sorted(ref.items()):
        recs = by_stem.get(uid)
        if not recs:
            continue
        out["reference_uids_in_dataset"] += 1
        src = recs[0]["source"]
        if src not in files_seen and all(r["source"] == src for r in recs):
            files_seen.add(src)
        if any(r["sequence"] == q["sequence"] for r in recs):
            out["identical"] += 1
            continue
        best = max(recs, key=lambda r: al.score(q["sequence"], r["sequence"]))
        a = al.align(q["sequence"], best["sequence"])[0]
        c = a.counts()
        ra, oa = a[0], a[1]
        ref_only = "".join(ra[k] for k in range(len(ra)) if oa[k] == "-")
        ours_only = "".join(oa[k] for k in range(len(oa)) if ra[k] == "-")
        item = {"uid": uid, "ref_len": len(q["sequence"]), "ours": best["id"], "ours_len": len(best["sequence"]),
                "mismatches": c.mismatches, "ref_only": ref_only[:30], "ours_only_n": len(ours_only),
                "chains_in_file": len({r["id"] for r in recs})}
        if not ours_only and not c.mismatches and set(ref_only) <= set("HC"):
            kind = "reference has H/C residues absent from the structure file"
        elif not ours_only and not c.mismatches:
            kind = "reference has other residues absent from the structure file"
        elif not ref_only and not c.mismatches:
            kind = "reference is part of the file's chain (file holds more)"
        else:
            kind = "other"
        out["differences"].setdefault(kind, []).append(item)
    # reader completeness: every C-alpha residue of the file read once (PDB files)
    sources: dict[str, int] = {}
    for r in ds.records:
        sources[r["source"]] = sources.get(r["source"], 0) + r["n_observed"]
    for r in ds.records:
        for d in r.get("duplicates", []):
            pass
    n_ok = n_files = 0
    for src, n in sources.items():
        expect = _ca_residues(src)
        if expect < 0:
            continue
        n_files += 1
        n_ok += expect == n
    out["files"], out["files_fully_read"] = n_files, n_ok
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--chains", help="reference chains.jsonl (uid, sequence)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="write the full result here")
    ap.add_argument("--no-split", action="store_true", help="skip the cross-split check")
    args = ap.parse_args()
    ds = Dataset(args.dataset)
    params = ds.meta.get("params", {})
    thr, max_ev = float(params.get("identity", 0.3)), float(params.get("max_evalue", 1e-5))
    result: dict = {"dataset": args.dataset, "chains": len(ds.records), "identity": thr, "max_evalue": max_ev}

    if args.chains:
        result["sequences"] = check_sequences(ds, args.chains)
        sq = result["sequences"]
        print(f"sequences: {sq['identical']} of {sq['reference_uids_in_dataset']} reference uids present have an "
              f"identical chain; {sq['files_fully_read']}/{sq['files']} files: every C-alpha residue of model 1 "
              f"read exactly once")
        for kind, items in sq["differences"].items():
            print(f"  {kind}: {len(items)}  e.g. {items[:3]}")
    if args.no_split:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=2)
        return
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
        "not_significant_shorter_length_max": max((min(len(seqs[i]), len(seqs[j])) for i, j, ev, v in above_nonsig),
                                                   default=0),
        "not_significant_min_evalue": min((ev for i, j, ev, v in above_nonsig), default=None),
        "max_identity_significant": max((v for i, j, ev, v in rows if v is not None and ev <= max_ev), default=0),
    }
    cs = result["cross_split"]
    print(f"cross-split: {cs['pairs']} train x val pairs in {cs['seconds']} s; {len(related)} related "
          f"(identity >= {thr} and E <= {max_ev:g}); {len(above_nonsig)} with identity >= {thr} but E > {max_ev:g}; "
          f"max identity among significant pairs {cs['max_identity_significant']:.3f}; the not-significant ones: "
          f"shorter chain <= {cs['not_significant_shorter_length_max']} residues, "
          f"E >= {cs['not_significant_min_evalue']}")
    for x in cs["related_pairs"][:20]:
        print("  related:", x)
    for x in cs["examples_not_significant"]:
        print("  not significant:", x)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
