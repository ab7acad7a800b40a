"""Per-residue labels computed from a training structure at ``distfold data build`` time.

Secondary structure: 3-state DSSP (``H`` helix, ``E`` strand, ``C`` coil) from
``mdtraj.compute_dssp(traj, simplified=True)`` on the residue's backbone atoms
(N, C-alpha, C, O), or ``-`` where there is no label: a residue missing one of those
atoms (a C-alpha-only trace gets ``-`` throughout). The dataset stores it as the
record's ``"ss"`` string (see :mod:`distfold.data.dataset`).

The chain is cut into segments wherever a backbone atom is missing or the peptide bond
C(i-1)-N(i) is longer than ``PEPTIDE_BREAK`` (residues missing from the file); each
segment is its own mdtraj chain, so DSSP never bonds residues that are not bonded.
Hydrogen bonds between segments (strand pairs across a gap) still count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from distfold.structure.io import AA1_TO_3, residue_letter
from distfold.structure.secondary import SS_STATES, SS_UNLABELLED

NO_LABEL = SS_UNLABELLED  # "-"
BACKBONE = ("N", "CA", "C", "O")
PEPTIDE_BREAK = 2.5  # Å; a bonded C-N is 1.33 Å


def _atom_xyz(res, name: str) -> np.ndarray | None:
    if name not in res:  # `in`, not child_dict: a DisorderedResidue's child_dict holds residue names
        return None
    atom = res[name]
    if atom.is_disordered():
        atom = atom.selected_child
    xyz = atom.get_coord().tolist()  # three Python floats: the finiteness test without numpy's per-call cost
    return np.array(xyz, dtype=np.float64) if all(map(math.isfinite, xyz)) else None


def _observed_residues(bio_chain) -> list[Any]:
    """The residues :func:`distfold.structure.io.chains_of` keeps, in its order."""
    out = []
    for res in bio_chain:
        if res.id[0] == "W" or residue_letter(res.get_resname()) is None or _atom_xyz(res, "CA") is None:
            continue
        out.append(res)
    return out


def dssp_of_residues(letters: str, backbone: list[np.ndarray | None]) -> str:
    """3-state DSSP of one chain's residues: ``letters`` one amino acid per residue,
    ``backbone`` per residue a (4, 3) array of N, CA, C, O in Å or None when one is missing.
    Returns one of ``H``, ``E``, ``C``, ``-`` per residue."""
    import mdtraj as md

    n = len(letters)
    labels = [NO_LABEL] * n
    top = md.Topology()
    xyz, placed = [], []
    chain = None
    prev_c = None
    for k in range(n):
        bb = backbone[k]
        if bb is None:
            chain, prev_c = None, None
            continue
        if chain is None or prev_c is None or np.linalg.norm(bb[0] - prev_c) > PEPTIDE_BREAK:
            chain = top.add_chain()
        resname = AA1_TO_3.get(letters[k], "ALA")  # the name only says "protein" (and proline: no H)
        res = top.add_residue(resname, chain)
        for name, element in zip(BACKBONE, ("N", "C", "C", "O")):
            top.add_atom(name, md.element.get_by_symbol(element), res)
        xyz.append(bb)
        placed.append(k)
        prev_c = bb[2]
    if not placed:
        return "".join(labels)
    traj = md.Trajectory(np.concatenate(xyz).reshape(1, -1, 3) / 10.0, top)  # nm
    codes = md.compute_dssp(traj, simplified=True)[0]
    for k, code in zip(placed, codes):
        labels[k] = code if code in SS_STATES else NO_LABEL
    return "".join(labels)


def chain_ss_labels(structure, chains) -> list[str | None]:
    """For each :class:`~distfold.structure.io.Chain` of ``chains_of(structure)`` (before any
    relabelling of chain ids): a string of ``H``/``E``/``C``/``-``, one per observed residue,
    or None when the structure's residues do not match the chain."""
    model = next(iter(structure))
    out: list[str | None] = []
    for ch in chains:
        if ch.chain_id not in model:
            out.append(None)
            continue
        residues = _observed_residues(model[ch.chain_id])
        if len(residues) != len(ch) or [(r.id[1], str(r.id[2]).strip()) for r in residues] != list(ch.residue_ids):
            out.append(None)
            continue
        backbone: list[np.ndarray | None] = []
        for res in residues:
            if not all(a in res for a in BACKBONE):  # e.g. a C-alpha-only trace: no label, no work
                backbone.append(None)
                continue
            atoms = [_atom_xyz(res, a) for a in BACKBONE]
            backbone.append(None if any(a is None for a in atoms) else np.stack(atoms))
        if all(b is None for b in backbone):
            out.append(NO_LABEL * len(residues))
            continue
        try:
            out.append(dssp_of_residues(ch.sequence, backbone))
        except Exception:  # noqa: BLE001 - a label must never cost the build its chain: no labels instead
            out.append(None)
    return out


def on_sequence(labels: str | None, idx, length: int) -> str:
    """Observed residues' labels placed at sequence positions ``idx`` of a sequence of
    ``length`` (None: the observed residues are the sequence); ``-`` elsewhere."""
    if labels is None:
        return NO_LABEL * length
    if idx is None:
        return labels if len(labels) == length else NO_LABEL * length
    out = [NO_LABEL] * length
    for k, i in enumerate(idx):
        out[int(i)] = labels[k]
    return "".join(out)
