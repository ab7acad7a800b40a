"""Distance matrices as reconstructors receive them: validation, loading,
completion of ignored pairs and stress.

:func:`distfold.geometry.reconstruct.reconstruct` runs :func:`check_distances`
once, before any reconstructor, so input errors read the same whatever the
method, and hands the reconstructor the checked arrays; a reconstructor that
wants them as a :class:`CheckedDistances` wraps them with :func:`as_checked`
(no copy, no second check).

Conventions (units: Å throughout):

- ``distances``: (L, L) float, symmetric, non-negative, zero diagonal.
- ``weights``: (L, L) float >= 0 or None (None = every pair weighs 1). A pair
  with weight 0 is ignored, and only there may its distance be non-finite.
- A distance above :data:`MAX_DISTANCE` (1e6 Å) is an error: no chain distfold can
  hold in memory spans that much, and the reconstructors square and sum distances,
  which would overflow for values near 1e154 (a matrix scaled by 1e300 by mistake).
- Weights are relative, so their scale is the caller's to choose within reason: a
  weight above :data:`MAX_WEIGHT` (1e6) is an error (divide the weights by their
  largest); products of weights and squared distances stay far from overflow.
- Small asymmetry is forgiven: where ``|d_ij - d_ji| <= SYMMETRY_ATOL +
  SYMMETRY_RTOL * max(d_ij, d_ji)`` for every pair, the matrix is replaced by
  ``(d + d.T) / 2`` (weights likewise); larger asymmetry is an error. A
  diagonal within ``SYMMETRY_ATOL`` of 0 is set to 0; the diagonal is never a
  pair and its weight is ignored.
- Raw stress: ``sum_{i<j} w_ij (|x_i - x_j| - d_ij)^2``; normalised stress
  (Kruskal's Stress-1): ``sqrt(raw / sum_{i<j} w_ij |x_i - x_j|^2)``, the
  definition ``sklearn.manifold.smacof(normalized_stress=True)`` uses.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distfold.errors import InputError

#: Asymmetry forgiven (and symmetrised away): absolute part, Å.
SYMMETRY_ATOL = 1e-3
#: Asymmetry forgiven: relative part.
SYMMETRY_RTOL = 1e-3
#: Largest distance accepted, Å (module docstring).
MAX_DISTANCE = 1e6
#: Largest weight accepted (module docstring).
MAX_WEIGHT = 1e6


@dataclass
class CheckedDistances:
    """A validated distance matrix.

    distances: (L, L) float64, Å, symmetric, zero diagonal; ignored pairs hold 0.
    weights: (L, L) float64 >= 0, symmetric, zero diagonal, or None (all pairs weigh 1).
    known: (L, L) bool, pairs that count (off-diagonal, weight > 0), or None when all do.
    max_asymmetry: the largest |d_ij - d_ji| that was symmetrised away, Å (0 from
        :func:`as_checked`: the core reports it).
    """

    distances: np.ndarray
    weights: np.ndarray | None
    known: np.ndarray | None
    max_asymmetry: float

    def __len__(self) -> int:
        return len(self.distances)


def _as_float_matrix(value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: not a numeric matrix ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"{what}: not square: shape {arr.shape}, expected (L, L)")
    if arr.shape[0] < 1:
        raise InputError(f"{what}: empty (L = 0); need at least one residue")
    return arr


#: Rows per block in the blocked (cache-sized) passes over an (L, L) matrix.
_BLOCK = 256


def _blocks(n: int):
    """(i0, i1, j0, j1) of the blocks on and above the diagonal of an (n, n) matrix."""
    edges = list(range(0, n, _BLOCK)) + [n]
    for p in range(len(edges) - 1):
        for q in range(p, len(edges) - 1):
            yield edges[p], edges[p + 1], edges[q], edges[q + 1]


def _symmetry_excess(a: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    """(largest |a_ij - a_ji| over the checked pairs, largest amount beyond the
    tolerance SYMMETRY_ATOL + SYMMETRY_RTOL max(|a_ij|, |a_ji|)). Blockwise, so
    that the transposed reads stay in cache."""
    largest, excess = 0.0, -np.inf
    for i0, i1, j0, j1 in _blocks(len(a)):
        upper, lower = a[i0:i1, j0:j1], a[j0:j1, i0:i1].T
        diff = np.abs(upper - lower)
        if mask is not None:
            diff[~mask[i0:i1, j0:j1]] = 0.0
        top = float(diff.max(initial=0.0))
        largest = max(largest, top)
        if top > SYMMETRY_ATOL:
            tol = SYMMETRY_ATOL + SYMMETRY_RTOL * np.maximum(np.abs(upper), np.abs(lower))
            excess = max(excess, float((diff - tol).max()))
    return largest, excess


def check_distances(distances: Any, weights: Any = None, *, name: str = "distance matrix",
                    weights_name: str = "weights") -> CheckedDistances:
    """Validate a distance matrix (and weights); raise a one-line :class:`InputError`.

    Returns float64 copies, symmetrised (see the module docstring) with ignored
    pairs set to 0 in ``distances``. The caller's arrays are never modified.
    """
    d = _as_float_matrix(distances, name)
    if isinstance(distances, np.ndarray) and np.shares_memory(d, distances):
        d = d.copy()
    n = d.shape[0]
    w = None
    known = None
    if weights is not None:
        w = _as_float_matrix(weights, weights_name)
        if w.shape != d.shape:
            raise InputError(f"{weights_name}: shape {w.shape} does not match {name} shape {d.shape}")
        if not np.all(np.isfinite(w)):
            raise InputError(f"{weights_name}: {int(np.count_nonzero(~np.isfinite(w)))} non-finite entries")
        if np.any(w < 0):
            raise InputError(f"{weights_name}: {int(np.count_nonzero(w < 0))} negative entries (min {w.min():.4g})")
        if w.max() > MAX_WEIGHT:
            raise InputError(f"{weights_name}: weight {w.max():.4g} is above {MAX_WEIGHT:g}; weights are relative, "
                             "so divide them by their largest")
        asym, excess = _symmetry_excess(w, None)
        if excess > 0:
            raise InputError(f"{weights_name}: not symmetric (largest |w_ij - w_ji| = {asym:.4g})")
        w = (w + w.T) / 2.0 if asym > 0 else w.copy()
        np.fill_diagonal(w, 0.0)
        known = w > 0
        if n > 1 and not known.any():
            raise InputError(f"{weights_name}: every pair has weight 0; nothing to reconstruct from")
        if np.count_nonzero(known) == n * (n - 1):
            known = None  # every pair counts
    diag = np.diagonal(d).copy()
    if weights is not None:  # an ignored residue may have a non-finite diagonal entry
        diag[np.diagonal(np.asarray(weights, dtype=np.float64)) == 0] = 0.0
    if not np.all(np.isfinite(diag)):
        raise InputError(f"{name}: not finite on the diagonal")
    if np.abs(diag).max(initial=0.0) > SYMMETRY_ATOL:
        raise InputError(f"{name}: diagonal must be 0, found {float(np.abs(diag).max()):.4g}")
    np.fill_diagonal(d, 0.0)
    if known is not None:
        bad = known & ~np.isfinite(d)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(f"{name}: {int(bad.sum())} non-finite entries where the weight is > 0 "
                             f"(first at [{i}, {j}])")
        d[~known] = 0.0
    elif not np.isfinite(d).all():
        bad = ~np.isfinite(d)
        i, j = np.argwhere(bad)[0]
        raise InputError(f"{name}: {int(bad.sum())} non-finite entries (first at [{i}, {j}])")
    top = float(d.max())
    if top > MAX_DISTANCE:
        i, j = np.unravel_index(int(np.argmax(d)), d.shape)
        raise InputError(f"{name}: distance {top:.4g} A at [{i}, {j}] is above {MAX_DISTANCE:g} A; "
                         "not distances in angstrom (wrong units or scale?)")
    if d.min() < 0:
        if d.min() < -SYMMETRY_ATOL:
            neg = d < -SYMMETRY_ATOL
            i, j = np.argwhere(neg)[0]
            raise InputError(f"{name}: {int(neg.sum())} negative entries (first at [{i}, {j}]: {d[i, j]:.4g})")
        np.maximum(d, 0.0, out=d)
    asym, excess = _symmetry_excess(d, known)
    if excess > 0:
        raise InputError(f"{name}: not symmetric (largest |d_ij - d_ji| = {asym:.4g} A; "
                         f"tolerance {SYMMETRY_ATOL:g} A + {SYMMETRY_RTOL:g} x distance)")
    if asym > 0:
        d = (d + d.T) / 2.0
    return CheckedDistances(d, w, known, asym)


def as_checked(distances: np.ndarray, weights: np.ndarray | None = None) -> CheckedDistances:
    """Wrap arrays that :func:`check_distances` already returned (what a reconstructor
    receives from :func:`distfold.geometry.reconstruct.reconstruct`) as a
    :class:`CheckedDistances`, without copying or checking them again.

    distances: (L, L) float64, Å; weights: (L, L) float64 or None. ``known`` is
    ``weights > 0`` off the diagonal, None when every off-diagonal pair is;
    ``max_asymmetry`` is 0.
    """
    known = None
    if weights is not None:
        n = len(distances)
        known = weights > 0
        np.fill_diagonal(known, False)  # already so in checked weights
        if np.count_nonzero(known) == n * (n - 1):
            known = None
    return CheckedDistances(distances, weights, known, 0.0)


#: Peak bytes per matrix entry (L^2) of ``distfold reconstruct``: the loaded float64
#: matrix, the checked copy and the reconstructor's (L, L) work arrays. Measured at
#: L = 3000: about 25 (smacof, classical) and 60 (refine) above the fixed cost; 96 leaves
#: headroom.
RECONSTRUCT_BYTES_PER_PAIR = 96
#: Fixed memory of the interpreter, numpy and scipy, bytes.
RECONSTRUCT_BASE_BYTES = 256 << 20
#: Share of the available memory a matrix may plan to use.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of
    ``/proc/meminfo``, else psutil if installed, else ``sysconf``), or None when unknown.
    The pipeline's memory guard (:mod:`distfold.pipeline.windows`) uses this one too."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - optional, and any failure means "unknown here"
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_matrix_memory(path: str | os.PathLike, length: int, what: str = "distance matrix",
                        available: int | None = None) -> None:
    """Refuse, with a one-line :class:`InputError`, an (L, L) matrix whose reconstruction
    would not fit in :data:`MEMORY_SHARE` of the available memory (nothing is refused
    when the available memory cannot be read)."""
    avail = available_memory() if available is None else available
    if avail is None:
        return
    need = RECONSTRUCT_BASE_BYTES + RECONSTRUCT_BYTES_PER_PAIR * length ** 2
    if need > MEMORY_SHARE * avail:
        usable = MEMORY_SHARE * avail - RECONSTRUCT_BASE_BYTES
        limit = int(np.sqrt(usable / RECONSTRUCT_BYTES_PER_PAIR)) if usable > 0 else 0
        raise InputError(f"{path}: a {length} x {length} {what} needs about {need / 2 ** 30:.1f} GiB to "
                         f"reconstruct but only {avail / 2 ** 30:.1f} GiB is available, enough for about "
                         f"{limit} residues")


def npy_header(path: str | os.PathLike, what: str = "distance matrix") -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes of data) that a ``.npy`` file's header declares, checked
    against the file without reading the data: a header that promises more data
    than the file holds (a truncated file, or a forged shape) is an
    :class:`InputError`, as are object arrays (which would need pickle)."""
    path = Path(path)
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:
                shape, _, dtype = fmt._read_array_header(fh, version)  # 3.0: no public reader
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable .npy {what} ({msg})") from None
    if dtype.hasobject:
        raise InputError(f"{path}: the .npy {what} holds Python objects, which distfold never loads (pickle)")
    count = 1
    for n in shape:
        count *= int(n)
    nbytes = count * dtype.itemsize
    size = path.stat().st_size
    if size < offset + nbytes:
        raise InputError(f"{path}: truncated .npy {what}: the header declares shape {tuple(shape)} of {dtype} "
                         f"({offset + nbytes:,} bytes) but the file holds {size:,} bytes")
    return tuple(int(n) for n in shape), dtype, nbytes


def text_columns(path: str | os.PathLike) -> int:
    """Number of values on the first line of a whitespace-separated text matrix that
    holds any (``#`` starts a comment), read in pieces so that a huge line costs no
    memory; 0 for a file without values."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    count, in_token, comment = 0, False, False
    with opener(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                return count
            while chunk:
                line, newline, chunk = chunk.partition(b"\n")
                if not comment:
                    body, hash_, _ = line.partition(b"#")
                    comment = bool(hash_)
                    tokens = body.split()
                    if tokens:
                        count += len(tokens) - (1 if in_token and not body[:1].isspace() else 0)
                    in_token = bool(body) and not body[-1:].isspace() and not comment
                if newline:
                    if count:
                        return count
                    comment, in_token = False, False


def load_matrix(path: str | os.PathLike, what: str = "distance matrix", available: int | None = None) -> np.ndarray:
    """Read an (L, L) matrix from ``.npy`` or a whitespace-separated text file
    (``.gz`` allowed); only shape and numeric type are checked here.

    Before any data is read, the size is checked: a ``.npy`` header must be
    square, numeric and backed by the file's bytes (:func:`npy_header`), and the
    matrix's reconstruction must fit in memory (:func:`check_matrix_memory`;
    ``available``: bytes, default the machine's available memory). A text
    matrix's L is the number of values on its first line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {what} file")
    name = path.name.lower()
    npy = name.endswith(".npy")
    kind = ".npy" if npy else "whitespace-separated text"
    try:
        if npy:
            shape, dtype, _ = npy_header(path, what)
            if dtype.kind not in "fiub":
                raise InputError(f"{path}: {what} must be numeric, got dtype {dtype}")
            if len(shape) != 2 or shape[0] != shape[1]:
                raise InputError(f"{path}: {what} not square: shape {shape}, expected (L, L)")
            check_matrix_memory(path, shape[0], what, available)
            # mapped, so that only the float64 copy takes memory
            arr = np.load(path, allow_pickle=False, mmap_mode="r") if shape[0] else np.zeros(shape, dtype)
        else:
            check_matrix_memory(path, text_columns(path), what, available)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy warns on empty text files
                arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable {kind} {what} ({msg})") from None
    if arr.size == 0:
        raise InputError(f"{path}: {what} is empty")
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{path}: {what} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"{path}: {what} not square: shape {arr.shape}, expected (L, L)")
    return np.array(arr, dtype=np.float64)


def stress(coords: np.ndarray, checked: CheckedDistances) -> tuple[float, float]:
    """(raw stress, Stress-1) of coordinates (L, 3) against the checked input
    (module docstring), computed directly, blockwise (no (L, L) temporaries)."""
    from scipy.spatial.distance import cdist

    x = np.asarray(coords, dtype=np.float64)
    d, w = checked.distances, checked.weights
    raw = den = 0.0
    for i0, i1, j0, j1 in _blocks(len(x)):
        dx = cdist(x[i0:i1], x[j0:j1])
        diff = dx - d[i0:i1, j0:j1]
        if w is not None:
            wb = w[i0:i1, j0:j1]
            r, s = float(np.vdot(wb * diff, diff)), float(np.vdot(wb * dx, dx))
        else:
            r, s = float(np.vdot(diff, diff)), float(np.vdot(dx, dx))
        half = 0.5 if i0 == j0 else 1.0  # a diagonal block holds each pair twice
        raw += half * r
        den += half * s
    return raw, stress1(raw, den)


def stress1(raw: float, denominator: float) -> float:
    """Kruskal's Stress-1 from raw stress and sum_{i<j} w_ij |x_i - x_j|^2."""
    if denominator > 0:
        return float(np.sqrt(raw / denominator))
    return 0.0 if raw == 0 else 1.0


def complete_distances(checked: CheckedDistances) -> np.ndarray:
    """A full (L, L) matrix for methods that need every pair (classical MDS).

    Ignored pairs get the shortest-path distance through known pairs (an upper
    bound by the triangle inequality); pairs still unreachable get the mean
    known distance at the same sequence separation |i - j| (or, failing that,
    the mean of all known distances).
    """
    d = checked.distances
    known = checked.known
    if known is None:
        return d
    n = len(d)
    offdiag = ~np.eye(n, dtype=bool)
    missing = offdiag & ~known
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    i, j = np.nonzero(np.triu(known, 1))
    # explicit zero-length edges would vanish from a sparse graph: keep them tiny
    graph = coo_matrix((np.maximum(d[i, j], 1e-9), (i, j)), shape=(n, n)).tocsr()
    rows = np.flatnonzero(missing.any(1))
    sp = shortest_path(graph, method="D", directed=False, indices=rows)
    full = d.copy()
    sub = full[rows]
    sub[missing[rows]] = sp[missing[rows]]
    full[rows] = sub
    full = np.minimum(full, full.T)  # both directions of a missing pair agree
    unreachable = ~np.isfinite(full)
    if unreachable.any():
        sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
        kn = np.triu(known, 1)
        counts = np.bincount(sep[kn], minlength=n)
        sums = np.bincount(sep[kn], weights=d[kn], minlength=n)
        overall = float(d[kn].mean())
        by_sep = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
        full[unreachable] = by_sep[sep[unreachable]]
    np.fill_diagonal(full, 0.0)
    return full
