"""DSSP secondary-structure labels computed at dataset build time (distfold.data.labels)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

md = pytest.importorskip("mdtraj")

from distfold.data.build import BuildOptions, build_dataset  # noqa: E402
from distfold.data.dataset import Dataset  # noqa: E402
from distfold.data.labels import chain_ss_labels, dssp_of_residues, on_sequence  # noqa: E402
from distfold.structure.io import chains_of, load_structure, write_ca_trace  # noqa: E402

PDB = Path(__file__).parent / "data" / "databuild" / "1o6z_A.pdb.gz"


def _labels(path):
    structure = load_structure(path)
    chains = chains_of(structure, str(path))
    return chains, chain_ss_labels(structure, chains)


def test_labels_equal_mdtraj_on_the_whole_file():
    chains, labels = _labels(PDB)
    traj = md.load(str(PDB))
    traj = traj.atom_slice(traj.top.select("protein"))
    expected = "".join(md.compute_dssp(traj, simplified=True)[0])
    assert len(labels[0]) == len(chains[0]) == len(expected)
    assert labels[0] == expected
    assert {"H", "E", "C"} <= set(labels[0])


def test_a_residue_without_its_oxygen_is_unlabelled(tmp_path):
    lines = gzip.open(PDB, "rt").read().splitlines()
    chains, _ = _labels(PDB)
    resseq = chains[0].residue_ids[100][0]
    cut = [ln for ln in lines if not (ln.startswith("ATOM") and ln[12:16].strip() == "O" and int(ln[22:26]) == resseq)]
    path = tmp_path / "noO.pdb"
    path.write_text("\n".join(cut) + "\n")
    _, labels = _labels(path)
    _, full = _labels(PDB)
    assert labels[0][100] == "-"
    assert labels[0][:90] == full[0][:90]  # far from the gap nothing changes
    assert set(labels[0]) - {"-"} <= {"H", "E", "C"}


def test_a_c_alpha_trace_has_no_labels(tmp_path):
    chain = chains_of(load_structure(PDB), str(PDB))[0]
    write_ca_trace(tmp_path / "ca.pdb", chain.ca, chain.sequence)
    _, labels = _labels(tmp_path / "ca.pdb")
    assert labels[0] == "-" * len(chain)


def test_segments_are_not_bonded_across_a_break():
    # an ideal-ish helix cut in two by a missing residue: both halves still get labels, the gap none
    chains, labels = _labels(PDB)
    ch = chains[0]
    structure = load_structure(PDB)
    res = [r for r in next(iter(structure))[ch.chain_id] if "CA" in r][: len(ch)]
    bb = [np.stack([r[a].get_coord() for a in ("N", "CA", "C", "O")]).astype(np.float64) for r in res]
    bb[50] = None
    out = dssp_of_residues(ch.sequence, bb)
    assert out[50] == "-" and len(out) == len(ch)
    assert out[:45] == labels[0][:45]


def test_labels_are_placed_on_the_full_sequence():
    assert on_sequence("HEC", [1, 2, 4], 6) == "-HE-C-"
    assert on_sequence("HEC", None, 3) == "HEC"
    assert on_sequence(None, [0], 4) == "----"


def test_the_build_stores_ss_per_residue(tmp_path):
    build_dataset([PDB, PDB.with_name("2e37_A.pdb.gz")], tmp_path / "ds", BuildOptions(), log=lambda m: None)
    ds = Dataset(tmp_path / "ds")
    k = [r["id"] for r in ds.records].index("1o6z_A")
    rec = ds.records[k]
    assert len(rec["ss"]) == rec["length"]
    assert set(rec["ss"]) <= set("HEC-")
    observed = ds[k].mask
    assert all(c != "-" for c in np.array(list(rec["ss"]))[observed][:50])
