"""Hostile input and faults, as a user meets them through the real CLI (issue 16, points 4-7).

Every case ends in one line on stderr (``Error: ...``, or a warning) and the exit code the
command documents; never a traceback. Each command runs in-process through
``distfold.cli.common.run_cli``, the function ``python -m distfold`` runs, so that what is
checked is what the user sees; faults that a test cannot cause for real (a full disk, a
folder root may write anyway) are injected at the lowest level that meets them.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from distfold.structure.io import read_chain

CHAIN = Path(__file__).parent / "data" / "chains" / "c70b106ab8731.pdb.gz"  # 96 residues
SEQ = "MKTAYIAKQRQISFVKSHFSRQ"

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def run(*argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``distfold ARGV``; any exception but SystemExit fails the test."""
    from distfold.cli.common import run_cli
    from distfold.cli.main import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_cli(cli, [str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one ``Error: `` line (log lines aside)."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def distances():
    ca = read_chain(CHAIN).ca
    return cdist(ca, ca)


# -- reconstruct: matrices that overflow, lie about their size, or do not fit --------------------

def test_reconstruct_of_a_matrix_scaled_by_1e300_is_one_line(tmp_path, distances):
    # before: ValueError "array must not contain infs or NaNs" from scipy, with a traceback
    np.save(tmp_path / "d.npy", distances * 1e300)
    code, _, err = run("reconstruct", tmp_path / "d.npy", "-o", tmp_path / "x.pdb")
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"Error: {tmp_path / 'd.npy'}: distance ") and "above 1e+06 A" in line
    assert not (tmp_path / "x.pdb").exists()


@pytest.mark.parametrize("method", ["classical", "refine"])
def test_every_reconstructor_meets_the_same_distance_limit(tmp_path, distances, method):
    np.save(tmp_path / "d.npy", distances * 1e150)
    code, _, err = run("reconstruct", tmp_path / "d.npy", "-o", tmp_path / "x.cif", "--method", method)
    assert code == 1 and "above 1e+06 A" in one_error_line(err)


def test_a_large_but_plausible_scale_still_reconstructs(tmp_path, distances):
    np.save(tmp_path / "d.npy", distances * 1000)  # up to ~6e4 A: coordinates fit mmCIF, not PDB
    code, out, err = run("reconstruct", tmp_path / "d.npy", "-o", tmp_path / "x.cif", "--method", "classical")
    assert code == 0, err


def test_weights_beyond_the_limit_are_one_line(tmp_path, distances):
    # before: numpy overflow warnings on stderr and a structure from inf/nan arithmetic
    np.save(tmp_path / "d.npy", distances)
    w = np.full(distances.shape, 1e300)
    w[0, 1] = w[1, 0] = 1.0
    np.save(tmp_path / "w.npy", w)
    code, _, err = run("reconstruct", tmp_path / "d.npy", "-o", tmp_path / "x.pdb", "--weights", tmp_path / "w.npy")
    assert code == 1
    assert one_error_line(err) == (f"Error: {tmp_path / 'w.npy'}: weight 1e+300 is above 1e+06; weights are "
                                   "relative, so divide them by their largest")


def _forged_npy(path: Path, shape, data: bytes = b"\0" * 1024, descr: str = "<f8") -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
        fh.write(data)
    return path


def test_a_npy_header_that_promises_more_than_the_file_holds_is_refused_before_loading(tmp_path):
    # before: numpy allocated 298 GiB and the command died with MemoryError
    path = _forged_npy(tmp_path / "d.npy", (200000, 200000))
    code, _, err = run("reconstruct", path, "-o", tmp_path / "x.pdb")
    assert code == 1
    line = one_error_line(err)
    assert "truncated .npy distance matrix" in line and "(200000, 200000)" in line and "1,152 bytes" in line


def test_a_matrix_too_large_for_memory_is_refused_before_loading(tmp_path):
    """A sparse file: the header is honest and the bytes are all there (as holes), but
    the (L, L) work would not fit; the guard refuses it as predict refuses a long chain."""
    path = _forged_npy(tmp_path / "d.npy", (200000, 200000), data=b"")
    try:
        os.truncate(path, path.stat().st_size + 200000 ** 2 * 8)
    except OSError:  # pragma: no cover - a file system without sparse files
        pytest.skip("no sparse files here")
    code, _, err = run("reconstruct", path, "-o", tmp_path / "x.pdb")
    assert code == 1
    line = one_error_line(err)
    assert "a 200000 x 200000 distance matrix needs about" in line and "GiB is available" in line


def test_load_matrix_checks_memory_for_text_too(tmp_path, distances):
    from distfold.errors import InputError
    from distfold.geometry.distmat import load_matrix

    np.savetxt(tmp_path / "d.txt", distances[:30, :30])
    assert load_matrix(tmp_path / "d.txt").shape == (30, 30)
    with pytest.raises(InputError, match="a 30 x 30 distance matrix needs about"):
        load_matrix(tmp_path / "d.txt", available=1 << 20)
    np.save(tmp_path / "d.npy", distances[:30, :30])
    with pytest.raises(InputError, match="a 30 x 30 distance matrix needs about"):
        load_matrix(tmp_path / "d.npy", available=1 << 20)


@pytest.mark.parametrize("shape, descr, expected", [
    ((5,), "<f8", "not square: shape (5,)"),
    ((3, 4), "<f8", "not square: shape (3, 4)"),
    ((2, 2), "<c16", "must be numeric, got dtype complex128"),
    ((2, 2), "|O", "holds Python objects"),
    ((2, 2), "<U3", "must be numeric"),
])
def test_npy_headers_are_judged_before_the_data(tmp_path, shape, descr, expected):
    path = _forged_npy(tmp_path / "d.npy", shape, data=b"\0" * 4096, descr=descr)
    code, _, err = run("reconstruct", path, "-o", tmp_path / "x.pdb")
    assert code == 1 and expected in one_error_line(err)


def test_text_columns_counts_the_first_line_with_values(tmp_path):
    from distfold.geometry.distmat import text_columns

    (tmp_path / "a.txt").write_text("# a comment 1 2\n\n  0 1 2 # 7 8\n1 0 3\n")
    assert text_columns(tmp_path / "a.txt") == 3
    (tmp_path / "b.txt").write_text("")
    assert text_columns(tmp_path / "b.txt") == 0
    (tmp_path / "c.txt").write_text("1 " * 700000 + "\n")  # spans chunks of 1 MiB
    assert text_columns(tmp_path / "c.txt") == 700000


# -- full disks and folders that cannot be written ----------------------------------------------

@pytest.fixture
def disk_full(monkeypatch):
    """Every fsync reports ENOSPC, as a full disk does when the data reaches it."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


def test_predict_on_a_full_disk_names_the_file(tmp_path, disk_full):
    # before: "failed: query: no space left on device" (no file); numpy's own short write
    # read "48400 requested and 16352 written"
    out = tmp_path / "o"
    code, _, err = run("predict", SEQ, "-o", out)
    assert code == 1 and "Traceback" not in err
    assert f"no space left on device while writing {out / 'query.distmat.npy'}" in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_short_write_on_a_full_disk_is_reported_as_disk_full(tmp_path, monkeypatch):
    from distfold.fileio import save_npy_atomic

    def short_write(fh, array, *args, **kwargs):  # what ndarray.tofile raises when the disk fills
        raise OSError("48400 requested and 16352 written")

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(np.lib.format, "write_array", short_write)
    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    with pytest.raises(OSError) as err:
        save_npy_atomic(tmp_path / "d.npy", np.zeros((3, 3)))
    from distfold.errors import message

    assert message(err.value) == f"no space left on device while writing {tmp_path / 'd.npy'}"
    assert list(tmp_path.iterdir()) == []


def test_reconstruct_on_a_full_disk_is_one_line(tmp_path, distances, disk_full):
    np.save(tmp_path / "d.npy", distances)
    code, _, err = run("reconstruct", tmp_path / "d.npy", "-o", tmp_path / "x.pdb")
    assert code == 1
    line = one_error_line(err)
    assert str(tmp_path / "x.pdb") in line and "no space left on device" in line.lower()


def test_predict_into_a_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    """Root writes anywhere, so the refusal is injected where the folder is made."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if locked in Path(self).parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    real_makedirs = os.makedirs

    def makedirs(name, *args, **kwargs):
        if locked in Path(name).parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_makedirs(name, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    code, _, err = run("predict", SEQ, "-o", locked / "sub")
    assert code == 1
    assert one_error_line(err) == f"Error: {locked / 'sub'}: permission denied"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_predict_into_an_unwritable_folder_is_one_line(tmp_path):  # pragma: no cover - not as root
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run("predict", SEQ, "-o", locked / "sub")
    finally:
        locked.chmod(0o755)
    assert code == 1 and "permission denied" in one_error_line(err).lower()


def test_train_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    from safetensors import SafetensorError
    import safetensors.torch

    from trainkit import make_dataset

    ds = make_dataset(tmp_path / "ds")

    def save_file(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    out = tmp_path / "m"
    code, _, err = run("train", ds, "-o", out, "--preset", "tiny", "--crop", "32", "--batch-size", "2",
                       "--max-steps", "1", "--warmup", "0", "--threads", "1", "--val-max-length", "8")
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"Error: no space left on device while writing {out}/"), line
    assert line.endswith(".safetensors")
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary folder left behind


# -- calibrate on one chain ------------------------------------------------------------------------

def test_calibrate_on_one_chain_warns(tmp_path):
    """Before: the map was fitted and written on one chain without a word."""
    from distfold.pipeline.model import default_model_path

    from trainkit import make_dataset

    ds = make_dataset(tmp_path / "ds", uids=["c55406f94174e", "cb98f573e0d35"])  # one train, one val chain
    code, out, err = run("calibrate", ds, "--model", default_model_path(), "--dry-run", "--json")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("Warning: ")]
    assert warnings == ["Warning: fitted on one chain (cb98f573e0d35): the map describes that protein, not the "
                        "model, and cannot be cross-checked; calibrate on a split with chains from many families"]
    report = json.loads(out)
    assert report["n_chains"] == 1 and report["warnings"] == [warnings[0][len("Warning: "):]]
    assert report["written"] is None
