"""The handedness rule against mdtraj's dihedral convention, on real chains."""

from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from distfold.geometry.handedness import ca_pseudo_torsions, fix_handedness, handedness_margin
from distfold.structure.io import read_chain

CHAINS = Path(__file__).parent / "data" / "chains"
HELICAL = CHAINS / "c55406f94174e.pdb.gz"  # 4GCN chain A, 82 % helix (DSSP)
ALL = sorted(CHAINS.glob("*.pdb.gz"))


def mdtraj_ca_torsions(ca: np.ndarray) -> np.ndarray:
    """Pseudo-torsions (i, i+1, i+2, i+3) in degrees by mdtraj.compute_dihedrals."""
    top = md.Topology()
    chain = top.add_chain()
    for _ in range(len(ca)):
        top.add_atom("CA", md.element.carbon, top.add_residue("ALA", chain))
    traj = md.Trajectory(ca[None] / 10.0, top)  # mdtraj works in nm
    quads = np.array([[i, i + 1, i + 2, i + 3] for i in range(len(ca) - 3)])
    return np.degrees(md.compute_dihedrals(traj, quads)[0])


def mirror(x: np.ndarray) -> np.ndarray:
    return x * np.array([1.0, 1.0, -1.0])


@pytest.mark.parametrize("flip", [False, True], ids=["real", "mirror"])
def test_torsions_match_mdtraj_sign_convention(flip):
    ca = read_chain(HELICAL).ca
    ca = mirror(ca) if flip else ca
    ours = ca_pseudo_torsions(ca)
    ref = mdtraj_ca_torsions(ca)
    diff = (ours - ref + 180.0) % 360.0 - 180.0
    assert np.abs(diff).max() < 1e-3  # mdtraj computes in float32


def test_real_helices_are_near_plus_50_degrees_in_mdtraj_convention():
    ref = mdtraj_ca_torsions(read_chain(HELICAL).ca)
    in_plus = np.count_nonzero((ref >= 30) & (ref <= 80))
    in_minus = np.count_nonzero((ref >= -80) & (ref <= -30))
    assert in_plus > 0.6 * len(ref) and in_minus < 0.05 * len(ref)
    assert 40.0 < np.median(ref[(ref >= 30) & (ref <= 80)]) < 60.0


def test_helical_protein_kept_and_its_mirror_flipped_back():
    ca = read_chain(HELICAL).ca
    x, mirrored, margin = fix_handedness(ca)
    assert not mirrored and margin > 50
    assert np.array_equal(x, ca)
    y, mirrored, margin_m = fix_handedness(mirror(ca))
    assert mirrored and margin_m == -margin
    assert handedness_margin(y) == margin
    # the flipped mirror superposes on the real structure by a proper rotation
    rot, _ = Rotation.align_vectors(ca - ca.mean(0), y - y.mean(0))
    rmsd = np.sqrt((((ca - ca.mean(0)) - rot.apply(y - y.mean(0))) ** 2).sum(1).mean())
    assert rmsd < 1e-9


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name.split(".")[0])
def test_every_test_chain_has_a_positive_margin_and_its_mirror_a_negative_one(path):
    ca = read_chain(path).ca
    assert handedness_margin(ca) > 0
    assert fix_handedness(mirror(ca))[1] is True


def test_short_chains_and_ties_keep_the_input():
    for n in (0, 1, 2, 3):
        x = np.arange(3 * n, dtype=float).reshape(n, 3)
        y, mirrored, margin = fix_handedness(x)
        assert not mirrored and margin == 0 and y.shape == (n, 3)
