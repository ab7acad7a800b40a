"""Scoring a model structure against a reference structure.

:func:`compare_structures` is the one entry point that ``distfold compare``,
``distfold evaluate`` and the HTML report use: residue correspondence
(:mod:`distfold.structure.alignment`) then every metric of
:func:`distfold.structure.metrics.score_coordinates` on the C-alpha atoms. Metrics are
over corresponding residues; TM-score and GDT are normalised by the
reference length (its observed residues).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from distfold.structure.alignment import correspond
from distfold.errors import InputError
from distfold.structure.metrics import CONTACT_DEFINITION, score_coordinates
from distfold.structure.io import Chain, read_chain

__all__ = ["compare_structures", "compare_files", "score_coordinates", "METRIC_KEYS"]

#: Scalar metrics in the order tables show them.
METRIC_KEYS = ("rmsd", "tm_score", "tm_score_mirror", "gdt_ts", "gdt_ha", "lddt", "distance_mae",
               "distance_rmse", "distance_pearson", "contact_precision_l5")


def compare_structures(model_chain: Chain, ref_chain: Chain, by_number: bool = False) -> dict:
    """Every metric of a model chain against a reference chain.

    Residues correspond by global sequence alignment, or by residue number
    when ``by_number``. Returns a dict: status "ok", the metrics of
    :func:`score_coordinates` (lddt_per_residue has one entry per reference
    residue, NaN where the model has none), n_aligned, seq_identity,
    correspondence, model_length, ref_length, model_chain, ref_chain,
    contact_definition. Raises InputError when no residue corresponds.
    """
    corr = correspond(model_chain, ref_chain, by_number)
    if corr.n_aligned == 0:
        how = "residue numbers" if by_number else "sequence alignment"
        raise InputError(f"no residue of model {_label(model_chain)} corresponds to reference "
                         f"{_label(ref_chain)} by {how}"
                         + ("" if by_number else "; if they share residue numbering, try --by-number"))
    model_full = np.full_like(ref_chain.ca, np.nan, dtype=np.float64)
    model_full[corr.ref_index] = model_chain.ca[corr.model_index]
    out = {"status": "ok"}
    out.update(score_coordinates(model_full, ref_chain.ca))
    out.update({
        "n_aligned": corr.n_aligned,
        "seq_identity": corr.seq_identity,
        "correspondence": corr.method,
        "model_length": len(model_chain),
        "ref_length": len(ref_chain),
        "model_chain": model_chain.chain_id,
        "ref_chain": ref_chain.chain_id,
        "contact_definition": CONTACT_DEFINITION,
    })
    return out


def compare_files(model: str | os.PathLike, reference: str | os.PathLike, chain: str | None = None,
                  ref_chain: str | None = None, by_number: bool = False) -> dict:
    """:func:`compare_structures` on two structure files (PDB/mmCIF, plain or .gz);
    adds "model" and "reference" (the paths). Bad input raises InputError."""
    m = read_chain(model, chain)
    r = read_chain(reference, ref_chain)
    out = compare_structures(m, r, by_number)
    out["model"] = str(model)
    out["reference"] = str(reference)
    return out


def _label(chain: Chain) -> str:
    name = Path(chain.source).name if chain.source else "?"
    return f"{name} chain {chain.chain_id}"
