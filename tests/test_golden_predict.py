"""`distfold predict` on the shipped example writes the committed golden outputs.

The .pdb, .distmat.npy and .contacts.tsv are compared byte for byte and .scores.json value for
value (timings and the model's path aside) for every built-in reconstructor, so a
refactor cannot silently change what users get. A deliberate change rewrites the
golden files with ``python benchmarks/check_predict_bytes.py --update``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_predict_bytes", ROOT / "benchmarks" / "check_predict_bytes.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


@pytest.mark.slow
@pytest.mark.parametrize("reconstructor", check.RECONSTRUCTORS)
def test_predict_writes_the_golden_outputs(tmp_path, reconstructor):
    outdir = check.predict(tmp_path / reconstructor, reconstructor)
    assert check.differences(outdir, reconstructor) == []


def test_golden_check_notices_a_changed_file(tmp_path):
    """The comparison can fail: a flipped coordinate digit and a changed score are both reported."""
    out = tmp_path / "smacof"
    out.mkdir()
    golden = check.GOLDEN / "smacof"
    pdb = (golden / "example.pdb").read_text().replace(" CA ", " CA ", 1)
    lines = pdb.splitlines(keepends=True)
    atom = next(i for i, line in enumerate(lines) if line.startswith("ATOM"))
    line = lines[atom]
    lines[atom] = line[:37] + ("1" if line[37] != "1" else "2") + line[38:]
    (out / "example.pdb").write_text("".join(lines))
    (out / "example.distmat.npy").write_bytes((check.GOLDEN / "example.distmat.npy").read_bytes())
    contacts = (check.GOLDEN / "example.contacts.tsv").read_text().splitlines(keepends=True)
    contacts[1] = contacts[1].replace("\t0.", "\t1.", 1) if "\t0." in contacts[1] else contacts[1] + "x"
    (out / "example.contacts.tsv").write_text("".join(contacts))
    scores = (golden / "example.scores.json").read_text().replace('"length": 140', '"length": 141')
    (out / "example.scores.json").write_text(scores)
    found = check.differences(out, "smacof")
    assert any("example.pdb differs" in f for f in found)
    assert any("'length'" in f for f in found)
    assert any("example.contacts.tsv differs" in f for f in found)
