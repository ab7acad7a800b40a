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
counts as identical), as TM-align reports it. A third way, sequence-independent
structural alignment (``--align structure``), is
:func:`distfold.structure.tmalign.tm_align`.

:func:`assess` says whether a correspondence means anything (issue 15): scoring
two unrelated chains on the few residues a global alignment happens to pair, or a
model without a sequence by residue numbers that do not match, gives numbers that
look like results. The rules (:data:`MIN_Z_SCORE` and the ``WEAK_*`` thresholds):

- **refused** (``distfold compare`` exits 1 unless ``--force-pairing``):
  a chain has no sequence (every residue unknown, as ``distfold reconstruct``
  writes without ``--sequence``) and residue-number pairing was not asked for;
  or the sequence alignment scores no better than chance: its score is less than
  :data:`MIN_Z_SCORE` standard deviations above the mean score of
  :data:`N_SHUFFLES` shuffles of the model sequence against the reference
  (measured on real chains: unrelated pairs -1.7 to 2.5; homologues 36-46;
  a 6-residue fragment of the reference 5.4); or fewer than 3 residues pair.
- **weak** (a warning on stderr and in ``--json``): z-score below
  :data:`WEAK_Z_SCORE`, identity below :data:`WEAK_IDENTITY` (not for a
  structural alignment, which pairs different proteins on purpose), or fewer than
  :data:`WEAK_REF_FRACTION` of the reference's residues paired; by residue
  number, also when either sequence is unknown (identity cannot be checked).
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
    method: str  # "alignment", "residue_number" or "structure"

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


MIN_Z_SCORE = 4.0
WEAK_Z_SCORE = 8.0
WEAK_IDENTITY = 0.3
WEAK_REF_FRACTION = 0.5
N_SHUFFLES = 50
SHUFFLE_SEED = 15
RULES = {"alignment": "sequence_alignment", "residue_number": "residue_number", "structure": "structure_alignment"}
PHRASES = {"alignment": "sequence alignment", "residue_number": "residue number",
           "structure": "structural alignment"}


def alignment_z_score(model_seq: str, ref_seq: str, n_shuffles: int = N_SHUFFLES, seed: int = SHUFFLE_SEED) -> float:
    """(score - mean) / std of the global alignment score of ``model_seq`` against
    ``ref_seq`` over ``n_shuffles`` shuffles of ``model_seq`` (a fixed generator:
    reproducible). inf when every shuffle scores the same and the real one more."""
    a, b = _clean(model_seq, "model"), _clean(ref_seq, "reference")
    al = _aligner()
    score = al.score(a, b)
    rng = np.random.default_rng(seed)
    letters = np.array(list(a))
    shuffled = np.array([al.score("".join(rng.permutation(letters)), b) for _ in range(n_shuffles)])
    sd = shuffled.std()
    if sd == 0:
        return float("inf") if score > shuffled.mean() else 0.0
    return float((score - shuffled.mean()) / sd)


def has_sequence(seq: str) -> bool:
    """False when every residue is unknown (X), e.g. a trace written without a sequence."""
    return bool(seq) and not set(seq.upper()) <= {"X"}


@dataclass(frozen=True)
class PairingCheck:
    """How much a correspondence can be trusted; ``distfold compare`` reports it as
    ``pairing`` in ``--json`` and prints ``warning`` on stderr.

    rule: "sequence_alignment", "residue_number" or "structure_alignment".
    status: "ok", "weak", "refused" (not scored), or "forced" (refused, scored on
    request). reason: why weak or refused ("" when ok).
    """

    rule: str
    n_aligned: int
    identity: float | None
    aligned_fraction_of_reference: float
    z_score: float | None
    status: str
    reason: str

    @property
    def warning(self) -> str | None:
        if self.status == "ok":
            return None
        return f"{'weak' if self.status == 'weak' else 'meaningless'} residue pairing: {self.reason}"

    def as_dict(self) -> dict:
        return {"rule": self.rule, "n_aligned": self.n_aligned, "identity": self.identity,
                "aligned_fraction_of_reference": self.aligned_fraction_of_reference, "z_score": self.z_score,
                "status": self.status, "reason": self.reason, "warning": self.warning}

    def forced(self) -> "PairingCheck":
        return PairingCheck(self.rule, self.n_aligned, self.identity, self.aligned_fraction_of_reference,
                            self.z_score, "forced", self.reason + " (scored anyway: --force-pairing)")


def assess(corr: Correspondence, model_seq: str, ref_seq: str, ref_length: int,
           asked_by_number: bool = False) -> PairingCheck:
    """Judge a correspondence by the rules in this module's docstring."""
    rule = RULES[corr.method]
    known = has_sequence(model_seq) and has_sequence(ref_seq)
    identity = corr.seq_identity if known and corr.n_aligned else None
    frac = corr.n_aligned / ref_length if ref_length else 0.0
    z = None
    facts = (f"{corr.n_aligned} of {ref_length} reference residues paired by {PHRASES[corr.method]}"
             + (f", identity {identity:.3f}" if identity is not None else ""))
    refused, weak = [], []
    if corr.n_aligned < 3:
        refused.append("fewer than 3 residues pair")
    if corr.method == "residue_number" and not asked_by_number:
        which = " and ".join(n for n, s in (("model", model_seq), ("reference", ref_seq)) if not has_sequence(s))
        refused.append(f"the {which} has no sequence (all residues unknown), so only residue numbers could "
                       "pair them; pass --by-number if the numbering matches, or use --align structure")
    if corr.method == "alignment" and known and corr.n_aligned >= 3:
        z = alignment_z_score(model_seq, ref_seq)
        if z < MIN_Z_SCORE:
            refused.append(f"the sequence alignment scores no better than chance (z-score {z:.1f} against "
                           f"shuffled sequences, below {MIN_Z_SCORE:g}): the chains look unrelated; use "
                           "--align structure to compare different proteins")
        elif z < WEAK_Z_SCORE:
            weak.append(f"z-score {z:.1f} against shuffled sequences (below {WEAK_Z_SCORE:g})")
    if corr.method == "residue_number" and not known:
        weak.append("a sequence is unknown, so the residue numbers cannot be checked against it")
    if identity is not None and identity < WEAK_IDENTITY and corr.method != "structure" and not refused:
        weak.append(f"identity below {WEAK_IDENTITY:g}")
    if frac < WEAK_REF_FRACTION and not refused:
        weak.append(f"under {WEAK_REF_FRACTION:.0%} of the reference paired")
    if refused:
        status, reason = "refused", f"{facts}; " + "; ".join(refused)
    elif weak:
        status, reason = "weak", f"{facts}; " + "; ".join(weak)
    else:
        status, reason = "ok", ""
    return PairingCheck(rule, corr.n_aligned, identity, frac, z, status, reason)
