"""Building a dataset directory (format: :mod:`distfold.data.dataset`) from structure files.

``distfold data build`` runs :func:`build_dataset`. The steps, and the exact rules:

1. **Inputs.** Files, or directories searched recursively, with the suffixes
   ``.pdb .ent .cif .mmcif`` (each optionally ``.gz``). Files whose stem (name
   without those suffixes) or chain id (``stem_chain``) is listed in ``exclude``
   are not read and are reported as ``skipped``.
2. **Parsing** (one process per file, :class:`~concurrent.futures.ProcessPoolExecutor`).
   Reading rules are those of :mod:`distfold.structure.io`: first model only,
   alternate locations resolved, MSE -> M, other modified amino acids to their
   parent where known, else X. One sample per protein chain; chains are never
   concatenated: in PDB files, molecules that share one chain id and repeat its
   residue numbers (common in simulation and docking files) are split into
   segments ``A``, ``A#1``, ... (:func:`distfold.structure.io.split_pdb_chain_segments`).
   A file that cannot be parsed is reported as ``failed`` and the
   build goes on.
3. **Missing residues.** Where the file gives the chain's full sequence
   (mmCIF ``_pdbx_poly_seq_scheme``, ``_entity_poly.pdbx_seq_one_letter_code_can``
   or ``_entity_poly_seq``; PDB ``SEQRES``), the observed residues are placed on
   it (residue numbering when it maps onto the sequence exactly, otherwise a
   global alignment that never lets an observed residue fall outside the full
   sequence) and the unobserved residues stay in the sequence with NaN
   coordinates (masked). Otherwise the sequence is the observed residues and
   chain breaks are only recorded. In both cases ``breaks`` lists every index
   ``i`` of the sequence where residues ``i-1`` and ``i`` both have coordinates
   but their C-alpha atoms are more than :data:`BREAK_DISTANCE` Å apart
   (residues missing between them, or a numbering gap with missing residues).
   Coordinates are never interpolated.
4. **Filters.** ``n_observed >= min_length`` (residues with coordinates) and
   share of ``X`` in the sequence ``<= max_unknown``.
5. **Duplicates.** Chains with identical sequences are merged; the copy kept is
   the best resolved: lowest resolution value (Å; files without one rank last),
   then most observed residues, then id order. The others are listed in the
   kept record's ``duplicates`` and reported as ``skipped``.
6. **Families.** Two chains are *related* when (a) their sequence identity,
   the number of identical aligned positions in a global alignment without
   end-gap penalties (biopython ``PairwiseAligner``, BLOSUM62, gap open -11,
   extend -1) divided by the length of the shorter sequence, is at least
   ``identity``, and (b) their best local alignment (same scoring) has a
   Karlin-Altschul E-value (lambda 0.267, K 0.041) of at most ``max_evalue``.
   (b) is needed because with the shorter length as denominator a 30-60-residue
   chain reaches 30 % identity against about 4 % of unrelated chains by chance
   (measured on the shared data), which would chain every family into one.
   Only candidate pairs are aligned: pairs with at least
   :data:`MIN_DIAGONAL_HITS` shared 3-mers on one diagonal band
   (:func:`diagonal_kmer_scores`). Families are the connected components of
   the related pairs (single linkage, union-find); a candidate pair whose two
   chains are already in one family is not aligned. A family is named after
   its first member id (sorted).
   With ``cluster="mmseqs"`` (the default ``"auto"`` when the ``mmseqs`` binary of MMseqs2
   is on PATH) the search is MMseqs2's instead (:func:`families_mmseqs`). A cascaded
   ``mmseqs cluster`` puts each chain under a representative; a member whose alignment to its
   representative passes the rule joins that family (:func:`mmseqs_representatives`), the
   others stay with the representatives; then those are searched against every chain
   (``mmseqs easy-search``, sensitivity :data:`MMSEQS_SENSITIVITY`, composition-bias
   correction and masking off, up to :data:`MMSEQS_MAX_SEQS` hits per query), which gives
   each hit's identical positions over the shorter sequence (``--seq-id-mode 1``) and its local
   BLOSUM62 11/1 score, and the same rule is applied to them (identity >= ``identity``,
   Karlin-Altschul E-value of that score for the pair's two lengths <= ``max_evalue``; hits
   near either threshold get the built-in alignments, :func:`apply_rule`). Pairs of two
   members are not searched there: they link families only through their representatives, so
   a member related to a member of another cluster with no searched pair linking the two can
   leave two families apart that an all-vs-all search would join. The split check below uses
   the related pairs found and searches the val members against the train members, so every
   train x val pair is searched once. The method and MMseqs2's version are recorded in
   ``dataset.json`` (``params.clustering``).
7. **Split.** Whole families go to ``val`` (in an order shuffled with ``seed``)
   while the val count stays within round(``val_fraction`` x chains), at least
   one chain when ``val_fraction`` > 0. Then every train x val pair not
   scored yet is scored too (:func:`enforce_split`, no prefilter); a related pair found there
   merges the two families and moves the val side to train, until no related
   pair crosses the split: the guarantee does not rest on the prefilter. That check is
   quadratic; above :data:`EXHAUSTIVE_SPLIT_CHECK_PAIRS` train x val pairs the built-in path
   relies on its prefilter's pairs instead and says so (``build.split_check`` in
   ``dataset.json``: ``exhaustive``, ``prefilter candidates`` or ``mmseqs hits``). With
   ``split_by_dir``, a chain whose path has a parent folder named ``train`` or
   ``val`` keeps that split (other chains take the majority split of their
   family's placed members, or a family split as above); families are still
   computed, the families with chains in both splits are listed in
   ``dataset.json`` (``families_across_splits``), and so are the related pairs
   across the two folders (``related_pairs_across_fixed_split``).
8. **Weights.** ``weight = 1 / family size`` (chains of the family in the dataset).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from distfold.errors import InputError

#: Consecutive observed C-alpha atoms farther apart than this (Å) mark a chain break.
BREAK_DISTANCE = 4.2
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
LENGTH_BINS = ((30, 63), (64, 127), (128, 255), (256, 511), (512, None))
KMER = 3
AMINO = "ACDEFGHIKLMNPQRSTVWY"
#: Diagonal band width (residues) and the shared 3-mer hits on one band that make a candidate pair.
DIAGONAL_BAND = 8
MIN_DIAGONAL_HITS = 3
#: Karlin-Altschul parameters of BLOSUM62 with gap costs 11/1 (NCBI BLAST tables).
KA_LAMBDA, KA_K = 0.267, 0.041
MAX_EVALUE = 1e-5
#: Family search: ``auto`` (MMseqs2 when ``mmseqs`` is on PATH, else the built-in search), or either one.
CLUSTER_METHODS = ("auto", "mmseqs", "builtin")
#: MMseqs2 prefilter sensitivity (-s) and hits kept per chain (--max-seqs) of the family search.
MMSEQS_SENSITIVITY = 7.5
MMSEQS_MAX_SEQS = 1000
#: Hits down to this much under ``identity`` by MMseqs2's count are re-aligned with the rule's global alignment.
MMSEQS_IDENTITY_MARGIN = 0.1
#: Hits with a Karlin-Altschul E-value within this factor of ``max_evalue`` (either side) are re-aligned too.
MMSEQS_EVALUE_MARGIN = 10.0
#: MMseqs2 k-mer length of the prefilter (-k).
MMSEQS_KMER = 5
#: Sensitivity of the cascaded ``mmseqs cluster`` run that picks representatives before the search.
MMSEQS_CLUSTER_SENSITIVITY = 4.0
#: Identity (MMseqs2's, over the shorter chain) of a member to its representative in that run.
MMSEQS_CLUSTER_IDENTITY = 0.3
#: Its clustering mode (0: greedy set cover, the representative is the chain with most neighbours; with
#: ``--cluster-reassign 1`` members that fail the criteria against their final representative are reassigned).
MMSEQS_CLUSTER_MODE = "0"
#: Hits kept per val member (--max-seqs) in the split check's search of val members against train members.
MMSEQS_REP_MAX_SEQS = 100
#: The built-in path aligns every train x val pair for the split check up to this many pairs
#: (the real chains of the shared data: about 66,000); above it, a quadratic cost (20,000 chains:
#: 36 million alignments), the check uses the pairs the 3-mer prefilter proposed.
EXHAUSTIVE_SPLIT_CHECK_PAIRS = 500_000


@dataclass
class BuildOptions:
    min_length: int = 30
    max_unknown: float = 0.1
    identity: float = 0.3
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 1
    split_by_dir: bool = False
    max_evalue: float = MAX_EVALUE
    exclude: frozenset[str] = frozenset()
    cluster: str = "auto"

    def params(self) -> dict[str, Any]:
        return {"min_length": self.min_length, "max_unknown": self.max_unknown, "identity": self.identity,
                "val_fraction": self.val_fraction, "seed": self.seed, "split_by_dir": self.split_by_dir,
                "excluded_ids": len(self.exclude), "identity_definition": IDENTITY_DEFINITION,
                "relation_definition": "related = identity >= identity and best local alignment (BLOSUM62, "
                                       "gap 11/1) Karlin-Altschul E-value <= max_evalue; families = single "
                                       "linkage over related pairs",
                "break_distance": BREAK_DISTANCE, "kmer": KMER,
                "max_evalue": self.max_evalue, "diagonal_band": DIAGONAL_BAND,
                "min_diagonal_hits": MIN_DIAGONAL_HITS}


IDENTITY_DEFINITION = ("identical aligned positions / length of the shorter sequence; global alignment, free end "
                       "gaps, BLOSUM62, gap open -11, extend -1 (biopython PairwiseAligner)")


# ----------------------------------------------------------------------------- inputs

def structure_stem(path: str | os.PathLike) -> str | None:
    """File name without its structure suffix (and .gz), or None if not a structure file."""
    name = Path(path).name
    low = name.lower()
    if low.endswith(".gz"):
        name, low = name[:-3], low[:-3]
    for suf in STRUCTURE_SUFFIXES:
        if low.endswith(suf) and len(low) > len(suf):
            return name[: -len(suf)]
    return None


def find_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Structure files among ``paths`` (directories searched recursively), sorted, unique."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(f"{p}: no such file or directory")
        if p.is_dir():
            found.extend(f for f in sorted(p.rglob("*")) if f.is_file() and structure_stem(f) is not None)
        elif structure_stem(p) is not None:
            found.append(p)
        else:
            raise InputError(f"{p}: not a structure file (expected {', '.join(STRUCTURE_SUFFIXES)}, optionally .gz)")
    seen, out = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def read_exclude(path: str | os.PathLike) -> frozenset[str]:
    """Ids to skip: one per line (file stems or ``stem_chain`` ids); blank lines and ``#`` comments ignored."""
    from distfold.fileio import read_text

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: exclude list not found")
    out = set()
    for line in read_text(p).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(line)
    return frozenset(out)


def dir_split(path: Path) -> str | None:
    """'train' or 'val' when a parent folder of ``path`` has that name (the nearest wins)."""
    for parent in path.parents:
        if parent.name in ("train", "val"):
            return parent.name
    return None


# ----------------------------------------------------------------------------- parsing

def find_breaks(coords: np.ndarray) -> list[int]:
    """Indices i where rows i-1 and i both have coordinates but are > BREAK_DISTANCE Å apart."""
    x = np.asarray(coords, dtype=np.float64)
    if len(x) < 2:
        return []
    d = np.linalg.norm(x[1:] - x[:-1], axis=1)
    return [int(i) + 1 for i in np.nonzero(np.isfinite(d) & (d > BREAK_DISTANCE))[0]]


def place_on_sequence(chain, full: str, scheme: dict[tuple[int, str], int] | None = None) -> np.ndarray | None:
    """Indices into ``full`` of each observed residue of ``chain``, or None if they cannot be placed.

    Tried in order: the file's own residue -> sequence mapping (``scheme``), a constant
    residue-number offset, a global alignment (observed residues may not fall in gaps).
    Placements must be strictly increasing and agree in letter (X matches anything).
    """
    obs = chain.sequence
    n, m = len(obs), len(full)
    if n == 0 or m < n:
        return None

    def ok(idx) -> bool:
        if idx is None or len(idx) != n or any(i < 0 or i >= m for i in idx):
            return False
        if any(b <= a for a, b in zip(idx, idx[1:])):
            return False
        return all(o == full[i] or "X" in (o, full[i]) for o, i in zip(obs, idx))

    if scheme:
        idx = [scheme.get(rid, -1) for rid in chain.residue_ids]
        if ok(idx):
            return np.asarray(idx)
    if chain.residue_ids and not any(ic for _, ic in chain.residue_ids):
        nums = [r for r, _ in chain.residue_ids]
        for j in range(m):
            if full[j] != obs[0] and "X" not in (full[j], obs[0]):
                continue
            off = nums[0] - j
            idx = [r - off for r in nums]
            if ok(idx):
                return np.asarray(idx)
    from Bio.Align import PairwiseAligner

    al = PairwiseAligner(mode="global")
    al.match_score, al.mismatch_score = 2.0, -3.0
    # an observed residue must sit on the full sequence (insertions forbidden); unobserved
    # residues are deletions, cheap inside and free at the ends
    new_names = hasattr(type(al), "insertion_score")  # biopython >= 1.86 renamed the gap attributes
    for new, old, value in (("insertion_score", "target_gap_score", -1000.0),
                            ("open_internal_deletion_score", "query_internal_open_gap_score", -4.0),
                            ("extend_internal_deletion_score", "query_internal_extend_gap_score", -0.05),
                            ("end_deletion_score", "query_end_gap_score", 0.0)):
        setattr(al, new if new_names else old, value)
    try:
        aln = al.align(full, obs)[0]
    except (ValueError, OverflowError):
        return None
    idx = [-1] * n
    for (t0, t1), (q0, q1) in zip(*aln.aligned):
        for k in range(q1 - q0):
            idx[q0 + k] = t0 + k
    if not ok(idx):
        return None
    return np.asarray(_snap_gaps_to_breaks(idx, find_breaks(chain.ca), ok))


def _snap_gaps_to_breaks(idx: list[int], breaks: list[int], ok: Callable[[list[int]], bool]) -> list[int]:
    """Move alignment gaps onto the chain breaks the coordinates show.

    Unobserved residues lie where consecutive observed C-alpha atoms are far apart. Where
    repeated letters let an alignment put a gap a few residues off, the residues between the
    gap and the nearest unexplained break are shifted, if every letter still matches.
    """
    idx = list(idx)
    for _ in range(len(breaks) + 1):
        gaps = [k for k in range(1, len(idx)) if idx[k] - idx[k - 1] > 1]
        stray = [k for k in gaps if k not in breaks]
        free = [b for b in breaks if b not in gaps]
        if not stray or not free:
            break
        moved = False
        for k in stray:
            for b in sorted(free, key=lambda b: abs(b - k)):
                g = idx[k] - idx[k - 1] - 1
                trial = list(idx)
                if b > k:
                    trial[k:b] = [i - g for i in idx[k:b]]
                else:
                    trial[b:k] = [i + g for i in idx[b:k]]
                if ok(trial):
                    idx, moved = trial, True
                    break
            if moved:
                break
        if not moved:
            break
    return idx


def parse_file(path: str) -> dict[str, Any]:
    """Every protein chain of one file as plain data (picklable), or an error.

    Returns ``{"path", "chains": [{"chain", "sequence", "coords" (L,3) float32 NaN-masked,
    "breaks", "seqres", "resolution", "method"}], "error": str|None, "notes": [..]}``.
    Never raises for a bad file: one file must not stop a build.
    """
    try:
        return _parse_file(path)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return {"path": path, "chains": [], "error": f"{type(exc).__name__}: {msg}".strip(), "notes": []}


def _parse_file(path: str) -> dict[str, Any]:
    from distfold.data.labels import chain_ss_labels, on_sequence as ss_on_sequence
    from distfold.structure.io import chains_of, load_structure_segments, polymer_sequences

    out: dict[str, Any] = {"path": path, "chains": [], "error": None, "notes": []}
    try:
        structure, labels = load_structure_segments(path)
        chains = chains_of(structure, path)
        ss_labels = chain_ss_labels(structure, chains)  # DSSP H/E/C per observed residue (distfold.data.labels)
        for ch in chains:
            ch.chain_id = labels.get(ch.chain_id, ch.chain_id)
        if not chains:
            raise InputError(f"{path}: no protein chain with C-alpha atoms")
        try:
            full_seqs = polymer_sequences(path)
        except InputError as exc:
            full_seqs = {}
            out["notes"].append(f"full sequences unreadable ({exc})")
    except InputError as exc:
        out["error"] = str(exc).removeprefix(f"{path}: ")
        return out
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a build
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
        return out
    header = getattr(structure, "header", {}) or {}
    res = header.get("resolution")
    try:
        res = float(res) if res is not None else None
    except (TypeError, ValueError):
        res = None
    if res is not None and not (0 < res < 100):
        res = None
    method = str(header.get("structure_method") or "").strip()
    method = None if method.lower() in ("", "unknown") else method.upper()
    for ch, ss_obs in zip(chains, ss_labels):
        ca = np.asarray(ch.ca, dtype=np.float32)
        entry = {"chain": ch.chain_id, "resolution": res, "method": method, "seqres": False}
        full = full_seqs.get(ch.chain_id)
        idx = None
        if full is not None:
            idx = place_on_sequence(ch, full.sequence, full.scheme)
            if idx is None:
                out["notes"].append(f"chain {ch.chain_id}: observed residues do not fit the file's full "
                                    f"sequence; using observed residues only")
        if idx is not None:
            coords = np.full((len(full.sequence), 3), np.nan, dtype=np.float32)
            coords[idx] = ca
            seq = list(full.sequence)
            for k, i in enumerate(idx):  # the observed residue's letter wins over an X in SEQRES
                if seq[i] == "X":
                    seq[i] = ch.sequence[k]
            entry.update(sequence="".join(seq), coords=coords, seqres=True)
        else:
            entry.update(sequence=ch.sequence, coords=ca)
        entry["breaks"] = find_breaks(entry["coords"])
        entry["ss"] = ss_on_sequence(ss_obs, idx, len(entry["sequence"]))
        out["chains"].append(entry)
    return out


# ----------------------------------------------------------------------------- identity and families

class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _aligner():
    from Bio.Align import PairwiseAligner, substitution_matrices

    al = PairwiseAligner(mode="global")
    al.substitution_matrix = substitution_matrices.load("BLOSUM62")
    al.open_gap_score, al.extend_gap_score = -11.0, -1.0
    al.end_gap_score = 0.0
    return al


def sequence_identity(a: str, b: str, aligner=None) -> float:
    """Identity of two sequences as defined in :data:`IDENTITY_DEFINITION` (0..1)."""
    if not a or not b:
        return 0.0
    aligner = aligner or _aligner()
    aln = aligner.align(_clean(a), _clean(b))[0]
    return aln.counts().identities / min(len(a), len(b))


def _clean(s: str) -> str:
    # BLOSUM62 knows the 20 amino acids plus B Z X *; anything else scores as X.
    return "".join(c if c in "ACDEFGHIKLMNPQRSTVWYBZX" else "X" for c in s.upper())


def _local_aligner():
    from Bio.Align import PairwiseAligner, substitution_matrices

    al = PairwiseAligner(mode="local")
    al.substitution_matrix = substitution_matrices.load("BLOSUM62")
    al.open_gap_score, al.extend_gap_score = -11.0, -1.0
    return al


def alignment_evalue(score: float, m: int, n: int) -> float:
    """Karlin-Altschul E-value of a local BLOSUM62 (gap 11/1) alignment score between lengths m and n."""
    return KA_K * m * n * math.exp(-KA_LAMBDA * score)


def pair_relation(a: str, b: str, aligners=None) -> tuple[float, float]:
    """(identity, E-value) of two sequences; they are related when identity >= threshold and
    E-value <= max_evalue (see the module docstring)."""
    glob, loc = aligners or (_aligner(), _local_aligner())
    ca, cb = _clean(a), _clean(b)
    ev = alignment_evalue(loc.score(ca, cb), len(a), len(b))
    return sequence_identity(a, b, glob), ev


def diagonal_kmer_scores(seqs: list[str], k: int = KMER, band: int = DIAGONAL_BAND) -> dict[tuple[int, int], int]:
    """For each pair (i < j) sharing a k-mer: the largest number of shared k-mer hits that fall on
    one diagonal band (offset i_pos - j_pos within ``band``; two staggered band grids).

    Related sequences share k-mers along a common diagonal; unrelated ones share them
    scattered. Vectorised: an inverted k-mer index, all hit pairs, counted per band.
    """
    lut = np.full(256, -1, np.int64)
    for i, c in enumerate(AMINO):
        lut[ord(c)] = i
    codes, sid, pos = [], [], []
    for s_i, s in enumerate(seqs):
        a = lut[np.frombuffer(s.encode("ascii", "replace"), np.uint8)]
        if len(a) < k:
            continue
        win = np.lib.stride_tricks.sliding_window_view(a, k)
        ok = (win >= 0).all(1)
        code = (win * (len(AMINO) ** np.arange(k)[::-1])).sum(1)
        p = np.nonzero(ok)[0]
        codes.append(code[ok])
        sid.append(np.full(len(p), s_i))
        pos.append(p)
    if not codes:
        return {}
    codes_a, sid_a, pos_a = np.concatenate(codes), np.concatenate(sid), np.concatenate(pos)
    order = np.lexsort((pos_a, sid_a, codes_a))
    codes_a, sid_a, pos_a = codes_a[order], sid_a[order], pos_a[order]
    bounds = np.flatnonzero(np.diff(codes_a)) + 1
    hits_a, hits_b, hits_d = [], [], []
    for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(codes_a)]):
        if e - s < 2:
            continue
        ii, jj = np.triu_indices(e - s, 1)
        a, b = sid_a[s + ii], sid_a[s + jj]
        m = a != b  # sorted by sequence within a k-mer, so a < b here
        hits_a.append(a[m])
        hits_b.append(b[m])
        hits_d.append(pos_a[s + ii][m] - pos_a[s + jj][m])
    if not hits_a:
        return {}
    ha, hb, hd = np.concatenate(hits_a), np.concatenate(hits_b), np.concatenate(hits_d)
    n = len(seqs)
    maxlen = max(len(s) for s in seqs) + band
    nbands = 2 * maxlen // band + 2
    pair = ha.astype(np.int64) * n + hb
    best: dict[int, int] = {}
    for shift in (0, band // 2):
        key = pair * nbands + (hd + maxlen + shift) // band
        uk, cnt = np.unique(key, return_counts=True)
        up = uk // nbands
        o = np.lexsort((cnt, up))
        up, cnt = up[o], cnt[o]
        last = np.r_[np.flatnonzero(np.diff(up)), len(up) - 1]
        for p_, c_ in zip(up[last].tolist(), cnt[last].tolist()):
            if c_ > best.get(p_, 0):
                best[p_] = c_
    return {(p_ // n, p_ % n): c_ for p_, c_ in best.items()}


def candidate_pairs(seqs: list[str], min_hits: int = MIN_DIAGONAL_HITS) -> list[tuple[int, int]]:
    """Pairs (i < j) worth aligning: at least ``min_hits`` shared 3-mers on one diagonal band."""
    return sorted(p for p, c in diagonal_kmer_scores(seqs).items() if c >= min_hits)


def _relation_chunk(args) -> list[tuple[float, float]]:
    seqs, pairs, max_evalue = args
    glob, loc = _aligner(), _local_aligner()
    out = []
    for i, j in pairs:
        ev = alignment_evalue(loc.score(_clean(seqs[i]), _clean(seqs[j])), len(seqs[i]), len(seqs[j]))
        # the identity alignment is only needed for significant pairs
        out.append((sequence_identity(seqs[i], seqs[j], glob) if ev <= max_evalue else -1.0, ev))
    return out


def _score(seqs: list[str], pairs: list[tuple[int, int]], max_evalue: float, ex,
           workers: int) -> list[tuple[float, float]]:
    """(identity or -1 when not significant, E-value) per pair, in parallel when ``ex``."""
    return _in_chunks(_relation_chunk, seqs, pairs, ex, workers, max_evalue)


def _in_chunks(fn, seqs: list[str], pairs: list[tuple[int, int]], ex, workers: int, *extra) -> list:
    """``fn((seqs, chunk, *extra))`` over chunks of ``pairs``, in parallel when ``ex``; results in order."""
    if not pairs:
        return []
    size = max(25, len(pairs) // (4 * max(1, workers)) + 1)
    jobs = [(seqs, pairs[s:s + size], *extra) for s in range(0, len(pairs), size)]
    return [x for r in (ex.map(fn, jobs) if ex else map(fn, jobs)) for x in r]


def _names(ids: list[str], uf: UnionFind) -> list[str]:
    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(uf.find(i), []).append(i)
    name = {root: min(ids[m] for m in mem) for root, mem in members.items()}
    return [name[uf.find(i)] for i in range(len(ids))]


def families(ids: list[str], seqs: list[str], identity: float, max_evalue: float = MAX_EVALUE, workers: int = 1,
             progress: Callable[[str], None] | None = None,
             scored: dict[tuple[int, int], float] | None = None
             ) -> tuple[list[str], list[tuple[int, int, float]], int]:
    """Family name per chain (single linkage over related pairs), the links found, pairs scored.

    Candidate pairs are scored in batches, most shared diagonal 3-mers first; a pair whose
    chains are already in one family is not aligned (it cannot change single-linkage
    families), so big families cost little. ``links`` therefore holds the related pairs
    that joined families, not every related pair. Pairs scored go into ``scored``
    (pair -> identity when related, else -1).
    """
    scores = diagonal_kmer_scores(seqs)
    pairs = sorted((p for p, c in scores.items() if c >= MIN_DIAGONAL_HITS), key=lambda p: (-scores[p], p))
    n_all = len(seqs) * (len(seqs) - 1) // 2
    if progress:
        progress(f"{len(pairs)} candidate pairs of {n_all} after the 3-mer prefilter")
    uf = UnionFind(len(seqs))
    links: list[tuple[int, int, float]] = []
    n_scored = 0
    batch = 1000 * max(1, workers)
    ex = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for start in range(0, len(pairs), batch):
            todo = [(i, j) for i, j in pairs[start:start + batch] if uf.find(i) != uf.find(j)]
            rel = _score(seqs, todo, max_evalue, ex, workers)
            n_scored += len(todo)
            for (i, j), (v, ev) in zip(todo, rel):
                if scored is not None:
                    scored[(i, j)] = v if (v >= identity and ev <= max_evalue) else -1.0
                if v >= identity and ev <= max_evalue:
                    if uf.find(i) != uf.find(j):
                        links.append((i, j, v))
                    uf.union(i, j)
            if progress:
                progress(f"candidates {min(start + batch, len(pairs))}/{len(pairs)}: {n_scored} aligned, "
                         f"{len(links)} joins")
    finally:
        if ex:
            ex.shutdown()
    return _names(ids, uf), links, n_scored


# ----------------------------------------------------------------------------- MMseqs2 family search

def mmseqs_version() -> str | None:
    """The version of the ``mmseqs`` binary on PATH, or None when there is none."""
    exe = shutil.which("mmseqs")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def resolve_cluster(choice: str) -> tuple[str, str | None]:
    """('mmseqs' or 'builtin', MMseqs2 version or None) for ``choice`` in :data:`CLUSTER_METHODS`."""
    if choice not in CLUSTER_METHODS:
        raise InputError(f"cluster method must be one of {', '.join(CLUSTER_METHODS)}, not {choice!r}")
    if choice == "builtin":
        return "builtin", None
    version = mmseqs_version()
    if version is None:
        if choice == "mmseqs":
            raise InputError("--cluster mmseqs: no working mmseqs binary on PATH (Debian package mmseqs2)")
        return "builtin", None
    return "mmseqs", version


def _identity_chunk(args) -> list[float]:
    seqs, pairs = args
    glob = _aligner()
    return [sequence_identity(seqs[i], seqs[j], glob) for i, j in pairs]


def _identities(seqs: list[str], pairs: list[tuple[int, int]], ex, workers: int) -> list[float]:
    """:func:`sequence_identity` per pair, in parallel when ``ex``."""
    return _in_chunks(_identity_chunk, seqs, pairs, ex, workers)


def _mmseqs_exe() -> str:
    exe = shutil.which("mmseqs")
    if exe is None:
        raise InputError("no mmseqs binary on PATH (Debian package mmseqs2)")
    return exe


def _mmseqs(exe: str, *args: str) -> None:
    """One ``mmseqs`` command; a failure is a one-line InputError."""
    run = subprocess.run([exe, *args, "-v", "1"], capture_output=True, text=True)
    if run.returncode != 0:
        raise InputError(f"mmseqs {args[0]} failed (exit {run.returncode}): "
                         f"{(run.stderr or run.stdout).strip()[-500:]}")


def _write_fasta(path: str, seqs: list[str], idx: Iterable[int]) -> None:
    """``seqs[i]`` for i in ``idx``, named by their index in ``seqs`` (hits come back as indices)."""
    with open(path, "w") as fh:
        fh.write("".join(f">{i}\n{_clean(seqs[i])}\n" for i in idx))


def _read_hits(path: str, best: dict[tuple[int, int], tuple[float, float]]) -> None:
    """Fold a ``query,target,fident,raw`` table into ``best``: pair (i < j) -> (fident, raw), the
    best of both directions."""
    with open(path) as fh:
        for line in fh:
            q, t, fident, raw = line.split("\t")
            i, j = int(q), int(t)
            if i == j:
                continue
            p = (i, j) if i < j else (j, i)
            v, r = best.get(p, (0.0, -math.inf))
            best[p] = (max(v, float(fident)), max(r, float(raw)))


def _loose_evalue(seqs: list[str], max_evalue: float) -> float:
    """MMseqs2's own E-value cut-off (a pre-screen): loose enough to keep every pair the rule accepts."""
    total = sum(len(x) for x in seqs)
    shortest = max(1, min(len(x) for x in seqs))
    # pairwise E = K m n exp(-lambda S); MMseqs2 scales by the database size instead (~ total / n)
    return max(10.0, 100.0 * MMSEQS_EVALUE_MARGIN * max_evalue * total / shortest)


def _search_args(seqs: list[str], identity: float, max_evalue: float, workers: int, sensitivity: float,
                 max_seqs: int) -> list[str]:
    return ["--min-seq-id", f"{max(0.0, identity - MMSEQS_IDENTITY_MARGIN):g}", "--seq-id-mode", "1",
            "-e", f"{_loose_evalue(seqs, max_evalue):g}", "--comp-bias-corr", "0", "--mask", "0",
            "-s", str(sensitivity), "-k", str(MMSEQS_KMER), "--max-seqs", str(max_seqs),
            "--threads", str(max(1, workers)), "--format-output", "query,target,fident,raw"]


def mmseqs_hits(seqs: list[str], queries: Iterable[int], targets: Iterable[int] | None, identity: float,
                max_evalue: float, workers: int = 1, sensitivity: float = MMSEQS_SENSITIVITY,
                max_seqs: int = MMSEQS_MAX_SEQS) -> dict[tuple[int, int], tuple[float, float]]:
    """MMseqs2's hits of ``queries`` against ``targets`` (indices into ``seqs``; None: the queries
    themselves, all-vs-all): pair (i < j) -> (identical positions over the shorter sequence, raw
    local BLOSUM62 11/1 score), the best of both directions. Settings: see :func:`mmseqs_relations`."""
    exe = _mmseqs_exe()
    queries = list(queries)
    best: dict[tuple[int, int], tuple[float, float]] = {}
    if not queries or (targets is not None and not list(targets)):
        return best
    with tempfile.TemporaryDirectory(prefix="distfold-mmseqs-") as tmp:
        qfa, hits = os.path.join(tmp, "queries.fasta"), os.path.join(tmp, "hits.tsv")
        _write_fasta(qfa, seqs, queries)
        tfa = qfa
        if targets is not None:
            tfa = os.path.join(tmp, "targets.fasta")
            _write_fasta(tfa, seqs, targets)
        _mmseqs(exe, "easy-search", qfa, tfa, hits, os.path.join(tmp, "work"),
                *_search_args(seqs, identity, max_evalue, workers, sensitivity, max_seqs))
        _read_hits(hits, best)
    return best


def apply_rule(seqs: list[str], best: dict[tuple[int, int], tuple[float, float]], identity: float,
               max_evalue: float, workers: int = 1, uf: UnionFind | None = None) -> dict[tuple[int, int], float]:
    """Related pairs (i < j) -> identity among MMseqs2's hits ``best`` (:func:`mmseqs_hits`).

    The rule of :func:`pair_relation` on MMseqs2's numbers: identical positions over the
    shorter sequence (``--seq-id-mode 1``) >= ``identity`` and the Karlin-Altschul E-value of
    the local BLOSUM62 11/1 score (``raw``, composition bias correction off) for the pair's
    two lengths <= ``max_evalue``. MMseqs2's numbers are not the rule's own: it counts
    identities in its local alignment (a few per cent under the rule's global one at times)
    and its local score can differ by a few units from biopython's (measured: 57 against 58
    for two 35-residue chains, which put the E-value on either side of 1e-5). So a hit is
    decided by MMseqs2's numbers only when they are clear of both thresholds; a *border* hit,
    identity under ``identity`` by less than :data:`MMSEQS_IDENTITY_MARGIN` or E-value within
    a factor :data:`MMSEQS_EVALUE_MARGIN` of ``max_evalue``, gets the rule's own alignments
    (:func:`pair_relation`). With ``uf`` (families so far), the clear pairs are joined in it first
    and a border hit whose two chains are already in one family is not re-aligned (it cannot
    change single-linkage families) and is left out of the result.
    """
    related: dict[tuple[int, int], float] = {}
    border, border_identity = [], []  # re-scored fully; only the identity re-aligned (E-value clear)
    for (i, j), (v, raw) in sorted(best.items()):
        ev = alignment_evalue(raw, len(seqs[i]), len(seqs[j]))
        if ev > max_evalue * MMSEQS_EVALUE_MARGIN:
            continue
        if ev > max_evalue / MMSEQS_EVALUE_MARGIN:
            border.append((i, j))
        elif v >= identity:
            related[(i, j)] = v
            if uf is not None:
                uf.union(i, j)
        else:
            border_identity.append((i, j))
    if uf is not None:
        border = [(i, j) for i, j in border if uf.find(i) != uf.find(j)]
        border_identity = [(i, j) for i, j in border_identity if uf.find(i) != uf.find(j)]
    ex = (ProcessPoolExecutor(max_workers=workers)
          if workers > 1 and len(border) + len(border_identity) > 1000 else None)
    try:
        rescored = _score(seqs, border, max_evalue, ex, workers)
        identities = _identities(seqs, border_identity, ex, workers)
    finally:
        if ex:
            ex.shutdown()
    for p, (v, ev) in zip(border, rescored):
        if v >= identity and ev <= max_evalue:
            related[p] = v
    for p, v in zip(border_identity, identities):
        if v >= identity:
            related[p] = v
    return related


def mmseqs_relations(seqs: list[str], identity: float, max_evalue: float, workers: int = 1,
                     sensitivity: float = MMSEQS_SENSITIVITY, max_seqs: int = MMSEQS_MAX_SEQS
                     ) -> dict[tuple[int, int], float]:
    """Related pairs (i < j) -> identity, from one all-vs-all MMseqs2 search of ``seqs``
    (:func:`mmseqs_hits`, then :func:`apply_rule`).

    MMseqs2's own E-value (database-size based) only pre-screens, with a cut-off loose enough
    to keep every pair the pairwise rule accepts. Low-complexity masking is off, as in the rule
    (with it, a 34-residue coiled coil and its identical 35-residue copy in the shared data were
    not found), and the k-mer length is :data:`MMSEQS_KMER` (MMseqs2's default at this
    sensitivity missed four related pairs of short cysteine-rich chains in the shared data).
    """
    best = mmseqs_hits(seqs, range(len(seqs)), None, identity, max_evalue, workers, sensitivity, max_seqs)
    return apply_rule(seqs, best, identity, max_evalue, workers)


def mmseqs_representatives(seqs: list[str], identity: float, max_evalue: float, workers: int = 1,
                           cluster_identity: float = MMSEQS_CLUSTER_IDENTITY
                           ) -> tuple[list[int], dict[tuple[int, int], float]]:
    """Redundancy reduction before the search: (the chains still to search against every chain,
    the related member-representative pairs (i < j) -> identity).

    ``mmseqs cluster`` (cascaded: linclust, then prefilter and alignment of the
    representatives up to sensitivity :data:`MMSEQS_CLUSTER_SENSITIVITY`; mode
    :data:`MMSEQS_CLUSTER_MODE` with reassignment, ``--min-seq-id`` the larger of ``identity`` and
    ``cluster_identity``, MMseqs2 E-value <= ``max_evalue``) puts each chain under a
    representative. Every member is then aligned to its representative (``mmseqs align``, full
    Smith-Waterman) and the pair is judged by the family rule (:func:`apply_rule`, border pairs
    re-aligned with biopython). A member that passes is in its representative's family through
    a related pair; one that fails (the cascade can chain members through intermediate
    representatives) stays to be searched with the representatives.
    """
    exe = _mmseqs_exe()
    n = len(seqs)
    with tempfile.TemporaryDirectory(prefix="distfold-mmseqs-") as tmp:
        fa, db, clu, aln, tsv = (os.path.join(tmp, x) for x in ("chains.fasta", "db", "clu", "aln", "aln.tsv"))
        _write_fasta(fa, seqs, range(n))
        threads = ["--threads", str(max(1, workers))]
        _mmseqs(exe, "createdb", fa, db)
        _mmseqs(exe, "cluster", db, clu, os.path.join(tmp, "work"),
                "--min-seq-id", f"{max(identity, cluster_identity):g}",
                "--seq-id-mode", "1", "-c", "0", "-e", f"{max_evalue:g}", "--mask", "0", "--comp-bias-corr", "0",
                "-s", str(MMSEQS_CLUSTER_SENSITIVITY), "-k", str(MMSEQS_KMER), "--cluster-mode", MMSEQS_CLUSTER_MODE,
                "--cluster-reassign", "1", *threads)
        _mmseqs(exe, "align", db, db, clu, aln, "--alignment-mode", "3", "-e", "inf", "--min-seq-id", "0",
                "--seq-id-mode", "1", "--comp-bias-corr", "0", *threads)
        _mmseqs(exe, "convertalis", db, db, aln, tsv, "--format-output", "query,target,fident,raw", *threads)
        _mmseqs(exe, "createtsv", db, db, clu, os.path.join(tmp, "clu.tsv"), *threads)
        rep = list(range(n))
        with open(os.path.join(tmp, "clu.tsv")) as fh:
            for line in fh:
                r, m = line.split("\t")
                rep[int(m)] = int(r)
        best: dict[tuple[int, int], tuple[float, float]] = {}
        _read_hits(tsv, best)
    edges = {(min(i, r), max(i, r)): best.get((min(i, r), max(i, r)), (0.0, -math.inf))
             for i, r in enumerate(rep) if i != r}
    related = apply_rule(seqs, edges, identity, max_evalue, workers)
    joined = {m for p in related for m in p if rep[m] != m}
    return [i for i in range(n) if i not in joined], related


def families_mmseqs(ids: list[str], seqs: list[str], identity: float, max_evalue: float = MAX_EVALUE,
                    workers: int = 1, progress: Callable[[str], None] | None = None,
                    scored: dict[tuple[int, int], float] | None = None, representatives: bool = True,
                    searched: set[int] | None = None, seconds: dict[str, float] | None = None
                    ) -> tuple[list[str], list[tuple[int, int, float]], int]:
    """:func:`families` with MMseqs2's search; ``scored`` receives the related pairs found.

    ``representatives`` (the default): :func:`mmseqs_representatives` first, then one search
    (:func:`mmseqs_hits`) of the representatives and the members that failed the rule against
    theirs, as queries, against every chain; a member joins its representative's family. MMseqs2's
    prefilter cost grows with the number of queries (each query's similar k-mers are listed at
    this sensitivity), so few queries against every chain is what makes it cheap. Families then differ from an
    all-vs-all search of every chain only where a member is related to a chain of another
    cluster while no searched pair links the two clusters. Without it: one all-vs-all search of
    every chain (every pair searched, so pairs not in ``scored`` are not related). ``searched``
    receives the chains searched against every chain, ``seconds`` the time of each part.
    """
    seconds = seconds if seconds is not None else {}
    t0 = time.perf_counter()
    uf = UnionFind(len(seqs))
    related: dict[tuple[int, int], float] = {}
    search = list(range(len(seqs)))
    if representatives:
        search, related = mmseqs_representatives(seqs, identity, max_evalue, workers)
        for i, j in related:
            uf.union(i, j)
        if progress:
            progress(f"MMseqs2 clustering: {len(seqs) - len(search)} of {len(seqs)} chains joined to a related "
                     f"representative; searching the other {len(search)} against every chain")
    t1 = time.perf_counter()
    if representatives:
        seconds["representatives"] = round(t1 - t0, 1)
        best = mmseqs_hits(seqs, search, range(len(seqs)), identity, max_evalue, workers)
    else:
        best = mmseqs_hits(seqs, search, None, identity, max_evalue, workers)
    t2 = time.perf_counter()
    seconds["search"] = round(t2 - t1, 1)
    if searched is not None:
        searched.update(search)
    related.update(apply_rule(seqs, best, identity, max_evalue, workers, uf))
    seconds["rule"] = round(time.perf_counter() - t2, 1)
    if progress:
        progress(f"MMseqs2: {len(related)} related pairs among {len(seqs)} chains")
    uf = UnionFind(len(seqs))
    links = []
    for (i, j), v in sorted(related.items()):
        if scored is not None:
            scored[(i, j)] = v
        if uf.find(i) != uf.find(j):
            links.append((i, j, v))
            uf.union(i, j)
    return _names(ids, uf), links, len(related)


def mmseqs_cross_search(seqs: list[str], searched: set[int], identity: float, max_evalue: float, workers: int
                        ) -> Callable[[list[int], list[int]], tuple[dict[tuple[int, int], float], int]]:
    """The split check's search for :func:`enforce_split` after :func:`families_mmseqs`: a pair with
    a chain in ``searched`` (searched against every chain there) is not searched again; the val
    members are searched against the train members (:func:`mmseqs_hits`, :func:`apply_rule`)."""
    def cross(val: list[int], train: list[int]) -> tuple[dict[tuple[int, int], float], int]:
        vq = [i for i in val if i not in searched]
        tt = [i for i in train if i not in searched]
        if not vq or not tt:
            return {}, 0
        best = mmseqs_hits(seqs, vq, tt, identity, max_evalue, workers, max_seqs=MMSEQS_REP_MAX_SEQS)
        return apply_rule(seqs, best, identity, max_evalue, workers), len(vq) * len(tt)
    return cross


def clustering_card(method: str, version: str | None) -> dict[str, Any]:
    """How families were searched, for ``dataset.json`` (``params.clustering``)."""
    if method == "mmseqs":
        return {"method": "mmseqs", "mmseqs_version": version,
                "search": f"representatives first: mmseqs cluster (cascaded, --cluster-mode {MMSEQS_CLUSTER_MODE}, "
                          f"--cluster-reassign 1, "
                          f"-s {MMSEQS_CLUSTER_SENSITIVITY:g}, --min-seq-id max(identity, {MMSEQS_CLUSTER_IDENTITY:g}), "
                          f"-e max_evalue), each member aligned to its representative (mmseqs align, "
                          f"--alignment-mode 3) and kept there only if the pair passes the rule, the others "
                          f"searched with the representatives; then those searched against every chain "
                          f"(mmseqs easy-search, -s {MMSEQS_SENSITIVITY}, -k {MMSEQS_KMER}, "
                          f"--max-seqs {MMSEQS_MAX_SEQS}, --comp-bias-corr 0, --mask 0, --seq-id-mode 1); "
                          f"families = single linkage over member-representative and searched related pairs",
                "rule": "identity = MMseqs2 fident over the shorter sequence (the built-in global alignment's "
                        f"for hits less than {MMSEQS_IDENTITY_MARGIN} under the threshold); E-value = Karlin-Altschul "
                        "(lambda 0.267, K 0.041) of MMseqs2's raw local BLOSUM62 11/1 score for the pair's lengths "
                        f"(the built-in local alignment's within a factor {MMSEQS_EVALUE_MARGIN:g} of the cut-off); "
                        "split check: the related pairs found, plus a search of the val members against "
                        f"the train members (same settings, --max-seqs {MMSEQS_REP_MAX_SEQS}), the pairs no "
                        "search above covered"}
    return {"method": "builtin",
            "search": f"{KMER}-mer diagonal prefilter (>= {MIN_DIAGONAL_HITS} hits on a {DIAGONAL_BAND}-residue band), "
                      f"biopython alignments; every train x val pair aligned for the split check up to "
                      f"{EXHAUSTIVE_SPLIT_CHECK_PAIRS} pairs, the prefilter's pairs above"}


def enforce_split(ids: list[str], seqs: list[str], fams: list[str], splits: list[str], identity: float,
                  max_evalue: float = MAX_EVALUE, fixed: list[str | None] | None = None, workers: int = 1,
                  scored: dict[tuple[int, int], float] | None = None,
                  progress: Callable[[str], None] | None = None, searched_all: bool = False,
                  cross_search: Callable[[list[int], list[int]], tuple[dict[tuple[int, int], float], int]] | None = None
                  ) -> tuple[list[str], list[str], list[tuple[str, str, float]], int]:
    """Check every train x val pair (no prefilter) and repair the split.

    The k-mer prefilter of :func:`families` can miss a related pair (measured: 1 of 99,330
    cross-split pairs on the shared data, two 30-residue zinc fingers). Here each such pair
    not scored before (``scored``: pair -> identity if related else -1) is scored; a related
    pair merges the two families, and the merged family's val chains move to train (chains
    whose split is ``fixed`` stay). Repeats until no related pair crosses the split.
    ``searched_all``: every pair was already searched (MMseqs2) and ``scored`` holds the related
    ones, so nothing new is aligned; the repair works on the pairs in ``scored``. With
    ``cross_search`` (val indices, train indices -> (related pairs among them not searched before,
    pairs searched)) as well, the val chains are searched against every train chain not searched
    against them yet (all of them, then the chains moved to train) and the related pairs found
    join ``scored``. Returns
    (families, splits, every related pair across the split that could not be repaired because
    both chains are fixed, pairs scored here).
    """
    n = len(seqs)
    fixed = fixed or [None] * n
    scored = scored if scored is not None else {}
    uf = UnionFind(n)
    first: dict[str, int] = {}
    for i, f in enumerate(fams):
        uf.union(first.setdefault(f, i), i)
    splits = list(splits)
    n_scored = 0
    searched_train: set[int] = set()
    ex = ProcessPoolExecutor(max_workers=workers) if workers > 1 and not searched_all else None
    try:
        while True:
            tr = [i for i in range(n) if splits[i] == "train"]
            va = [j for j in range(n) if splits[j] == "val"]
            related = []
            if cross_search is not None:
                new_tr = [i for i in tr if i not in searched_train]
                searched_train.update(new_tr)
                if new_tr and va:
                    found, n_pairs = cross_search(va, new_tr)
                    scored.update(found)
                    n_scored += n_pairs
                    if progress:
                        progress(f"split check: {n_pairs} val x train pairs searched, {len(found)} related")
            if searched_all:
                in_val = set(va)  # the related pairs crossing the split, from the search's own hits
                related = [(i, j, v) for (i, j), v in scored.items()
                           if v >= 0 and (i in in_val) != (j in in_val) and uf.find(i) != uf.find(j)]
            else:
                todo = []
                for i in tr:
                    for j in va:
                        p = (i, j) if i < j else (j, i)
                        if p not in scored:
                            todo.append(p)
                if not todo:
                    break
                if progress:
                    progress(f"checking {len(todo)} train x val pairs exhaustively")
                rel = _score(seqs, todo, max_evalue, ex, workers)
                n_scored += len(todo)
                for (i, j), (v, ev) in zip(todo, rel):
                    ok = v >= identity and ev <= max_evalue
                    scored[(i, j)] = v if ok else -1.0
                    if ok:
                        related.append((i, j, v))
            if not related:
                break
            for i, j, v in related:
                uf.union(i, j)
            moved = 0
            train_roots = {uf.find(t) for t in tr}
            for k in range(n):
                if splits[k] == "val" and not fixed[k] and uf.find(k) in train_roots:
                    splits[k] = "train"
                    moved += 1
            if progress:
                progress(f"{len(related)} related train x val pairs found by the exhaustive check: families merged, "
                         f"{moved} chains moved to train")
            if not moved:
                break
    finally:
        if ex:
            ex.shutdown()
    stuck = sorted((ids[i], ids[j], round(v, 4)) for (i, j), v in scored.items()
                   if v >= 0 and splits[i] != splits[j] and fixed[i] and fixed[j])
    return _names(ids, uf), splits, stuck, n_scored


def split_families(fams: list[str], val_fraction: float, seed: int,
                   fixed: list[str | None] | None = None) -> list[str]:
    """'train'/'val' per chain, whole families at a time.

    ``fixed``: a split per chain or None; a family with fixed members takes the majority
    of their splits for its unfixed members (fixed chains keep theirs). Families with no
    fixed member go to val, in an order shuffled with ``seed``, while the val count stays
    within round(``val_fraction`` x chains), at least 1 when ``val_fraction`` > 0.
    """
    n = len(fams)
    fixed = fixed or [None] * n
    split: list[str | None] = list(fixed)
    by_fam: dict[str, list[int]] = {}
    for i, f in enumerate(fams):
        by_fam.setdefault(f, []).append(i)
    free = []
    for f, mem in sorted(by_fam.items()):
        given = [fixed[i] for i in mem if fixed[i]]
        if given:
            major = "val" if given.count("val") > given.count("train") else "train"
            for i in mem:
                split[i] = split[i] or major
        else:
            free.append(f)
    # at least one chain in val when val_fraction > 0 (small datasets), never more than asked for otherwise
    target = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    n_val = sum(1 for s in split if s == "val")
    rng = random.Random(seed)
    rng.shuffle(free)
    for f in free:
        mem = by_fam[f]
        go_val = n_val + len(mem) <= target
        for i in mem:
            split[i] = "val" if go_val else "train"
        if go_val:
            n_val += len(mem)
    return [s or "train" for s in split]


# ----------------------------------------------------------------------------- build

@dataclass
class BuildResult:
    path: Path
    records: list[dict[str, Any]]
    report: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # file, chain, id, status, reason
    stats: dict[str, Any] = field(default_factory=dict)


def _parse_all(files: list[Path], workers: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    paths = [str(f) for f in files]
    out: list[dict[str, Any]] = []
    step = max(1, len(paths) // 20)
    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            for k, r in enumerate(ex.map(parse_file, paths, chunksize=4), 1):
                out.append(r)
                if k % step == 0 or k == len(paths):
                    log(f"parsed {k}/{len(paths)} files")
    else:
        for k, p in enumerate(paths, 1):
            out.append(parse_file(p))
            if k % step == 0 or k == len(paths):
                log(f"parsed {k}/{len(paths)} files")
    return out


def build_dataset(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, options: BuildOptions,
                  log: Callable[[str], None] | None = None) -> BuildResult:
    """Build a dataset directory; see the module docstring for the rules."""
    from distfold.data.dataset import write_dataset
    from distfold.fileio import atomic_write

    log = log or (lambda m: print(m, file=sys.stderr))
    t0 = time.perf_counter()
    method, mm_version = resolve_cluster(options.cluster)  # before any work: a missing mmseqs fails at once
    inputs = list(inputs)
    files = find_inputs(inputs)
    if not files:
        raise InputError(f"no structure files ({', '.join(STRUCTURE_SUFFIXES)}, optionally .gz) in "
                         f"{', '.join(str(p) for p in inputs)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory")
    report: list[tuple[str, str, str, str, str]] = []
    todo = []
    for f in files:
        stem = structure_stem(f)
        if stem in options.exclude:
            report.append((str(f), "-", stem, "skipped", "excluded"))
        else:
            todo.append(f)
    log(f"{len(files)} structure files, {len(files) - len(todo)} excluded; parsing with {options.workers} "
        f"worker(s)")
    parsed = _parse_all(todo, options.workers, log)
    t_parsed = time.perf_counter()

    cands: list[dict[str, Any]] = []
    for f, res in zip(todo, parsed):
        if res["error"]:
            report.append((str(f), "-", structure_stem(f) or f.name, "failed", res["error"]))
            continue
        stem = structure_stem(f)
        multi = len(res["chains"]) > 1
        for ch in res["chains"]:
            cid = f"{stem}_{ch['chain']}" if multi else stem
            if cid in options.exclude:
                report.append((str(f), ch["chain"], cid, "skipped", "excluded"))
                continue
            seq, coords = ch["sequence"], ch["coords"]
            n_obs = int(np.isfinite(coords).all(1).sum())
            unk = seq.count("X") / len(seq)
            if n_obs < options.min_length:
                report.append((str(f), ch["chain"], cid, "skipped",
                               f"{n_obs} observed residues < min length {options.min_length}"))
                continue
            if unk > options.max_unknown:
                report.append((str(f), ch["chain"], cid, "skipped",
                               f"unknown residues {unk:.1%} > max {options.max_unknown:.1%}"))
                continue
            rec = {"id": cid, "sequence": seq, "source": str(f), "chain": ch["chain"], "n_observed": n_obs,
                   "breaks": ch["breaks"], "seqres": ch["seqres"], "resolution": ch["resolution"],
                   "method": ch["method"], "duplicates": []}
            if "ss" in ch and set(ch["ss"]) != {"-"}:
                rec["ss"] = ch["ss"]
            if options.split_by_dir:
                rec["dir_split"] = dir_split(f)
            cands.append({"record": rec, "coords": coords, "notes": res["notes"]})

    # identical sequences: keep the best-resolved copy
    ids_seen: dict[str, int] = {}
    for c in cands:
        cid = c["record"]["id"]
        if cid in ids_seen:
            raise InputError(f"two input files give the same id {cid!r} ({ids_seen[cid]} and "
                             f"{c['record']['source']}); rename one")
        ids_seen[cid] = c["record"]["source"]
    by_seq: dict[str, list[dict[str, Any]]] = {}
    for c in cands:
        by_seq.setdefault(c["record"]["sequence"], []).append(c)

    def rank(c):
        r = c["record"]
        return (r["resolution"] if r["resolution"] is not None else float("inf"), -r["n_observed"], r["id"])

    kept = []
    for seq, group in by_seq.items():
        group.sort(key=rank)
        best = group[0]
        for other in group[1:]:
            best["record"]["duplicates"].append(other["record"]["id"])
            report.append((other["record"]["source"], other["record"]["chain"], other["record"]["id"], "skipped",
                           f"duplicate of {best['record']['id']}"))
        kept.append(best)
    kept.sort(key=lambda c: c["record"]["id"])
    if not kept:
        raise InputError(f"no chain passed the filters out of {len(files)} structure files")

    log(f"{len(kept)} chains after filters and duplicate merging; clustering at identity {options.identity} "
        f"({'MMseqs2 ' + mm_version if method == 'mmseqs' else 'built-in 3-mer prefilter + alignments'})")
    ids = [c["record"]["id"] for c in kept]
    seqs = [c["record"]["sequence"] for c in kept]
    t_fam = time.perf_counter()
    scored: dict[tuple[int, int], float] = {}
    searched: set[int] = set()
    parts: dict[str, float] = {}
    if method == "mmseqs":
        fams, links, n_aligned = families_mmseqs(ids, seqs, options.identity, options.max_evalue, options.workers,
                                                 log, scored=scored, searched=searched, seconds=parts)
    else:
        fams, links, n_aligned = families(ids, seqs, options.identity, options.max_evalue, options.workers, log,
                                          scored=scored)
    t_cluster = time.perf_counter()
    fixed = [c["record"].get("dir_split") for c in kept] if options.split_by_dir else None
    splits = split_families(fams, options.val_fraction, options.seed, fixed)
    n_cross = splits.count("train") * splits.count("val")
    split_check = ("mmseqs hits + val x train members search" if method == "mmseqs" else
                   "exhaustive" if n_cross <= EXHAUSTIVE_SPLIT_CHECK_PAIRS else "prefilter candidates")
    if split_check == "prefilter candidates":
        log(f"{n_cross} train x val pairs > {EXHAUSTIVE_SPLIT_CHECK_PAIRS}: the split check uses the 3-mer "
            f"prefilter's candidate pairs, not every pair (install MMseqs2 for a full search)")
    fams, splits, stuck, n_checked = enforce_split(ids, seqs, fams, splits, options.identity, options.max_evalue,
                                                   fixed, options.workers, scored, log,
                                                   searched_all=split_check != "exhaustive",
                                                   cross_search=(mmseqs_cross_search(seqs, searched, options.identity,
                                                                                     options.max_evalue,
                                                                                     options.workers)
                                                                 if method == "mmseqs" else None))
    t_split = time.perf_counter()
    fam_size: dict[str, int] = {}
    for f in fams:
        fam_size[f] = fam_size.get(f, 0) + 1
    fam_splits: dict[str, set[str]] = {}
    for f, sp in zip(fams, splits):
        fam_splits.setdefault(f, set()).add(sp)
    cross = sorted(f for f, sp in fam_splits.items() if len(sp) > 1)
    records, coords = [], []
    for c, f, s in zip(kept, fams, splits):
        r = c["record"]
        r.pop("dir_split", None)
        r.update(family=f, split=s, weight=1.0 / fam_size[f], length=len(r["sequence"]))
        records.append(r)
        coords.append(c["coords"])
        report.append((r["source"], r["chain"], r["id"], "ok",
                       "; ".join(n for n in c["notes"] if n.startswith(f"chain {r['chain']}:") or
                                 not n.startswith("chain "))))
    elapsed = time.perf_counter() - t0
    n_failed = sum(1 for row in report if row[3] == "failed")
    n_skipped = sum(1 for row in report if row[3] == "skipped")
    stats = {"clustering": method, "split_check": split_check, "files": len(files), "files_failed": n_failed, "skipped": n_skipped,
             "chains": len(records),
             "pairs_aligned": n_aligned, "family_joins": len(links), "families_across_splits": len(cross),
             "build_seconds": round(elapsed, 1), "parse_seconds": round(t_parsed - t0, 1),
             "family_seconds": round(t_cluster - t_fam, 1), "cross_split_pairs_checked": n_checked,
             "split_check_seconds": round(t_split - t_cluster, 1), "related_pairs_across_fixed_split": len(stuck)}
    if parts:
        stats["family_parts_seconds"] = parts
        stats["chains_searched_against_all"] = len(searched)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dataset.json").unlink(missing_ok=True)
    report.sort(key=lambda row: (row[0], row[1]))
    with atomic_write(out_dir / "report.tsv") as fh:
        fh.write("file\tchain\tid\tstatus\treason\n")
        for row in report:
            fh.write("\t".join(x.replace("\t", " ").replace("\n", " ") for x in row) + "\n")
    extra = {"build": stats, "families_across_splits": cross, "related_pairs_across_fixed_split": stuck}
    params = options.params()
    params["clustering"] = clustering_card(method, mm_version)
    write_dataset(out_dir, records, coords, params=params, extra_meta=extra)
    return BuildResult(out_dir, records, report, stats)


# ----------------------------------------------------------------------------- info

def length_bin(n: int) -> str:
    for lo, hi in LENGTH_BINS:
        if n >= lo and (hi is None or n <= hi):
            return f"{lo}-{hi}" if hi is not None else f"{lo}+"
    return f"<{LENGTH_BINS[0][0]}"


def dataset_info(ds) -> dict[str, Any]:
    """Counts of a :class:`~distfold.data.dataset.Dataset` by split, family and length bin."""
    bins = [length_bin(lo) for lo, _ in LENGTH_BINS]
    out: dict[str, Any] = {"path": str(ds.path), "format_version": ds.meta.get("version"),
                           "fingerprint": ds.fingerprint, "params": ds.meta.get("params", {}), "splits": {}}
    for split in sorted({r["split"] for r in ds.records}) + ["all"]:
        recs = [r for r in ds.records if split == "all" or r["split"] == split]
        by_bin = {b: 0 for b in bins}
        for r in recs:
            b = length_bin(r["length"])
            by_bin[b] = by_bin.get(b, 0) + 1
        fam_sizes: dict[str, int] = {}
        for r in recs:
            fam_sizes[r["family"]] = fam_sizes.get(r["family"], 0) + 1
        sizes = sorted(fam_sizes.values(), reverse=True)
        out["splits"][split] = {
            "chains": len(recs), "families": len(fam_sizes),
            "largest_families": sizes[:5], "singleton_families": sum(1 for s in sizes if s == 1),
            "families_by_size": {str(k): sizes.count(k) for k in sorted(set(sizes))},
            "residues": int(sum(r["length"] for r in recs)),
            "observed_residues": int(sum(r.get("n_observed", r["length"]) for r in recs)),
            "chains_with_masked_residues": sum(1 for r in recs if r.get("n_observed", r["length"]) < r["length"]),
            "chains_with_breaks": sum(1 for r in recs if r.get("breaks")),
            "length_bins": by_bin,
        }
    fams_by_split: dict[str, set[str]] = {}
    for r in ds.records:
        fams_by_split.setdefault(r["family"], set()).add(r["split"])
    out["families_across_splits"] = sum(1 for s in fams_by_split.values() if len(s) > 1)
    out["build"] = ds.meta.get("build", {})
    return out
