"""How `distfold data build` scales with the number of chains, per family-search method.

The chains: the real chains of a structure folder (default ``../shared/data/structures``)
and, beyond them, families made from them by mutation: a copy of a random real chain
with 10-60 % of its residues substituted at random, and in 30 % of copies one indel
(1-10 residues deleted, or 1-5 inserted with C-alpha coordinates interpolated between
their neighbours). Every chain is written as a C-alpha PDB file with the parent's
coordinates, so parsing is exercised too. A set of N chains is the first N of one
pool (real chains first), so the sets are nested.

For each N in --sizes and each --cluster method, ``distfold data build`` runs as its own
process (``--workers`` processes, default 2); the table gives the whole-process time and
the build's own parse (DSSP labels included) / family / split-check seconds (``dataset.json``;
the rest of the wall time is start-up and writing the dataset; for MMseqs2 also the family search's
parts, ``family_parts_s``: clustering into representatives, the search, the rule's re-alignments), and a
least-squares fit of log(time) on log(N) gives the time-vs-chains exponent of each method.
A method that runs past --budget seconds at one N is not run at larger N. Usage::

    python benchmarks/bench_data_build.py [--data DIR | --reals DATASET] [--sizes 1000,2500,5000,10000,20000]
        [--cluster mmseqs,builtin] [--workers 2] [--budget 900] [--workdir DIR]

``--agree DS_A DS_B`` instead compares the families of two dataset directories built from
the same chains (e.g. ``--cluster mmseqs`` and ``--cluster builtin``): chains whose family
differs, as pairs of chains together in one and apart in the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AMINO = "ACDEFGHIKLMNPQRSTVWY"
THREE = {"A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS", "I": "ILE",
         "K": "LYS", "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN", "R": "ARG", "S": "SER",
         "T": "THR", "V": "VAL", "W": "TRP", "Y": "TYR", "X": "UNK"}


def real_chains(folder: Path, workers: int) -> list[tuple[str, str, np.ndarray]]:
    """(id, sequence, C-alpha coords of the observed residues) of every chain in ``folder``."""
    from concurrent.futures import ProcessPoolExecutor

    from distfold.data.build import find_inputs, parse_file, structure_stem

    files = find_inputs([folder])
    with ProcessPoolExecutor(max_workers=workers) as ex:
        parsed = list(ex.map(parse_file, [str(f) for f in files], chunksize=8))
    out = []
    for f, res in zip(files, parsed):
        for ch in res["chains"] if not res["error"] else []:
            ok = np.isfinite(ch["coords"]).all(1)
            seq = "".join(c for c, k in zip(ch["sequence"], ok) if k)
            if len(seq) >= 30:
                out.append((f"{structure_stem(f)}_{ch['chain']}", seq, ch["coords"][ok]))
    return out


def dataset_chains(path: Path) -> list[tuple[str, str, np.ndarray]]:
    """The same, from a built dataset directory (no parsing): its observed residues."""
    from distfold.data.dataset import Dataset

    ds = Dataset(path)
    out = []
    for k in range(len(ds)):
        smp = ds[k]
        ok = smp.mask
        seq = "".join(c for c, m in zip(smp.sequence, ok) if m)
        if len(seq) >= 30:
            out.append((smp.record["id"], seq, smp.coords[ok]))
    return out


def mutant(rng: np.random.Generator, seq: str, xyz: np.ndarray) -> tuple[str, np.ndarray]:
    """A family member of (seq, xyz): 10-60 % substituted, one indel in 30 % of copies."""
    s = np.array(list(seq))
    sub = rng.random(len(s)) < rng.uniform(0.1, 0.6)
    s[sub] = rng.choice(list(AMINO), size=int(sub.sum()))
    xyz = np.asarray(xyz, dtype=np.float64)
    if rng.random() < 0.3 and len(s) > 40:
        at = int(rng.integers(5, len(s) - 15))
        if rng.random() < 0.5:
            k = int(rng.integers(1, 11))
            s, xyz = np.delete(s, np.s_[at:at + k]), np.delete(xyz, np.s_[at:at + k], axis=0)
        else:
            k = int(rng.integers(1, 6))
            t = np.linspace(0, 1, k + 2)[1:-1, None]
            ins = xyz[at - 1] * (1 - t) + xyz[at] * t
            s = np.insert(s, at, rng.choice(list(AMINO), size=k))
            xyz = np.insert(xyz, at, ins, axis=0)
    return "".join(s), xyz


def write_pdb(path: Path, seq: str, xyz: np.ndarray) -> None:
    lines = [f"ATOM  {i + 1:5d}  CA  {THREE.get(c, 'UNK')} A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
             for i, (c, (x, y, z)) in enumerate(zip(seq, xyz))]
    path.write_text("\n".join(lines) + "\nTER\nEND\n")


def make_pool(reals, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pool = [(cid, seq, xyz, "real") for cid, seq, xyz in reals[:n]]
    k = 0
    while len(pool) < n:
        cid, seq, xyz = reals[int(rng.integers(len(reals)))]
        mseq, mxyz = mutant(rng, seq, xyz)
        pool.append((f"m{k:06d}_{cid}", mseq, mxyz, "mutant"))
        k += 1
    return pool


def write_set(pool, n: int, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for cid, seq, xyz, _ in pool[:n]:
        p = folder / f"{cid}.pdb"
        if not p.exists():
            write_pdb(p, seq, xyz)
    return folder


def run_build(folder: Path, out: Path, cluster: str, workers: int, budget: float) -> dict:
    cmd = [sys.executable, "-m", "distfold", "data", "build", str(folder), "-o", str(out), "--cluster", cluster,
           "--workers", str(workers), "--json"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "over_budget": True}
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    build = json.loads((out / "dataset.json").read_text())["build"]
    summary = json.loads(r.stdout)
    # build_seconds ends before the files are written: the rest of the wall time is start-up and writing
    return {"seconds": round(wall, 1), "parse_s": build["parse_seconds"], "family_s": build["family_seconds"],
            "split_check_s": build["split_check_seconds"],
            "startup_and_write_s": round(wall - build["build_seconds"], 1), "chains": summary["chains"],
            "families": summary["families"], "clustering": summary["clustering"],
            "split_check": build.get("split_check"), "family_parts_s": build.get("family_parts_seconds"),
            "searched_against_all": build.get("chains_searched_against_all")}


def exponent(ns: list[int], ts: list[float]) -> float | None:
    if len(ns) < 2:
        return None
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def agree(a: Path, b: Path) -> dict:
    """Pairs of chains in one family in one dataset and in different families in the other."""
    def fams(p):
        return {r["id"]: r["family"] for r in map(json.loads, open(p / "index.jsonl"))}

    fa, fb = fams(a), fams(b)
    common = sorted(set(fa) & set(fb))
    ga: dict[str, list[str]] = {}
    for c in common:
        ga.setdefault(fa[c], []).append(c)
    gb: dict[str, list[str]] = {}
    for c in common:
        gb.setdefault(fb[c], []).append(c)

    def apart(groups, other):
        out = []
        for mem in groups.values():
            by: dict[str, list[str]] = {}
            for c in mem:
                by.setdefault(other[c], []).append(c)
            if len(by) > 1:
                out.append(sorted(sorted(v) for v in by.values()))
        return out

    return {"chains": len(common), "families_a": len(ga), "families_b": len(gb),
            "families_of_a_split_in_b": apart(ga, fb), "families_of_b_split_in_a": apart(gb, fa)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "structures"))
    ap.add_argument("--sizes", default="1000,2500,5000,10000,20000")
    ap.add_argument("--cluster", default="mmseqs,builtin")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=float, default=900.0, help="seconds one build may take")
    ap.add_argument("--workdir", default=None, help="keep the generated chains and datasets here")
    ap.add_argument("--reals", default=None, metavar="DATASET",
                    help="take the real chains from a built dataset directory instead of parsing --data "
                         "(the same chains, read in seconds)")
    ap.add_argument("--agree", nargs=2, metavar=("DS_A", "DS_B"), default=None)
    args = ap.parse_args()
    if args.agree:
        print(json.dumps(agree(Path(args.agree[0]), Path(args.agree[1])), indent=1))
        return
    import tempfile

    sizes = sorted(int(x) for x in args.sizes.split(","))
    methods = args.cluster.split(",")
    tmp = None
    work = Path(args.workdir) if args.workdir else Path((tmp := tempfile.TemporaryDirectory()).name)
    t0 = time.perf_counter()
    reals = dataset_chains(Path(args.reals)) if args.reals else real_chains(Path(args.data), args.workers)
    pool = make_pool(reals, max(sizes))
    print(f"{len(reals)} real chains; pool of {len(pool)} made in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows, live = [], set(methods)
    for n in sizes:
        folder = write_set(pool, n, work / "chains")
        # the nested sets share one folder: each run reads a listing of its first n files
        sub = work / f"set_{n}"
        sub.mkdir(exist_ok=True)
        for cid, *_ in pool[:n]:
            link = sub / f"{cid}.pdb"
            if not link.exists():
                link.symlink_to(folder / f"{cid}.pdb")
        for m in methods:
            if m not in live:
                continue
            res = run_build(sub, work / f"ds_{m}_{n}", m, args.workers, args.budget)
            res.update(n=n, method=m, real=sum(1 for p in pool[:n] if p[3] == "real"))
            rows.append(res)
            print(json.dumps(res), file=sys.stderr)
            if res.get("over_budget"):
                live.discard(m)
    fits = {}
    for m in methods:
        done = [(r["n"], r["seconds"]) for r in rows if r["method"] == m and r["seconds"]]
        e = exponent([n for n, _ in done], [t for _, t in done])
        fits[m] = {"exponent": None if e is None else round(e, 2), "points": len(done)}
    print(json.dumps({"rows": rows, "fit_time_vs_chains": fits, "workers": args.workers,
                      "cpu_count": os.cpu_count()}, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
