"""Residue correspondence between a model chain and a reference chain.

Two ways, as ``distfold compare`` offers them:

- :func:`align_sequences`: global sequence alignment (biopython
  ``PairwiseAligner``, BLOSUM62, gap open -10, extend -0.5, end gaps free, as
  EMBOSS needle scores), so a model of a fragment or a homologue lines up with
  its reference;
- :func:`match_residue_numbers`: residues with the same (number, insertion
  code) in both files (``--by-number``), as the TM-score program pairs them.

Both return a :class:`Correspondence`: index arrays into the two chains'
observed residues, in increasing order, plus the counts reported to users.
Sequence identity is identical aligned pairs / aligned pairs (X never
counts as identical), as TM-align reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distfold.errors import InputError

GAP_OPEN = -10.0
GAP_EXTEND = -0.5
MATRIX = "BLOSUM62"


@dataclass(frozen=True)
class Correspondence:
    """model_index[k] and ref_index[k] are the k-th corresponding residues (int arrays)."""

    model_index: np.ndarray
    ref_index: np.ndarray
    n_identical: int
    method: str  # "alignment" or "residue_number"

    @property
    def n_aligned(self) -> int:
        return int(len(self.ref_index))

    @property
    def seq_identity(self) -> float:
        """Identical pairs / aligned pairs (0 when nothing is aligned)."""
        return self.n_identical / self.n_aligned if self.n_aligned else 0.0


def _identical(a: str, b: str, ia: np.ndarray, ib: np.ndarray) -> int:
    return sum(1 for i, j in zip(ia, ib) if a[i] == b[j] and a[i] != "X")


_ALIGNER = None


def _aligner():
    global _ALIGNER
    if _ALIGNER is None:
        from Bio.Align import PairwiseAligner, substitution_matrices

        al = PairwiseAligner()
        al.mode = "global"
        al.substitution_matrix = substitution_matrices.load(MATRIX)
        al.open_gap_score = GAP_OPEN
        al.extend_gap_score = GAP_EXTEND
        al.end_gap_score = 0.0
        _ALIGNER = al
    return _ALIGNER


def _clean(seq: str, name: str) -> str:
    seq = seq.upper()
    if not seq:
        raise InputError(f"{name} sequence is empty")
    allowed = set("ACDEFGHIKLMNPQRSTVWYX")
    return "".join(c if c in allowed else "X" for c in seq)


def align_sequences(model_seq: str, ref_seq: str) -> Correspondence:
    """Global alignment of two one-letter sequences; aligned (matched or
    mismatched) positions become corresponding residues, gaps do not."""
    a, b = _clean(model_seq, "model"), _clean(ref_seq, "reference")
    aln = _aligner().align(a, b)[0]
    im, ir = [], []
    for (s1, e1), (s2, e2) in zip(*aln.aligned):
        im.extend(range(s1, e1))
        ir.extend(range(s2, e2))
    im_a, ir_a = np.asarray(im, dtype=np.intp), np.asarray(ir, dtype=np.intp)
    return Correspondence(im_a, ir_a, _identical(a, b, im_a, ir_a), "alignment")


def match_residue_numbers(model_ids, ref_ids, model_seq: str = "", ref_seq: str = "") -> Correspondence:
    """Residues with equal (resseq, insertion code) in both chains, in reference order.

    model_ids, ref_ids: lists of (resseq, icode) as in :class:`distfold.structure.io.Chain`.
    """
    pos = {tuple(r): k for k, r in enumerate(model_ids)}
    pairs = [(pos[tuple(r)], j) for j, r in enumerate(ref_ids) if tuple(r) in pos]
    if pairs:
        im, ir = (np.asarray(v, dtype=np.intp) for v in zip(*pairs))
    else:
        im = ir = np.zeros(0, dtype=np.intp)
    if len(im) > 1 and np.any(np.diff(im) <= 0):
        raise InputError("residue numbers run in a different order in the model and the reference; "
                         "compare by sequence alignment instead of --by-number")
    n_id = _identical(model_seq, ref_seq, im, ir) if model_seq and ref_seq else 0
    return Correspondence(im, ir, n_id, "residue_number")


def correspond(model_chain, ref_chain, by_number: bool = False) -> Correspondence:
    """Correspondence between two :class:`distfold.structure.io.Chain` objects.

    A chain whose residues are all unknown (X, e.g. a trace written without a
    sequence) cannot be aligned by sequence, so it is paired by residue number.
    """
    unknown = any(set(c.sequence) <= {"X"} for c in (model_chain, ref_chain))
    if by_number or unknown:
        return match_residue_numbers(model_chain.residue_ids, ref_chain.residue_ids,
                                     model_chain.sequence, ref_chain.sequence)
    return align_sequences(model_chain.sequence, ref_chain.sequence)
