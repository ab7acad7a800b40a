"""Check that `distfold predict` on the shipped example writes the committed outputs.

A refactor must not change what users get. For each reconstructor (smacof,
classical, refine) this runs ``distfold predict -i examples/example.fasta`` in a
fresh process and compares with ``tests/data/golden_predict/``: the ``.pdb``,
``.distmat.npy`` and ``.contacts.tsv`` byte for byte (the last two depend on the
model only, so one copy serves every reconstructor), ``.scores.json`` value for value apart from
timings, the model's path and distfold's version. ``tests/test_golden_predict.py`` runs the same
check in the test suite.

    python benchmarks/check_predict_bytes.py            # compare; exit 1 on a difference
    python benchmarks/check_predict_bytes.py --update   # a deliberate change: rewrite the golden files

The golden files were written by commit b76b9ba (the layout before the
one-floor-plan refactor) on this project's 2-core CPU machine with one thread.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden_predict"
FASTA = ROOT / "examples" / "example.fasta"
RECONSTRUCTORS = ("smacof", "classical", "refine")
#: scores.json keys that legitimately differ between runs (and releases).
VOLATILE = {"timings", "total_s", "model_load_s", "distfold_version"}


def predict(outdir: Path, reconstructor: str) -> Path:
    cmd = [sys.executable, "-m", "distfold", "predict", "-i", str(FASTA), "-o", str(outdir),
           "--reconstruct", reconstructor, "--overwrite", "--device", "cpu"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"distfold predict --reconstruct {reconstructor} exited {run.returncode}: "
                           f"{run.stderr.strip()[-2000:]}")
    return outdir


def comparable_scores(path: Path) -> dict:
    scores = json.loads(path.read_text())
    for key in VOLATILE:
        scores.pop(key, None)
    model = scores.get("model") or {}
    model.pop("path", None)
    return scores


def differences(outdir: Path, reconstructor: str) -> list[str]:
    """What differs between a fresh run in ``outdir`` and the golden files (empty when nothing)."""
    golden = GOLDEN / reconstructor
    out = []
    for name, ref in (("example.pdb", golden / "example.pdb"), ("example.distmat.npy", GOLDEN / "example.distmat.npy"),
                      ("example.contacts.tsv", GOLDEN / "example.contacts.tsv")):
        if (outdir / name).read_bytes() != ref.read_bytes():
            out.append(f"{reconstructor}: {name} differs from {ref.relative_to(ROOT)}")
    got, want = comparable_scores(outdir / "example.scores.json"), comparable_scores(golden / "example.scores.json")
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            out.append(f"{reconstructor}: scores.json[{key!r}] differs: {got.get(key)!r:.200} != {want.get(key)!r:.200}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", action="store_true", help="rewrite the golden files from a fresh run")
    args = ap.parse_args()
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for rec in RECONSTRUCTORS:
            outdir = predict(Path(tmp) / rec, rec)
            if args.update:
                (GOLDEN / rec).mkdir(parents=True, exist_ok=True)
                for name in ("example.pdb", "example.scores.json"):
                    shutil.copyfile(outdir / name, GOLDEN / rec / name)
                shutil.copyfile(outdir / "example.distmat.npy", GOLDEN / "example.distmat.npy")
                shutil.copyfile(outdir / "example.contacts.tsv", GOLDEN / "example.contacts.tsv")
                print(f"{rec}: golden files rewritten")
                continue
            found = differences(outdir, rec)
            problems += found
            print(f"{rec}: {'identical' if not found else f'{len(found)} difference(s)'}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
