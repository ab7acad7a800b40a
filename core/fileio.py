"""Small file helpers: atomic writes and transparent gzip reading."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place only
    when the block finishes without error: readers never see a half-written file.

    An OSError that names no file (a failed write, flush or fsync) is raised again
    naming ``path``, and a short write on a full disk (numpy's ``N requested and M
    written``) as ENOSPC, so that the user reads "no space left on device while
    writing PATH" (:func:`distfold.errors.message`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's usual mode
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        named = named_os_error(exc, path) if isinstance(exc, OSError) else None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if named is not None:
            raise named from exc
        raise


def named_os_error(exc: OSError, path: str | os.PathLike) -> OSError | None:
    """``exc`` as the same kind of OSError naming ``path``, or None when it names a
    file already. A write that stopped short (no errno) on a file system with no
    room left becomes ENOSPC. Call it before deleting the partial file."""
    import errno

    if exc.filename is not None:
        return None
    code, text = exc.errno, exc.strerror or str(exc) or type(exc).__name__
    if code is None and "requested and" in text and "written" in text and _disk_full(Path(path).parent):
        code, text = errno.ENOSPC, os.strerror(errno.ENOSPC)
    try:
        return type(exc)(code, text, str(path))
    except Exception:  # noqa: BLE001 - a subclass with its own constructor
        return OSError(code, text, str(path))


def _disk_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < 1 << 16


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_text(path: str | os.PathLike) -> str:
    """Whole text of a file, gunzipped when it ends in ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8", errors="replace")


def text_handle(text: str) -> io.StringIO:
    return io.StringIO(text)


def save_npy_atomic(path: str | os.PathLike, array) -> None:
    import numpy as np

    with atomic_write(path, "wb") as fh:
        np.save(fh, array)
