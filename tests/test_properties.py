"""Property-based tests (hypothesis): whatever matrix ``distfold reconstruct`` is given and
whatever damage is done to the structure files ``distfold compare`` reads, the user sees a
result or one documented ``Error:`` line, never a traceback (issue 16, "done when").

"Documented" means a message distfold wrote for the case (an InputError or DistfoldError
naming the file and what is wrong with it), not an exception that slipped through: such
an exception either escapes ``run_cli`` (a traceback; the test fails on it) or, for OSError,
MemoryError and OverflowError, is turned into ``Error: <TypeName>: ...`` / ``out of memory``
lines, which the tests reject too. The examples are bounded so that each test runs in seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.usefixtures("one_blas_thread")

#: What a message that only wraps an unexpected exception looks like (errors.message's fallback).
UNDOCUMENTED = re.compile(r"^Error: (\w+(Error|Exception|Overflow)\b|out of memory|internal error)")

#: DISTFOLD_HYPOTHESIS_EXAMPLES=2000 searches harder, with fresh random examples each run.
_EXAMPLES = int(os.environ.get("DISTFOLD_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXAMPLES or 60, deadline=None, derandomize=not _EXAMPLES, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def run(*argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``distfold ARGV`` run as ``python -m distfold`` runs it.
    Any exception other than SystemExit propagates: a traceback the user would see."""
    from distfold.cli.common import run_cli
    from distfold.cli.main import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would be noise on the user's terminal
        try:
            run_cli(cli, [str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def assert_result_or_one_documented_error(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    if code == 0:
        assert not errors, err
        return
    assert code in (1, 2), (code, err)
    assert len(errors) == 1, err
    assert not UNDOCUMENTED.match(errors[0]), errors[0]


# -- reconstruct ----------------------------------------------------------------------------------------

SPECIAL = [np.nan, np.inf, -np.inf, -1.0, -1e-9, 0.0, 1e-320, 1e-300, 5e-324, 1e300, 1.7e308, 1e6, 1e6 + 1]


@st.composite
def matrices(draw):
    """An (L, L) distance matrix of a random chain, then damaged: scaled (tiny to huge),
    special values dropped in, made asymmetric, cast, or given the wrong shape."""
    n = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(n, 3)), 0) * 3.8
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    d = d * draw(st.sampled_from([1.0, 1.0, 1e-300, 1e-12, 1e-3, 1e3, 1e5, 1e7, 1e150, 1e300]))
    for _ in range(draw(st.integers(0, 3))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        value = draw(st.sampled_from(SPECIAL) | st.floats(allow_nan=True, allow_infinity=True))
        d[i, j] = value
        if draw(st.booleans()):
            d[j, i] = value
    if draw(st.booleans()):
        d = d + np.triu(rng.normal(size=(n, n)) * draw(st.sampled_from([1e-6, 1e-3, 0.01, 1.0, 100.0])), 1)
    shape = draw(st.sampled_from(["square"] * 6 + ["vector", "rect", "cube", "empty", "scalar"]))
    if shape == "vector":
        d = d.reshape(-1)
    elif shape == "rect":
        d = np.hstack([d, d[:, :1]])
    elif shape == "cube":
        d = np.stack([d, d], -1)
    elif shape == "empty":
        d = np.zeros((0, 0))
    elif shape == "scalar":
        d = np.array(d.reshape(-1)[0])
    dtype = draw(st.sampled_from([np.float64] * 4 + [np.float32, np.float16, np.int32, np.int8, np.uint8, bool,
                                                     np.complex128, "U8", object]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casting NaN/inf to int is the point here
        d = d.astype(dtype)
    return d


@st.composite
def weight_matrices(draw, n):
    w = np.ones((n, n)) * draw(st.sampled_from([1.0, 1e-300, 1e-30, 1e30, 1e300]))
    for _ in range(draw(st.integers(0, 3))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        w[i, j] = w[j, i] = draw(st.sampled_from([0.0, np.nan, np.inf, -1.0, 1e-320, 1e308]))
    return w


@SETTINGS
@given(d=matrices(), fmt=st.sampled_from(["npy", "npy", "txt"]), method=st.sampled_from(["smacof", "classical",
                                                                                     "refine"]),
       weighted=st.booleans(), data=st.data())
def test_reconstruct_gives_a_structure_or_one_documented_error(d, fmt, method, weighted, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / f"d.{fmt}"
        if fmt == "npy":
            np.save(src, d, allow_pickle=True)  # an object array is written, and must be refused
        else:
            try:
                np.savetxt(src, np.atleast_1d(d), fmt="%s")
            except (ValueError, TypeError, IndexError):  # numpy cannot write it as a table
                src.write_text(repr(d.tolist()))
        args = ["reconstruct", src, "-o", tmp / "x.cif", "--method", method]
        if weighted and d.ndim == 2 and d.shape[0] == d.shape[1] and d.shape[0] > 0:
            np.save(tmp / "w.npy", data.draw(weight_matrices(d.shape[0])))
            args += ["--weights", tmp / "w.npy"]
        code, _, err = run(*args)
        assert_result_or_one_documented_error(code, err)
        if code == 0:
            from distfold.geometry.distmat import load_matrix
            from distfold.structure.io import read_chain

            back = read_chain(tmp / "x.cif")  # a text "0.0" is a 1 x 1 matrix, as loadtxt(ndmin=2) reads it
            assert len(back.sequence) == len(load_matrix(src)) and np.isfinite(back.ca).all()


# -- compare ----------------------------------------------------------------------------------------------

def _pdb_text() -> str:
    """The first 30 residues of a real chain (all atoms), as PDB text."""
    with gzip.open(DATA / "chains" / "c70b106ab8731.pdb.gz", "rt") as fh:
        lines = fh.read().splitlines()
    residues, out = set(), []
    for line in lines:
        if line.startswith("ATOM"):
            residues.add(line[22:27])
            if len(residues) > 30:
                break
        out.append(line)
    return "\n".join(out + ["END"]) + "\n"


def _cif_text() -> str:
    """The first 25 residues of a real model, as mmCIF text."""
    with gzip.open(DATA / "compare" / "1adz_model_2.cif.gz", "rt") as fh:
        lines = fh.read().splitlines()
    out = []
    for line in lines:
        if line.startswith("ATOM") and int(line.split()[8]) > 25:
            break
        out.append(line)
    return "\n".join(out + ["#"]) + "\n"


PDB_TEXT, CIF_TEXT = _pdb_text(), _cif_text()
JUNK = ["", " ", "nan", "inf", "-inf", "1e308", "*****", "?", ".", "#", "ATOM", "HETATM", "loop_", "_atom_site.",
        "\x00", "\ufffd", "é", "\t", "99999999", "-0", "CA", "UNK", "MODEL 1", "ENDMDL", "TER", "data_x", ";",
        "1e30", "-3e20", "1e7"]


@st.composite
def mutated(draw, text: str):
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        k = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "cut", "char", "field", "insert", "swap", "truncate_file",
                                   "blank_tail"]))
        line = lines[k]
        if op == "delete":
            del lines[k]
        elif op == "duplicate":
            lines.insert(k, line)
        elif op == "cut":
            lines[k] = line[:draw(st.integers(0, max(0, len(line))))]
        elif op == "char" and line:
            i = draw(st.integers(0, len(line) - 1))
            lines[k] = line[:i] + draw(st.characters(codec="utf-8") | st.sampled_from(list("0-.9 A*?#"))) + line[i + 1:]
        elif op == "field":
            parts = line.split(" ")
            i = draw(st.integers(0, len(parts) - 1))
            parts[i] = draw(st.sampled_from(JUNK))
            lines[k] = " ".join(parts)
            if line.startswith(("ATOM", "HETATM")) and len(line) >= 54 and draw(st.booleans()):
                start = draw(st.sampled_from([30, 38, 46, 54, 60, 22, 17, 21]))  # PDB's numeric columns
                lines[k] = line[:start] + draw(st.sampled_from(JUNK)).rjust(8)[:8] + line[start + 8:]
        elif op == "insert":
            lines.insert(k, draw(st.sampled_from(JUNK) | st.text(max_size=80)))
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif op == "truncate_file":
            lines = lines[:k]
        elif op == "blank_tail":
            lines[k:] = [""] * (len(lines) - k)
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


def _write(path: Path, text: str, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


@SETTINGS
@given(fmt=st.sampled_from(["pdb", "cif"]), data=st.data(), which=st.sampled_from(["model", "reference", "both"]),
       gz=st.booleans(), options=st.sampled_from([[], [], ["--by-number"], ["--align", "structure"],
                                                  ["--force-pairing"], ["--json"]]))
def test_compare_gives_scores_or_one_documented_error(fmt, data, which, gz, options):
    text = PDB_TEXT if fmt == "pdb" else CIF_TEXT
    model = data.draw(mutated(text)) if which in ("model", "both") else text
    reference = data.draw(mutated(text)) if which in ("reference", "both") else text
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        m = _write(tmp / f"model.{fmt}", model, gz and which != "reference")
        r = _write(tmp / f"ref.{fmt}", reference, gz and which == "reference")
        code, out, err = run("compare", m, r, *options)
        if "--json" in options and code == 1:  # --json reports the error in the object, not on stderr
            import json

            res = json.loads(out)
            assert res["status"] == "error" and "\n" not in res["error"], res
            assert not UNDOCUMENTED.match("Error: " + res["error"]), res["error"]
            return
        assert_result_or_one_documented_error(code, err)


@SETTINGS
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".pdb", ".cif", ".pdb.gz", ".cif.gz", ".ent"]))
def test_compare_of_arbitrary_bytes_is_one_documented_error(raw, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / f"junk{suffix}").write_bytes(raw)
        (tmp / "ref.pdb").write_text(PDB_TEXT)
        code, _, err = run("compare", tmp / f"junk{suffix}", tmp / "ref.pdb")
        assert code == 1
        assert_result_or_one_documented_error(code, err)


@SETTINGS
@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e30, -3e20, 1e7, 1e6, 9999.999]),
       fmt=st.sampled_from(["pdb", "cif"]), residue=st.integers(0, 24),
       options=st.sampled_from([[], ["--align", "structure"], ["--by-number"]]))
def test_compare_of_any_coordinate_value_is_scores_or_one_documented_error(value, fmt, residue, options):
    """One C-alpha coordinate set to any float (before: 1e30 gave NA scores and numpy
    RuntimeWarnings on stderr; mdtraj's float32 made larger ones inf)."""
    text = PDB_TEXT if fmt == "pdb" else CIF_TEXT
    lines, seen = text.splitlines(), -1
    for k, line in enumerate(lines):
        if line.startswith("ATOM") and (line[12:16] == " CA " if fmt == "pdb" else line.split()[3] == "CA"):
            seen += 1
            if seen == residue:
                if fmt == "pdb":
                    lines[k] = line[:30] + f"{value:8.3g}"[:8].rjust(8) + line[38:]
                else:
                    parts = line.split()
                    parts[10] = repr(value)
                    lines[k] = " ".join(parts)
                break
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / f"m.{fmt}").write_text("\n".join(lines) + "\n")
        (tmp / f"r.{fmt}").write_text(text)
        code, out, err = run("compare", tmp / f"m.{fmt}", tmp / f"r.{fmt}", *options)
        assert_result_or_one_documented_error(code, err)
        if code == 1:
            assert "beyond 1e+06 A; not a structure in angstrom" in err or "not scored" in err, err
