"""Start-up: each command imports only what its work needs (issue 19, target 1).

Each command runs in a fresh interpreter exactly as ``python -m distfold`` does
(``runpy``); afterwards the test reads ``sys.modules``. ``predict`` with the shipped
(from-scratch) model needs torch but not transformers or peft; ``reconstruct`` and
``compare`` need neither torch nor transformers. ``--help`` and ``plugins`` are
checked in ``test_cli_core.py``.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parent.parent / "examples" / "example.fasta"

CHECK = (
    "import sys, runpy\n"
    "sys.argv = ['distfold', *sys.argv[1:]]\n"
    "code = 0\n"
    "try:\n"
    "    runpy.run_module('distfold', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code or 0\n"
    "print('EXIT=%s' % code, file=sys.stderr)\n"
    "print('LOADED=' + ','.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
)
HEAVY = {"torch", "transformers", "peft"}


def loaded_after(*args: str) -> set[str]:
    """Top-level modules imported by ``distfold ARGS`` (which must exit 0)."""
    res = subprocess.run([sys.executable, "-c", CHECK, *args], capture_output=True, text=True, timeout=600)
    lines = res.stderr.splitlines()
    assert "EXIT=0" in lines, res.stderr[-2000:]
    return set(next(line for line in lines if line.startswith("LOADED=")).removeprefix("LOADED=").split(","))


def ca_coordinates(path: Path) -> np.ndarray:
    with gzip.open(path, "rt") as fh:
        return np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])]
                         for line in fh if line.startswith("ATOM") and line[12:16] == " CA "])


def test_predict_with_the_default_model_imports_no_transformers(tmp_path):
    loaded = loaded_after("predict", "-i", str(EXAMPLE), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert (tmp_path / "out" / "example.pdb").is_file()
    assert "torch" in loaded  # the check sees what predict imports
    assert not loaded & {"transformers", "peft"}, sorted(loaded & HEAVY)


def test_reconstruct_imports_no_torch(tmp_path):
    xyz = ca_coordinates(DATA / "chains" / "c70b106ab8731.pdb.gz")
    np.save(tmp_path / "d.npy", np.linalg.norm(xyz[:, None] - xyz[None], axis=-1))
    loaded = loaded_after("reconstruct", str(tmp_path / "d.npy"), "-o", str(tmp_path / "x.pdb"))
    assert (tmp_path / "x.pdb").is_file()
    assert "numpy" in loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_compare_imports_no_torch(extra):
    ref = DATA / "chains" / "c70b106ab8731.pdb.gz"
    loaded = loaded_after("compare", str(ref), str(ref), *extra)
    assert "numpy" in loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
