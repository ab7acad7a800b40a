"""Whole-process start-up: `distfold` commands side by side with `python -c "import torch"`.

Each command runs in a fresh process (``subprocess.run``) timed from outside with
``time.perf_counter``; the commands run in turn, round after round (A B C ... A B C ...),
so a drift in the machine's speed touches them all alike. Printed per command: the
whole-process wall time (min / median / max over the rounds) and its ratio to
``python -c "import torch"`` taken round by round (min / median / max).

Inputs are made in a temporary folder from a real chain shipped with the tests
(``tests/data/chains/c9fa041c82503.pdb.gz``, 1US0 chain A, 313 residues):

- ``predict``: its first 256 residues as one FASTA record, the shipped default model,
  ``--device cpu`` (one 256-residue chain, as in issue 19's target 1);
- ``reconstruct``: its true 313 x 313 C-alpha distance matrix (.npy);
- ``compare``: the chain scored against itself;
- ``--help`` and ``plugins``.

``--rev REV`` (repeatable) also times ``predict`` as distfold was at git revision REV
(e.g. the commits before and after a change), in the same rounds: ``git archive``
extracts REV's ``core/``, ``cli/`` and ``plugins/`` into the temporary folder, laid out
as the ``distfold`` package and put first on ``PYTHONPATH`` (the script checks that
this copy is what runs). ``predict`` without ``@REV`` is the working tree.

    python benchmarks/bench_startup.py            # 5 rounds
    python benchmarks/bench_startup.py -n 3 --only predict,torch
    python benchmarks/bench_startup.py -n 5 --only predict --rev f77170b --rev HEAD
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import package_at

ROOT = Path(__file__).resolve().parent.parent
CHAIN = ROOT / "tests" / "data" / "chains" / "c9fa041c82503.pdb.gz"
PREDICT_LENGTH = 256
THREE = dict(ALA="A", ARG="R", ASN="N", ASP="D", CYS="C", GLN="Q", GLU="E", GLY="G", HIS="H", ILE="I",
             LEU="L", LYS="K", MET="M", PHE="F", PRO="P", SER="S", THR="T", TRP="W", TYR="Y", VAL="V")


def read_chain(path: Path) -> tuple[str, np.ndarray]:
    """Sequence and C-alpha coordinates of the first model of a one-chain PDB file."""
    seq, xyz = [], []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("ENDMDL"):
                break
            if line.startswith("ATOM") and line[12:16] == " CA " and line[16] in " A":
                seq.append(THREE.get(line[17:20], "X"))
                xyz.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
    return "".join(seq), np.asarray(xyz)


def make_inputs(tmp: Path) -> dict[str, list[str]]:
    seq, xyz = read_chain(CHAIN)
    if len(seq) < PREDICT_LENGTH:
        raise SystemExit(f"{CHAIN.name}: {len(seq)} residues, fewer than {PREDICT_LENGTH}")
    fasta = tmp / "query.fasta"
    fasta.write_text(f">1us0_A_1_{PREDICT_LENGTH}\n{seq[:PREDICT_LENGTH]}\n")
    distmat = tmp / "chain.distmat.npy"
    np.save(distmat, np.linalg.norm(xyz[:, None] - xyz[None], axis=-1))
    reference = tmp / "reference.pdb"
    reference.write_bytes(gzip.decompress(CHAIN.read_bytes()))
    py = sys.executable
    df = [py, "-m", "distfold"]
    return {
        "torch": [py, "-c", "import torch"],
        "predict": [*df, "predict", "-i", str(fasta), "-o", str(tmp / "out"), "--overwrite", "--device", "cpu"],
        "help": [*df, "--help"],
        "plugins": [*df, "plugins"],
        "reconstruct": [*df, "reconstruct", str(distmat), "-o", str(tmp / "rec.pdb")],
        "compare": [*df, "compare", str(reference), str(reference)],
    }


def run_once(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {run.returncode}: {run.stderr.strip()[-1000:]}")
    return elapsed


def spread(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--rounds", type=int, default=5, help="rounds (each runs every command once)")
    ap.add_argument("--rev", metavar="REV", action="append", default=[],
                    help="also time predict as distfold was at this git revision (repeatable)")
    ap.add_argument("--only", default=None, help="comma-separated subset of: torch,predict,help,plugins,"
                                                 "reconstruct,compare (torch is always run)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        commands = make_inputs(tmp)
        if args.only:
            keep = {"torch", *args.only.split(",")}
            unknown = keep - set(commands)
            if unknown:
                raise SystemExit(f"--only: unknown command(s) {', '.join(sorted(unknown))}")
            commands = {k: v for k, v in commands.items() if k in keep}
        envs: dict[str, dict[str, str] | None] = {name: None for name in commands}
        for rev in args.rev:
            name = f"predict@{rev}"
            commands[name] = [sys.executable, "-m", "distfold", "predict", "-i", str(tmp / "query.fasta"),
                              "-o", str(tmp / f"out_{rev}"), "--overwrite", "--device", "cpu"]
            envs[name] = package_at(rev, tmp)
        for name, cmd in commands.items():  # warm-up: file caches, .pyc files
            run_once(cmd, envs[name])
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(run_once(cmd, envs[name]))
        print(f"{args.rounds} rounds, interleaved; whole-process wall seconds and ratio to "
              f"`python -c \"import torch\"` (min / median / max)")
        width = max(12, *(len(name) for name in times))
        print(f"{'command':<{width}} {'seconds':>22}   {'ratio to import torch':>24}")
        for name, values in times.items():
            ratios = [v / t for v, t in zip(values, times["torch"])]
            print(f"{name:<{width}} {spread(values, '.2f'):>22}   {spread(ratios, '.2f'):>24}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
