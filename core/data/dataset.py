"""The distfold dataset directory format (version 1), readable with plain numpy.

A dataset directory holds:

- ``dataset.json``: ``{"format": "distfold-dataset", "version": 1, "params": {...}, "counts": {...},
  "fingerprint": "<sha256 of index.jsonl and coords.npy>"}``
- ``index.jsonl``: one JSON object per chain (one sample per protein chain), in row order::

      {"id": str, "sequence": str (full sequence, unobserved residues included),
       "source": str (input file), "chain": str, "family": str, "split": "train"|"val",
       "length": int (len(sequence)), "n_observed": int, "weight": float (1 / family size),
       "offset": int (first row in coords.npy), "duplicates": [str, ...], ...}

  Written by ``distfold data build`` (distfold.data.build) as well, all optional for readers:
  ``"breaks": [int, ...]`` (indices i where residues i-1 and i both have coordinates but
  their C-alpha atoms are > 4.2 Å apart: residues missing between them that the file does
  not list), ``"seqres": bool`` (the sequence is the file's full sequence, so unobserved
  residues are present and masked; False: observed residues only), ``"resolution": float|null``
  (Å), ``"method": str|null``, ``"ss": str`` (secondary structure, one character per residue
  of ``sequence``, ``len == length``: ``H``, ``E``, ``C``, the 3-state DSSP of
  ``mdtraj.compute_dssp(..., simplified=True)`` on the file's N, C-alpha, C and O atoms
  (:mod:`distfold.data.labels`; states in :data:`distfold.structure.secondary.SS_STATES`
  order), or ``-`` where there is no label: the residue is unobserved or misses a backbone
  atom; absent for a chain with no label at all, e.g. a C-alpha trace. Readers treat a
  missing ``ss`` as "no labels"). ``dataset.json`` then also has ``"build"`` (counts and
  timings) and ``"families_across_splits"``.

- ``coords.npy``: (sum of lengths, 3) float32 C-alpha coordinates in Å; rows of
  residues without coordinates (unobserved, masked) are NaN. Chain ``k``
  occupies rows ``offset_k .. offset_k + length_k``; its mask is
  ``np.isfinite(rows).all(1)``. Masked residues are excluded from every loss
  and metric; coordinates are never interpolated.
- ``report.tsv``: tab-separated ``file, chain, id, status, reason``: every input file (``-`` as
  chain for a file that failed or was excluded as a whole) and every chain, with its status
  (``ok``/``skipped``/``failed``) and reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from distfold.errors import InputError
from distfold.fileio import atomic_write

FORMAT = "distfold-dataset"
VERSION = 1


@dataclass
class Sample:
    record: dict[str, Any]
    coords: np.ndarray  # (L, 3) float32, NaN where masked

    @property
    def sequence(self) -> str:
        return self.record["sequence"]

    @property
    def mask(self) -> np.ndarray:
        """(L,) bool, True where the residue has coordinates."""
        return np.isfinite(self.coords).all(1)

    def distances(self) -> np.ndarray:
        """(L, L) float32 Å; NaN for pairs involving a masked residue."""
        from distfold.structure.metrics import distance_matrix  # cdist: the broadcast formula's bits, no (L, L, 3)

        return distance_matrix(self.coords).astype(np.float32)


class Dataset:
    """A dataset directory opened for reading (coords memory-mapped)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "dataset.json"
        if not meta_path.is_file():
            raise InputError(f"{self.path}: not a distfold dataset (no dataset.json)")
        try:
            self.meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{meta_path}: invalid JSON ({exc})") from None
        if self.meta.get("format") != FORMAT:
            raise InputError(f"{meta_path}: format is {self.meta.get('format')!r}, expected {FORMAT!r}")
        if int(self.meta.get("version", -1)) > VERSION:
            raise InputError(f"{meta_path}: dataset version {self.meta.get('version')} is newer than this "
                             f"distfold understands ({VERSION}); upgrade distfold")
        with open(self.path / "index.jsonl") as fh:
            self.records = [json.loads(line) for line in fh if line.strip()]
        self._coords = np.load(self.path / "coords.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        r = self.records[i]
        rows = np.array(self._coords[r["offset"]: r["offset"] + r["length"]], dtype=np.float32)
        return Sample(r, rows)

    def indices(self, split: str | None = None) -> list[int]:
        return [i for i, r in enumerate(self.records) if split is None or r["split"] == split]

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("fingerprint", ""))


def write_dataset(path: str | os.PathLike, records: Iterable[dict[str, Any]], coords: Iterable[np.ndarray],
                  params: dict[str, Any] | None = None, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write records and their (L, 3) coordinate arrays as a dataset directory.

    ``offset`` is filled in here; ``length`` must equal len(sequence) == len(coords).
    Files are written atomically; ``dataset.json`` last, so a directory without it
    is an unfinished build.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    records = [dict(r) for r in records]
    arrays = [np.asarray(c, dtype=np.float32).reshape(-1, 3) for c in coords]
    if len(records) != len(arrays):
        raise ValueError("records and coords differ in number")
    offset = 0
    for r, a in zip(records, arrays):
        if len(r["sequence"]) != len(a):
            raise ValueError(f"{r.get('id')}: sequence length {len(r['sequence'])} != coords rows {len(a)}")
        r["length"] = len(a)
        r["offset"] = offset
        r.setdefault("n_observed", int(np.isfinite(a).all(1).sum()))
        offset += len(a)
    allc = np.concatenate(arrays) if arrays else np.zeros((0, 3), np.float32)
    (path / "dataset.json").unlink(missing_ok=True)
    index_text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    with atomic_write(path / "index.jsonl") as fh:
        fh.write(index_text)
    with atomic_write(path / "coords.npy", "wb") as fh:
        np.save(fh, allc)
    h = hashlib.sha256(index_text.encode())
    h.update(allc.tobytes())
    counts: dict[str, Any] = {"chains": len(records)}
    for r in records:
        counts[r.get("split", "unknown")] = counts.get(r.get("split", "unknown"), 0) + 1
    counts["families"] = len({r.get("family") for r in records})
    meta = {"format": FORMAT, "version": VERSION, "params": params or {}, "counts": counts,
            "fingerprint": h.hexdigest()}
    meta.update(extra_meta or {})
    with atomic_write(path / "dataset.json") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
    return path
