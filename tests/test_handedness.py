"""The hand of reconstructions, against the reference that cannot be argued with: the hand of
the experimental structure itself (real chains in tests/data/chains), and the pseudo-torsion
sign against mdtraj's dihedral convention."""

import json
from functools import lru_cache
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from distfold.geometry.handedness import (TABLE_PATH, UNCERTAIN_PROBABILITY, ca_pseudo_torsions, chain_breaks,
                                          choose_hand, fix_handedness, hand_table, handedness_margin,
                                          helix_window_margin, spaced_torsions)
from distfold.geometry.reconstruct import reconstruct
from distfold.plugins.mds_classical.classical import ClassicalMDS
from distfold.plugins.mds_smacof.refine import Refine
from distfold.plugins.mds_smacof.smacof import SMACOF
from distfold.structure.io import read_chain

CHAINS = Path(__file__).parent / "data" / "chains"
HELICAL = CHAINS / "c55406f94174e.pdb.gz"  # 4GCN chain A, 82 % helix (DSSP)
ALL = sorted(CHAINS.glob("*.pdb.gz"))
# Real chains on which the old helix-window rule (more pseudo-torsions in -80..-30 than in
# +30..+80 degrees: mirror) chose the mirror image or tossed a coin from exact distances, with that
# rule's margin: helix-poor chains (DSSP by mdtraj, see tests/data/chains/README.md).
OLD_RULE_FAILURES = {
    "c53b505a60369": -6,  # 6S0A R, val, 208 residues, 0 % helix, 38 % strand, a chain break, two cis peptides
    "c71343bdc7af4": -5,  # 3AQG A, train, 133 residues, 57 % strand
    "c3b002efb2e08": -3,  # 1HVR A, train, 99 residues, 4 % helix, 49 % strand
    "c0ce1b1778ce5": -1,  # 3IJ2 X, train, 35 residues, 20 % strand
    "cd3ea71c91007": 0,   # 1BX8 A, val, 49 residues, 20 % strand, a cis peptide
}


@lru_cache(maxsize=None)
def ca(path: Path) -> np.ndarray:
    return read_chain(path).ca


def mdtraj_dihedrals(ca: np.ndarray, quads: np.ndarray) -> np.ndarray:
    top = md.Topology()
    chain = top.add_chain()
    for _ in range(len(ca)):
        top.add_atom("CA", md.element.carbon, top.add_residue("ALA", chain))
    traj = md.Trajectory(ca[None] / 10.0, top)  # mdtraj works in nm
    return np.degrees(md.compute_dihedrals(traj, quads)[0])


def mdtraj_ca_torsions(ca: np.ndarray, k: int = 1) -> np.ndarray:
    """Pseudo-torsions (i, i+k, i+2k, i+3k) in degrees by mdtraj.compute_dihedrals."""
    return mdtraj_dihedrals(ca, np.array([[i, i + k, i + 2 * k, i + 3 * k] for i in range(len(ca) - 3 * k)]))


def mirror(x: np.ndarray) -> np.ndarray:
    return x * np.array([1.0, 1.0, -1.0])


def rmsd_proper(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(0)
    b = b - b.mean(0)
    rot, _ = Rotation.align_vectors(a, b)
    return float(np.sqrt(((a - rot.apply(b)) ** 2).sum(1).mean()))


def right_handed(y: np.ndarray, truth: np.ndarray) -> bool:
    """The reference: y superposes on the experimental trace better than its mirror does."""
    return rmsd_proper(y, truth) < rmsd_proper(mirror(y), truth)


# -- the sign convention -------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("flip", [False, True], ids=["real", "mirror"])
def test_torsions_match_mdtraj_sign_convention(flip, k):
    x = mirror(ca(HELICAL)) if flip else ca(HELICAL)
    ours = ca_pseudo_torsions(x) if k == 1 else spaced_torsions(x, k)
    ref = mdtraj_ca_torsions(x, k)
    diff = (ours - ref + 180.0) % 360.0 - 180.0
    assert len(ours) == len(x) - 3 * k and np.abs(diff).max() < 1e-3  # mdtraj computes in float32


def test_real_helices_are_near_plus_50_degrees_in_mdtraj_convention():
    ref = mdtraj_ca_torsions(ca(HELICAL))
    in_plus = np.count_nonzero((ref >= 30) & (ref <= 80))
    in_minus = np.count_nonzero((ref >= -80) & (ref <= -30))
    assert in_plus > 0.6 * len(ref) and in_minus < 0.05 * len(ref)
    assert 40.0 < np.median(ref[(ref >= 30) & (ref <= 80)]) < 60.0


def test_the_table_favours_right_handed_helices_and_left_twisted_strands():
    """The learned spacing-1 table agrees with textbook geometry: alpha helix (angle ~91 deg,
    torsion ~+50) and beta strand (angle ~120, torsion ~-170) are right-handed evidence."""
    tab = hand_table()
    for angle, torsion in ((91.0, 50.0), (120.0, -170.0)):
        ia, it = tab.bins(1, np.array([angle]), np.array([torsion]))
        assert tab.llr[1][ia[0], it[0]] > 0.3, (angle, torsion)


# -- the decision on real chains -------------------------------------------------

def test_helical_protein_kept_and_its_mirror_flipped_back():
    x0 = ca(HELICAL)
    x, d = choose_hand(x0)
    assert d.decision == "right" and not d.mirrored and d.margin > 50 and d.probability > 0.999
    assert np.array_equal(x, x0)
    y, dm = choose_hand(mirror(x0))
    assert dm.decision == "mirrored" and dm.mirrored and dm.margin == pytest.approx(-d.margin, abs=1e-9)
    assert handedness_margin(y) == pytest.approx(d.margin, abs=1e-9)
    assert rmsd_proper(x0, y) < 1e-9  # the flipped mirror superposes by a proper rotation


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name.split(".")[0])
def test_every_test_chain_is_right_handed_and_its_mirror_is_flipped(path):
    x = ca(path)
    assert handedness_margin(x) > 0
    y, mirrored, margin = fix_handedness(mirror(x))
    assert mirrored and margin < 0 and rmsd_proper(y, x) < 1e-9


@pytest.mark.parametrize("uid", sorted(OLD_RULE_FAILURES))
def test_exact_distances_of_helix_poor_chains_give_the_experimental_hand(uid):
    """Where the helix-window rule failed: classical MDS from exact distances, then the core's hand."""
    x = ca(CHAINS / f"{uid}.pdb.gz")
    assert helix_window_margin(x) == OLD_RULE_FAILURES[uid]  # the old rule's failure, as measured
    raw = ClassicalMDS().reconstruct(cdist(x, x)).coords
    for start in (raw, mirror(raw)):  # whatever hand the eigenvectors give
        out, _ = choose_hand(start - start.mean(0))
        assert right_handed(out, x)
        assert rmsd_proper(out, x) < 0.01


@pytest.mark.parametrize("uid", ["c71343bdc7af4", "cb98f573e0d35", "c3b002efb2e08"])
def test_noisy_distances_of_strand_rich_chains_give_the_experimental_hand(uid):
    """SMACOF from distances x exp(0.2 N(0, 1)) on beta-rich chains (47-57 % strand): the right hand
    on three noise draws each, where the old rule was wrong on at least one draw of each."""
    x = ca(CHAINS / f"{uid}.pdb.gz")
    d0 = cdist(x, x)
    old_wrong = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        d = np.triu(d0 * np.exp(0.2 * rng.standard_normal(d0.shape)), 1)
        out = reconstruct(SMACOF(negative_share=False), d + d.T)
        assert right_handed(out.coords, x), seed
        raw = out.coords if not out.diagnostics["mirrored"] else mirror(out.coords)
        old_wrong += right_handed(raw, x) == (helix_window_margin(raw) < 0)
    assert old_wrong >= 1


def test_short_chains_and_ties_keep_the_input_and_are_uncertain():
    for n in (0, 1, 2, 3):
        x = np.arange(3 * n, dtype=float).reshape(n, 3)
        y, d = choose_hand(x)
        assert not d.mirrored and d.margin == 0 and d.terms == 0 and d.decision == "uncertain"
        assert y.shape == (n, 3) and d.probability == 0.5
    straight = np.c_[np.arange(20) * 3.8, np.zeros((20, 2))]  # no torsion has a sign
    assert choose_hand(straight)[1].decision == "uncertain"


def test_weak_evidence_is_uncertain_and_strong_evidence_is_not():
    x = ca(CHAINS / "c0ce1b1778ce5.pdb.gz")  # 35 residues, no helix
    d = choose_hand(x[:12])[1]
    assert d.decision == "uncertain" and d.probability < UNCERTAIN_PROBABILITY and not d.mirrored
    assert choose_hand(ca(HELICAL))[1].decision == "right"


def test_a_chain_break_is_left_out_of_the_evidence():
    x = ca(CHAINS / "c0c6bfb25f657.pdb.gz")  # 6Z3W G: a 40 A gap after row 81, a cis peptide after 29
    brk = chain_breaks(x)
    assert list(np.flatnonzero(brk)) == [29, 81]
    tab = hand_table()
    no_break = sum(tab.terms(x[a:b]).size for a, b in ((0, 30), (30, 82), (82, len(x))))
    assert tab.terms(x).size == no_break  # every quadruple lies within one unbroken segment


def test_reconstruct_records_the_decision():
    x = ca(HELICAL)
    out = reconstruct(ClassicalMDS(), cdist(x, x))
    diag = out.diagnostics
    hand = diag["handedness"]
    assert hand["decision"] in ("right", "mirrored") and hand["mirrored"] is diag["mirrored"]
    assert hand["decision"] == ("mirrored" if diag["mirrored"] else "right")
    assert diag["handedness_margin"] == pytest.approx(hand["log_likelihood_ratio"])
    assert (diag["handedness_margin"] < 0) is diag["mirrored"]
    assert hand["probability"] > 0.999 and hand["terms"] > 400
    json.dumps(diag, allow_nan=False)


def test_predict_scores_report_the_cores_decision_and_non_convergence():
    """scores.json's handedness is what reconstruct() decided (not a description of an older
    rule), "uncertain" included; predict's log line says NOT CONVERGED with the warnings."""
    from distfold.pipeline.predict import convergence_note, handedness_of

    x = ca(HELICAL)
    diag = reconstruct(ClassicalMDS(), cdist(x, x)).diagnostics
    scores = handedness_of(diag)
    assert scores["decision"] == diag["handedness"]["decision"] and scores["mirrored"] is diag["mirrored"]
    assert scores["margin"] == diag["handedness_margin"] and scores["rule"] == diag["handedness"]["rule"]
    short = reconstruct(ClassicalMDS(), cdist(x[:3], x[:3])).diagnostics  # no evidence: uncertain
    assert handedness_of(short)["decision"] == "uncertain" and handedness_of(short)["probability"] == 0.5
    assert convergence_note(diag) == ""
    d = cdist(x, x) * np.exp(0.2 * np.random.default_rng(0).standard_normal((len(x), len(x))))
    stopped = reconstruct(Refine(lbfgs_max_iter=2), (d + d.T) / 2).diagnostics
    assert stopped["converged"] is False
    note = convergence_note(stopped)
    assert note.startswith("\tNOT CONVERGED: L-BFGS did not converge") and "lbfgs_max_iter = 2" in note
    silent = reconstruct(SMACOF(max_iter=1), (d + d.T) / 2).diagnostics  # no warnings of its own
    assert convergence_note(silent) == "\tNOT CONVERGED: the reconstructor stopped before converging"


# -- the shipped table -----------------------------------------------------------

def test_the_table_is_small_antisymmetric_and_learned_on_the_training_split_only():
    assert TABLE_PATH.stat().st_size < 16_000
    data = json.loads(TABLE_PATH.read_text())
    tab = hand_table()
    assert tab.spacings == (1, 2, 3, 4)
    for k in tab.spacings:
        llr = tab.llr[k]
        assert llr.shape == (data["angle_bins"], data["torsion_bins"])
        np.testing.assert_allclose(llr[:, ::-1], -llr, atol=1e-4)  # a mirror negates every torsion
    assert data["training"]["chains"] == 952  # the train split without BioEmu structures
    assert 0.05 < tab.calibration_slope < 2.0
    assert "build_hand_table.py" in data["about"]


def test_the_table_ships_with_the_package():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "geometry/*.json" in globs["distfold"]
    assert TABLE_PATH.parent == root / "core" / "geometry"
