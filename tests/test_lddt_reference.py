"""C-alpha lDDT against two implementations that are not distfold's: biotite's
``lddt`` and AlphaFold2's ``lddt`` transcribed to numpy. The values are committed
fixtures (tests/data/reference_scores/lddt_reference.json), made by
``python tests/data/reference_scores/make_lddt_reference.py``; biotite is needed only
to remake them (and for the live check below, skipped without it).

The cases include models that lack reference residues (coverage 90 / 70 / 50 / 30 %,
a fragment, an unrelated protein paired on a few residues): the standard keeps
their pairs in the denominator as not preserved (issue 15, point 1)."""

import json

import numpy as np
import pytest

from distfold.structure import metrics as M

from conftest import DATA

REF = DATA / "reference_scores"


@pytest.fixture(scope="module")
def reference():
    cases = json.loads((REF / "lddt_reference.json").read_text())["cases"]
    arrays = np.load(REF / "lddt_cases.npz")
    return {name: (arrays[f"{name}__ref"], arrays[f"{name}__model"], c) for name, c in cases.items()}


def test_fixture_covers_partial_models(reference):
    cov = sorted(c["coverage"] for _, _, c in reference.values())
    assert len(reference) >= 15 and cov[0] <= 0.3 and cov[-1] == 1.0
    assert sum(c < 1.0 for c in cov) >= 10


def test_global_lddt_equals_biotite_and_alphafold2(reference):
    for name, (y, x, c) in reference.items():
        ours, _ = M.lddt(M.distance_matrix(x), M.distance_matrix(y))
        assert ours == pytest.approx(c["biotite"], abs=1e-6), name
        assert ours == pytest.approx(c["alphafold2"], abs=1e-6), name


def test_per_residue_lddt_equals_biotite_and_alphafold2(reference):
    for name, (y, x, c) in reference.items():
        _, per_res = M.lddt(M.distance_matrix(x), M.distance_matrix(y))
        scored = np.isfinite(per_res)
        af2 = np.array(c["alphafold2_per_residue"])
        bio = np.array([np.nan if v is None else v for v in c["biotite_per_residue"]])
        assert np.allclose(per_res[scored], af2[scored], atol=1e-6), name
        assert np.allclose(per_res[scored], bio[scored], atol=1e-6), name
        # a reference residue the model lacks scores 0, as in both references
        lacking = ~np.isfinite(x).all(1) & scored
        assert np.all(per_res[lacking] == 0.0), name


def test_score_coordinates_lddt_is_the_standard_and_reports_coverage(reference):
    for name, (y, x, c) in reference.items():
        s = M.score_coordinates(x, y)
        assert s["lddt"] == pytest.approx(c["biotite"], abs=1e-6), name
        assert s["coverage"] == pytest.approx(c["coverage"]), name
        # a model cannot score above the share of reference pairs it can cover
        assert s["lddt"] <= s["coverage"] + 1e-12, name


def test_lddt_falls_with_coverage(reference):
    """The issue's measurement: one noisy chain with fewer and fewer residues. The
    old rule (pairs with a missing residue dropped) stayed near 0.65 throughout."""
    for chain in ("barnase", "beta"):
        scores = [M.score_coordinates(*reversed(reference[f"{chain}_noise1A_{tag}"][:2]))["lddt"]
                  for tag in ("full", "coverage90", "coverage70", "coverage50", "coverage30")]
        assert all(a > b for a, b in zip(scores, scores[1:])), scores
        assert scores[-1] < 0.1


def test_masks_reference_absent_residues_are_excluded():
    """Residues absent from the reference (mask False or NaN rows) leave the pairs;
    residues the model lacks (model_mask False or NaN) stay as not preserved."""
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(size=(40, 3)), axis=0) * 2.0
    x = y + rng.normal(scale=0.3, size=y.shape)
    dx, dy = M.distance_matrix(x), M.distance_matrix(y)
    full, _ = M.lddt(dx, dy)
    ref_mask = np.ones(40, bool)
    ref_mask[:10] = False
    sub, _ = M.lddt(dx[10:, 10:], dy[10:, 10:])
    assert M.lddt(dx, dy, mask=ref_mask)[0] == pytest.approx(sub)
    dy_nan = dy.copy()
    dy_nan[:10] = dy_nan[:, :10] = np.nan
    assert M.lddt(dx, dy_nan)[0] == pytest.approx(sub)
    model_mask = ref_mask
    lacking, per_res = M.lddt(dx, dy, model_mask=model_mask)
    assert lacking < sub and np.all(per_res[:10] == 0.0)
    dx_nan = dx.copy()
    dx_nan[:10] = dx_nan[:, :10] = np.nan
    assert M.lddt(dx_nan, dy)[0] == pytest.approx(lacking)
    assert full >= lacking


def test_live_biotite_agrees_on_a_fresh_case():
    """Where biotite is installed, one case made here (not from the fixture)."""
    pytest.importorskip("biotite")
    import importlib.util

    spec = importlib.util.spec_from_file_location("mk", REF / "make_lddt_reference.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    from distfold.structure.io import read_chain

    y = read_chain(DATA / "chains" / "c70b106ab8731.pdb.gz").ca
    rng = np.random.default_rng(0)
    x = y + rng.normal(scale=1.5, size=y.shape)
    x[rng.random(len(x)) < 0.4] = np.nan
    theirs, theirs_res = mk.biotite_lddt(y, x)
    ours, per_res = M.lddt(M.distance_matrix(x), M.distance_matrix(y))
    assert ours == pytest.approx(theirs, abs=1e-4)  # biotite works in float32
    ok = np.isfinite(per_res)
    assert np.allclose(per_res[ok], theirs_res[ok], atol=1e-3)
