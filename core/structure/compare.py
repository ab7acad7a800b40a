"""Scoring a model structure against a reference structure.

:func:`compare_structures` is the one entry point that ``distfold compare``,
``distfold evaluate`` and the HTML report use: residue correspondence
(:mod:`distfold.structure.alignment`, or the structural alignment of
:mod:`distfold.structure.tmalign`) then every metric of
:func:`distfold.structure.metrics.score_coordinates` on the C-alpha atoms. Metrics are
over corresponding residues; TM-score and GDT are normalised by the
reference length (its observed residues).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from distfold.structure.alignment import Correspondence, assess, correspond
from distfold.errors import InputError
from distfold.structure.metrics import CONTACT_DEFINITION, score_coordinates
from distfold.structure.io import Chain, read_chain

__all__ = ["compare_structures", "compare_files", "score_coordinates", "METRIC_KEYS", "ALIGN_CHOICES",
           "result_correspondence"]

#: Scalar metrics in the order tables show them.
METRIC_KEYS = ("rmsd", "tm_score", "tm_score_mirror", "gdt_ts", "gdt_ha", "lddt", "coverage", "distance_mae",
               "distance_rmse", "distance_pearson", "contact_precision_l5")

#: How residues are paired: by sequence (global alignment, or residue numbers with
#: ``by_number``), or by TM-align's sequence-independent structural alignment.
ALIGN_CHOICES = ("sequence", "structure")


def _correspondence(model_chain: Chain, ref_chain: Chain, by_number: bool, align: str) -> Correspondence:
    if align not in ALIGN_CHOICES:
        raise InputError(f"align must be one of {', '.join(ALIGN_CHOICES)}, got {align!r}")
    if align == "sequence":
        return correspond(model_chain, ref_chain, by_number)
    if by_number:
        raise InputError("pairing by residue number and structural alignment exclude each other; "
                         "give --by-number or --align structure, not both")
    from distfold.structure.tmalign import tm_align

    sa = tm_align(model_chain.ca, ref_chain.ca, model_chain.sequence, ref_chain.sequence)
    return Correspondence(sa.model_index, sa.ref_index, sa.n_identical, "structure")


def result_correspondence(model_chain: Chain, ref_chain: Chain, result: dict, by_number: bool = False) -> Correspondence:
    """The correspondence :func:`compare_structures` used for ``result`` (the report
    draws the same residue pairs): recomputed, deterministically."""
    return _correspondence(model_chain, ref_chain, by_number, result.get("align", "sequence"))


def compare_structures(model_chain: Chain, ref_chain: Chain, by_number: bool = False, align: str = "sequence",
                       force_pairing: bool = False) -> dict:
    """Every metric of a model chain against a reference chain.

    Residues correspond by global sequence alignment (``align="sequence"``, the
    default: the TM-score program's fixed correspondence), by residue number when
    ``by_number``, or by TM-align's structural alignment (``align="structure"``,
    :mod:`distfold.structure.tmalign`; for homologues, different constructs and
    models without a sequence). The correspondence is judged by
    :func:`distfold.structure.alignment.assess`: a meaningless one (no sequence, or
    an alignment no better than chance) raises InputError unless ``force_pairing``;
    a weak one is scored with a warning.

    Returns a dict: status "ok", the metrics of :func:`score_coordinates`
    (lddt_per_residue has one entry per reference residue; coverage is the fraction
    of reference residues paired), n_aligned, seq_identity, correspondence
    ("alignment", "residue_number" or "structure"), align, pairing (the judgement:
    rule, identity, aligned_fraction_of_reference, z_score, status, reason,
    warning), warning (None or one line), model_length, ref_length, model_chain,
    ref_chain, contact_definition. Raises InputError when no residue corresponds.
    """
    corr = _correspondence(model_chain, ref_chain, by_number, align)
    if corr.n_aligned == 0:
        how = {"residue_number": "residue numbers", "structure": "structural alignment"}.get(
            corr.method, "sequence alignment")
        raise InputError(f"no residue of model {_label(model_chain)} corresponds to reference "
                         f"{_label(ref_chain)} by {how}"
                         + ("" if by_number or align == "structure" else
                            "; if they share residue numbering, try --by-number; for different proteins, "
                            "--align structure"))
    check = assess(corr, model_chain.sequence, ref_chain.sequence, len(ref_chain), asked_by_number=by_number)
    if check.status == "refused":
        if not force_pairing:
            raise InputError(f"model {_label(model_chain)} vs reference {_label(ref_chain)}: not scored, "
                             f"{check.reason} (--force-pairing scores it anyway)")
        check = check.forced()
    model_full = np.full_like(ref_chain.ca, np.nan, dtype=np.float64)
    model_full[corr.ref_index] = model_chain.ca[corr.model_index]
    out = {"status": "ok"}
    out.update(score_coordinates(model_full, ref_chain.ca))
    out.update({
        "n_aligned": corr.n_aligned,
        "seq_identity": corr.seq_identity,
        "correspondence": corr.method,
        "align": align,
        "pairing": check.as_dict(),
        "warning": check.warning,
        "model_length": len(model_chain),
        "ref_length": len(ref_chain),
        "model_chain": model_chain.chain_id,
        "ref_chain": ref_chain.chain_id,
        "contact_definition": CONTACT_DEFINITION,
    })
    return out


def compare_files(model: str | os.PathLike, reference: str | os.PathLike, chain: str | None = None,
                  ref_chain: str | None = None, by_number: bool = False, align: str = "sequence",
                  force_pairing: bool = False) -> dict:
    """:func:`compare_structures` on two structure files (PDB/mmCIF, plain or .gz);
    adds "model" and "reference" (the paths). Bad input raises InputError."""
    m = read_chain(model, chain)
    r = read_chain(reference, ref_chain)
    out = compare_structures(m, r, by_number, align, force_pairing)
    out["model"] = str(model)
    out["reference"] = str(reference)
    return out


def _label(chain: Chain) -> str:
    name = Path(chain.source).name if chain.source else "?"
    return f"{name} chain {chain.chain_id}"
