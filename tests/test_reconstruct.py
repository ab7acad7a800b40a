"""Reconstructors on real chains: exact recovery with the right hand, noise,
weights, input checks, and scikit-learn's SMACOF as the reference."""

import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from distfold.errors import InputError
from distfold.geometry.distmat import CheckedDistances, as_checked, check_distances, complete_distances, stress
from distfold.geometry.reconstruct import reconstruct
from distfold.plugins.mds_classical.classical import ClassicalMDS
from distfold.plugins.mds_smacof.refine import Refine
from distfold.plugins.mds_smacof.smacof import (SMACOF, GuttmanKernel, final_stress, smacof_loop,
                                                weight_laplacian, weight_laplacian_pinv)
from distfold.structure.io import read_chain

CHAINS = Path(__file__).parent / "data" / "chains"
UIDS = ["c55406f94174e", "c51d4cae83570", "cb98f573e0d35", "c70b106ab8731", "c9fa041c82503"]
HELICAL, LONG = "c55406f94174e", "c9fa041c82503"
EXACT_TOL = {"classical": 0.01, "smacof": 0.01, "refine": 0.1}
FACTORIES = {"classical": ClassicalMDS, "smacof": SMACOF, "refine": Refine}


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@lru_cache(maxsize=None)
def ca(uid: str) -> np.ndarray:
    return read_chain(CHAINS / f"{uid}.pdb.gz").ca


def noisy(d: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Symmetric multiplicative noise d * exp(sigma N(0, 1)), zero diagonal."""
    rng = np.random.default_rng(seed)
    out = np.triu(d * np.exp(sigma * rng.standard_normal(d.shape)), 1)
    return out + out.T


def rmsd_proper(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD after the best proper rotation (scipy's Kabsch; no reflection)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    rot, _ = Rotation.align_vectors(a, b)
    return float(np.sqrt(((a - rot.apply(b)) ** 2).sum(1).mean()))


# -- exact input ---------------------------------------------------------------

@pytest.mark.parametrize("uid", UIDS)
@pytest.mark.parametrize("method", ["classical", "smacof", "refine"])
def test_exact_distances_recover_the_structure_with_the_right_hand(method, uid):
    x = ca(uid)
    out = reconstruct(FACTORIES[method](), cdist(x, x))
    assert out.coords.shape == x.shape and out.coords.dtype == np.float64
    rmsd = rmsd_proper(out.coords, x)
    assert rmsd < EXACT_TOL[method], f"{method} on {uid}: RMSD {rmsd:.4f} A"
    assert rmsd_proper(out.coords * [1, 1, -1], x) > 1.0  # the mirror is really different
    json.dumps(out.diagnostics)


def test_exact_input_diagnostics():
    x = ca(HELICAL)
    d = cdist(x, x)
    c = reconstruct(ClassicalMDS(), d).diagnostics
    assert c["negative_eigenvalue_share"] < 1e-6 and c["stress1"] < 1e-6 and c["iterations"] == 0
    s = reconstruct(SMACOF(), d).diagnostics
    assert s["converged"] and s["iterations"] <= 3 and s["stress"] < 1e-12
    r = reconstruct(Refine(), d).diagnostics
    assert r["lbfgs_converged"] and r["bond_rmsd"] < 0.05 and r["clashes"] == 0


# -- noisy input ---------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy_results():
    """RMSD per method and chain at multiplicative noise 0.2, plus refine's bonds."""
    out = {m: [] for m in FACTORIES}
    bonds = []
    for k, uid in enumerate(UIDS):
        x = ca(uid)
        d = noisy(cdist(x, x), 0.2, seed=k)
        for m, factory in FACTORIES.items():
            rec = reconstruct(factory(), d)
            out[m].append(rmsd_proper(rec.coords, x))
            if m == "refine":
                bonds.append(np.linalg.norm(np.diff(rec.coords, axis=0), axis=1))
    return out, bonds


def test_smacof_and_refine_beat_classical_on_noisy_real_chains(noisy_results):
    rmsd, _ = noisy_results
    mean = {m: float(np.mean(v)) for m, v in rmsd.items()}
    assert mean["smacof"] < mean["classical"], mean
    assert mean["refine"] < mean["classical"], mean
    assert all(np.isfinite(v).all() for v in rmsd.values())


def test_refine_brings_consecutive_ca_distances_to_3_8(noisy_results):
    _, bonds = noisy_results
    allb = np.concatenate(bonds)
    assert np.all(np.abs(allb - 3.8) <= 0.1), (allb.min(), allb.max())


def test_noisy_helical_chain_gets_the_right_hand():
    x = ca(HELICAL)
    d = noisy(cdist(x, x), 0.2, seed=11)
    for m in ("smacof", "refine"):
        y = reconstruct(FACTORIES[m](), d).coords
        assert rmsd_proper(y, x) < rmsd_proper(y * [1, 1, -1], x), m


def test_negative_eigenvalue_share_reports_non_euclidean_input():
    x = ca(HELICAL)
    d = noisy(cdist(x, x), 0.2, seed=3)
    diag = reconstruct(ClassicalMDS(), d).diagnostics
    assert 0.05 < diag["negative_eigenvalue_share"] < 0.6
    assert diag["negative_eigenvalue_share_method"] == "exact"  # 127 residues: below the default threshold
    off = reconstruct(ClassicalMDS(negative_share=False), d).diagnostics
    assert off["negative_eigenvalue_share"] is None and off["negative_eigenvalue_share_method"] is None


# The estimate's largest error measured by benchmarks/bench_negative_share.py at L = 313
# (5 real chains, noise 0.05-0.5, 5 probe seeds, default 8 probes x 10 steps) was 0.0071.
SLQ_TOL = 0.01


def _exact_share(d: np.ndarray) -> float:
    """The textbook definition: every eigenvalue of -1/2 J D^2 J, J formed explicitly."""
    n = len(d)
    j = np.eye(n) - 1.0 / n
    lam = np.linalg.eigvalsh(-0.5 * j @ (d**2) @ j)
    return float(-lam[lam < 0].sum() / np.abs(lam).sum())


def test_exact_share_is_every_eigenvalue_below_the_threshold():
    x = ca(HELICAL)
    d = noisy(cdist(x, x), 0.2, seed=3)
    diag = reconstruct(ClassicalMDS(), d).diagnostics
    assert diag["negative_eigenvalue_share_method"] == "exact"
    assert abs(diag["negative_eigenvalue_share"] - _exact_share(d)) < 1e-12


def test_estimated_share_is_close_to_the_exact_one_on_a_real_noisy_313_residue_chain():
    x = ca(LONG)
    assert len(x) == 313
    d = noisy(cdist(x, x), 0.2, seed=12)
    exact = _exact_share(d)
    forced = reconstruct(ClassicalMDS(negative_share_exact_max_length=10**6), d).diagnostics
    assert forced["negative_eigenvalue_share_method"] == "exact"
    assert abs(forced["negative_eigenvalue_share"] - exact) < 1e-12
    estimates = []
    for seed in range(4):
        diag = reconstruct(ClassicalMDS(negative_share_exact_max_length=100, seed=seed), d).diagnostics
        assert diag["negative_eigenvalue_share_method"] == "slq"
        estimates.append(diag["negative_eigenvalue_share"])
    assert np.all(np.abs(np.array(estimates) - exact) < SLQ_TOL), (estimates, exact)
    assert len(set(estimates)) == len(estimates)  # the seed really draws other probes
    # default config at 313 residues: the estimate, reported as such
    assert reconstruct(ClassicalMDS(), d).diagnostics["negative_eigenvalue_share_method"] == "slq"


def test_estimated_share_is_deterministic_and_shared_by_every_reconstructor():
    x = ca(LONG)
    d = noisy(cdist(x, x), 0.2, seed=13)
    cfg = {"negative_share_exact_max_length": 0, "seed": 5}
    first = reconstruct(ClassicalMDS(**cfg), d).diagnostics
    again = reconstruct(ClassicalMDS(**cfg), d).diagnostics
    assert first["negative_eigenvalue_share"] == again["negative_eigenvalue_share"]  # bitwise
    for factory in (SMACOF, Refine):
        other = reconstruct(factory(**cfg), d).diagnostics
        assert other["negative_eigenvalue_share_method"] == "slq"
        assert other["negative_eigenvalue_share"] == first["negative_eigenvalue_share"]
    assert abs(first["negative_eigenvalue_share"] - _exact_share(d)) < SLQ_TOL


def test_slq_abs_trace_is_exact_when_the_krylov_space_is_exhausted():
    """For a diagonal matrix z'|A|z = tr|A| for every Rademacher z, and Lanczos
    with more steps than distinct eigenvalues (here 7 of 40: the probes break
    down early) integrates |x| exactly; deflated columns drop out. (Products are
    float32: exact up to its round-off.)"""
    from distfold.geometry.classical import negative_eigenvalue_share, slq_abs_trace

    vals = np.array([-3.0, -1.0, 0.0, 2.0, 5.0, 8.0, 40.0])[np.arange(40) % 7]
    a = np.diag(vals)
    assert np.isclose(slq_abs_trace(a, 3, 15, seed=0), np.abs(vals).sum(), rtol=1e-6)
    u = np.eye(40)[:, [6, 13]]  # two of the eigenvalue-40 directions
    assert np.isclose(slq_abs_trace(a, 3, 15, seed=1, deflate=u), np.abs(vals).sum() - 80.0, rtol=1e-6)
    share, method = negative_eigenvalue_share(a, exact_max_length=0, steps=15, top=(np.array([40.0, 40.0]), u))
    assert method == "slq"
    assert np.isclose(share, -vals[vals < 0].sum() / np.abs(vals).sum(), rtol=1e-6)


@pytest.mark.parametrize("bad", [{"negative_share_probes": 0}, {"negative_share_steps": 0},
                                 {"negative_share_exact_max_length": -1}])
@pytest.mark.parametrize("method", ["classical", "smacof", "refine"])
def test_bad_share_settings_are_refused(method, bad):
    with pytest.raises(ValueError, match="negative_share"):
        FACTORIES[method](**bad)


# -- against the references ---------------------------------------------------------

def test_lanczos_and_dense_eigensolvers_give_the_same_classical_coordinates():
    x = ca(LONG)
    d = noisy(cdist(x, x), 0.2, seed=5)
    a = reconstruct(ClassicalMDS(lanczos_min_length=1), d).coords
    b = reconstruct(ClassicalMDS(lanczos_min_length=10**9), d).coords
    # full numpy eigh, the textbook classical MDS
    n = len(d)
    j = np.eye(n) - 1.0 / n
    vals, vecs = np.linalg.eigh(-0.5 * j @ (d**2) @ j)
    ref = vecs[:, -3:][:, ::-1] * np.sqrt(vals[-3:][::-1])
    for y in (a, b):
        assert np.allclose(cdist(y, y), cdist(ref, ref), atol=1e-6)


def test_smacof_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.manifold")
    x = ca(HELICAL)
    d = noisy(cdist(x, x), 0.2, seed=7)
    ours = reconstruct(SMACOF(negative_share=False), d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mds = sk.MDS(n_components=3, metric="precomputed", init="classical_mds", n_init=1, max_iter=300,
                     eps=1e-6, normalized_stress=False)
        y = mds.fit_transform(d)
    # same stress definition (sum over i < j), same stop rule
    assert abs(ours.diagnostics["stress"] - mds.stress_) <= 1e-6 * mds.stress_
    assert abs(ours.diagnostics["iterations"] - mds.n_iter_) <= 1
    assert np.allclose(cdist(ours.coords, ours.coords), cdist(y, y), atol=1e-4)
    raw, s1 = final_stress(y, check_distances(d))
    assert np.isclose(raw, mds.stress_, rtol=1e-9)
    assert np.isclose(s1, np.sqrt(raw / ((cdist(y, y) ** 2).sum() / 2)))


def test_guttman_kernel_equals_the_dense_formula():
    x = ca(LONG)
    d = noisy(cdist(x, x), 0.2, seed=1)
    y = x - x.mean(0)
    for block in (7, 64, 1000):
        rx, cross = GuttmanKernel(d, block)(y)
        dist = cdist(y, y)
        r = np.divide(d, dist, out=np.zeros_like(d), where=dist > 0)
        assert np.allclose(rx[:, :3], r @ y) and np.allclose(rx[:, 3], r.sum(1))
        assert np.isclose(cross, (d * dist).sum() / 2)


# -- weights ---------------------------------------------------------------------

def test_weight_laplacian_pinv_is_the_moore_penrose_inverse():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.0, 2.0, (30, 30))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0.0)
    for case in ("connected (Cholesky)", "two components (pinvh)"):
        if case.startswith("two"):
            w[:10, 10:] = w[10:, :10] = 0.0
        vplus = weight_laplacian_pinv(w)
        assert np.allclose(vplus, vplus.T, atol=1e-12), case
        assert np.allclose(vplus, np.linalg.pinv(weight_laplacian(w)), atol=1e-10), case


@pytest.mark.parametrize("method", ["classical", "smacof", "refine"])
def test_exact_input_with_positive_weights_is_recovered(method):
    x = ca("c70b106ab8731")
    rng = np.random.default_rng(1)
    w = rng.uniform(0.1, 2.0, (len(x), len(x)))
    out = reconstruct(FACTORIES[method](), cdist(x, x), weights=(w + w.T) / 2)
    assert rmsd_proper(out.coords, x) < EXACT_TOL[method]
    assert out.diagnostics.get("weighted", True)


@pytest.mark.parametrize("method", ["classical", "smacof", "refine"])
def test_ignored_pairs_may_be_nan(method):
    x = ca("c51d4cae83570")
    n = len(x)
    rng = np.random.default_rng(2)
    miss = np.triu(rng.uniform(size=(n, n)) < 0.3, 1)
    miss |= miss.T
    d = np.where(miss, np.nan, cdist(x, x))
    out = reconstruct(FACTORIES[method](), d, weights=np.where(miss, 0.0, 1.0))
    rmsd = rmsd_proper(out.coords, x)
    assert np.all(np.isfinite(out.coords))
    assert rmsd < (1.0 if method == "classical" else 0.1), rmsd


def test_weighted_guttman_transform_never_raises_stress():
    x = ca("c70b106ab8731")
    d = noisy(cdist(x, x), 0.3, seed=4)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.0, 1.0, d.shape)
    w = (w + w.T) / 2
    checked = check_distances(d, w)
    x0 = rng.standard_normal((len(x), 3)) * 10
    stresses = [final_stress(smacof_loop(checked, x0, k, 0.0, 1.0, 32)[0], checked)[0] for k in range(8)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(stresses, stresses[1:])), stresses
    assert stresses[-1] < 0.5 * stresses[0]


def test_accelerated_weighted_loop_never_raises_stress():
    """Anderson steps are kept only when they do not raise stress; past the plain warm-up."""
    from distfold.plugins.mds_smacof.smacof import ANDERSON_WARMUP

    x = ca("c70b106ab8731")
    d = noisy(cdist(x, x), 0.3, seed=4)
    rng = np.random.default_rng(3)
    w = np.exp(rng.uniform(-4.0, 4.0, d.shape))  # a range of about 3,000x, like 1/variance weights
    w = (w + w.T) / 2
    checked = check_distances(d, w)
    x0 = rng.standard_normal((len(x), 3)) * 10
    ks = range(ANDERSON_WARMUP, ANDERSON_WARMUP + 25)
    runs = [smacof_loop(checked, x0, k, 0.0, 1.0, 32, acceleration=5) for k in ks]
    assert sum(info["accelerated_steps"] for _, info in runs[1:]) > 0
    stresses = [final_stress(y, checked)[0] for y, _ in runs]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(stresses, stresses[1:])), stresses


def test_acceleration_converges_sooner_on_wide_weights():
    x = ca(LONG)
    n = len(x)
    rng = np.random.default_rng(11)
    sep = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    sd = 0.05 + 0.02 * sep  # error grows with sequence separation, as a model's does
    d = np.abs(cdist(x, x) + np.triu(rng.standard_normal((n, n)), 1) * sd)
    d = np.triu(d, 1) + np.triu(d, 1).T
    w = 1.0 / np.maximum(sd, 1e-3) ** 2
    np.fill_diagonal(w, 0.0)
    plain = reconstruct(SMACOF(acceleration=0), d, weights=w).diagnostics
    fast = reconstruct(SMACOF(), d, weights=w).diagnostics
    assert fast["converged"] and fast["accelerated_steps"] > 0
    assert fast["iterations"] < plain["iterations"], (fast["iterations"], plain["iterations"])
    assert fast["stress"] <= plain["stress"] * (1 + 1e-3)


def test_acceleration_zero_is_the_plain_transform():
    x = ca("c70b106ab8731")
    d = noisy(cdist(x, x), 0.3, seed=4)
    w = np.random.default_rng(5).uniform(0.1, 2.0, d.shape)
    w = (w + w.T) / 2
    checked = check_distances(d, w)
    x0 = ClassicalMDS().reconstruct(d).coords
    a, ia = smacof_loop(checked, x0, 50, 1e-6, 1.0, 32)
    b, ib = smacof_loop(checked, x0, 50, 1e-6, 1.0, 32, acceleration=0)
    assert np.array_equal(a, b) and ia == ib and "accelerated_steps" not in ia


def test_constant_weights_equal_no_weights():
    x = ca("cb98f573e0d35")
    d = noisy(cdist(x, x), 0.2, seed=6)
    a = reconstruct(SMACOF(), d)
    b = reconstruct(SMACOF(), d, weights=np.full(d.shape, 3.0))
    assert np.allclose(a.coords, b.coords, atol=1e-9)
    assert np.isclose(b.diagnostics["stress"], 3.0 * a.diagnostics["stress"])


def test_inverse_variance_weights_help_under_heteroscedastic_noise():
    x = ca("c51d4cae83570")
    d = cdist(x, x)
    rng = np.random.default_rng(8)
    sd = np.where(rng.uniform(size=d.shape) < 0.5, 0.05, 0.5)
    sd = np.triu(sd, 1) + np.triu(sd, 1).T
    noisy_d = np.triu(d * np.exp(sd * rng.standard_normal(d.shape)), 1)
    noisy_d += noisy_d.T
    w = 1.0 / np.maximum((sd * d) ** 2, 1e-6)
    plain = rmsd_proper(reconstruct(SMACOF(), noisy_d).coords, x)
    weighted = rmsd_proper(reconstruct(SMACOF(), noisy_d, weights=w).coords, x)
    assert weighted < plain


# -- input checks ------------------------------------------------------------------

BAD = {
    "not square": (np.zeros((3, 4)), None, "not square"),
    "empty": (np.zeros((0, 0)), None, "empty"),
    "negative": (np.array([[0, -2.0], [-2.0, 0]]), None, "negative"),
    "nan": (np.array([[0, np.nan], [np.nan, 0]]), None, "non-finite"),
    "inf": (np.array([[0, np.inf], [np.inf, 0]]), None, "non-finite"),
    "asymmetric": (np.array([[0, 1.0], [2.0, 0]]), None, "not symmetric"),
    "diagonal": (np.array([[1.0, 1.0], [1.0, 0]]), None, "diagonal"),
    "text": (np.array([["a", "b"], ["c", "d"]]), None, "numeric"),
    "nan where weighted": (np.array([[0, np.nan], [np.nan, 0]]), np.ones((2, 2)), "non-finite"),
    "weights shape": (np.zeros((2, 2)), np.ones((3, 3)), "does not match"),
    "negative weights": (np.zeros((2, 2)), -np.ones((2, 2)), "negative"),
    "nan weights": (np.zeros((2, 2)), np.full((2, 2), np.nan), "non-finite"),
    "asymmetric weights": (np.zeros((2, 2)), np.array([[0, 1.0], [0.0, 0]]), "not symmetric"),
    "all weights zero": (np.ones((3, 3)) - np.eye(3), np.zeros((3, 3)), "weight 0"),
}


@pytest.mark.parametrize("method", ["classical", "smacof", "refine"])
@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_raises_one_line_input_error(method, case):
    d, w, words = BAD[case]
    with pytest.raises(InputError) as err:
        reconstruct(FACTORIES[method](), d, weights=w)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_small_asymmetry_is_symmetrised_and_reported():
    x = ca("c70b106ab8731")
    d = cdist(x, x)
    skew = d.copy()
    skew[0, 5] += 5e-4
    checked = check_distances(skew)
    assert np.array_equal(checked.distances, checked.distances.T)
    assert np.isclose(checked.distances[0, 5], d[0, 5] + 2.5e-4)
    out = reconstruct(SMACOF(), skew)
    assert np.isclose(out.diagnostics["max_asymmetry"], 5e-4)
    assert rmsd_proper(out.coords, x) < 0.01
    assert skew[0, 5] == d[0, 5] + 5e-4  # the caller's array is untouched


@pytest.mark.parametrize("method", ["classical", "smacof", "refine"])
def test_lengths_one_two_three(method):
    x = ca(HELICAL)[:3]
    for n in (1, 2, 3):
        out = reconstruct(FACTORIES[method](), cdist(x[:n], x[:n]))
        assert out.coords.shape == (n, 3) and np.all(np.isfinite(out.coords))
        assert np.allclose(cdist(out.coords, out.coords), cdist(x[:n], x[:n]), atol=1e-6)
        assert np.allclose(out.coords.mean(0), 0.0)


def test_all_zero_distances_collapse_to_one_point():
    out = reconstruct(SMACOF(), np.zeros((5, 5)))
    assert np.allclose(out.coords, 0.0) and out.diagnostics["stress"] == 0.0


def test_stress_definitions():
    x = ca("c70b106ab8731")
    d = noisy(cdist(x, x), 0.2, seed=9)
    y = reconstruct(SMACOF(), d).coords
    dy = cdist(y, y)
    iu = np.triu_indices(len(d), 1)
    raw, s1 = stress(y, check_distances(d))
    assert np.isclose(raw, ((dy[iu] - d[iu]) ** 2).sum())
    assert np.isclose(s1, np.sqrt(raw / (dy[iu] ** 2).sum()))


def test_completion_fills_missing_pairs_with_path_bounds():
    x = ca("c70b106ab8731")[:20]
    d = cdist(x, x)
    known = np.ones_like(d, dtype=bool)
    known[0, 19] = known[19, 0] = False
    np.fill_diagonal(known, False)
    checked = CheckedDistances(np.where(known, d, 0.0), known.astype(float), known, 0.0)
    full = complete_distances(checked)
    assert full[0, 19] == full[19, 0] >= d[0, 19] - 1e-9
    assert np.isclose(full[0, 19], min(d[0, k] + d[k, 19] for k in range(1, 19)))


# -- the core around every reconstructor (distfold.geometry.reconstruct) ------------------

class Spy:
    """A reconstructor that records what the core hands it and returns ``coords_of(d)``."""

    accepts_weights = True

    def __init__(self, coords_of=None, diagnostics=None):
        self.calls = []
        self.coords_of = coords_of
        self.diagnostics = diagnostics

    def reconstruct(self, distances, weights=None):
        from distfold.components import Reconstruction

        self.calls.append((distances, weights))
        x = self.coords_of(distances) if self.coords_of else np.zeros((len(distances), 3))
        diag = {"stress": np.float64(0.5), "iterations": np.int64(3), "converged": np.bool_(True),
                "share": np.float32(np.nan), "eigenvalues": np.arange(3.0)}
        return Reconstruction(x, diag if self.diagnostics is None else self.diagnostics)


def test_the_core_hands_the_plugin_checked_float64_arrays_once():
    x = ca("c70b106ab8731")[:30]
    d = cdist(x, x).astype(np.float32)
    d[0, 5] += 5e-4  # forgiven asymmetry
    d[3, 3] = 1e-4  # a diagonal within tolerance
    w = np.ones(d.shape)
    w[2, 9] = w[9, 2] = 0.0
    d[2, 9] = d[9, 2] = np.nan  # ignored pair
    given_d, given_w = d.copy(), w.copy()
    spy = Spy(lambda dd: x)
    reconstruct(spy, d, w)
    assert len(spy.calls) == 1
    got_d, got_w = spy.calls[0]
    for arr in (got_d, got_w):
        assert arr.dtype == np.float64 and arr.shape == (30, 30)
        assert np.array_equal(arr, arr.T) and np.all(np.diagonal(arr) == 0) and np.all(np.isfinite(arr))
    assert got_d[2, 9] == 0.0 and got_w[2, 9] == 0.0
    checked = check_distances(d, w)
    assert np.array_equal(got_d, checked.distances) and np.array_equal(got_w, checked.weights)
    assert np.array_equal(d, given_d, equal_nan=True) and np.array_equal(w, given_w)  # the caller's arrays
    assert spy.calls[0][0] is not d
    # the known mask a plugin derives is the one check_distances made
    assert np.array_equal(as_checked(got_d, got_w).known, checked.known)
    full = check_distances(cdist(x, x), np.ones(d.shape))
    assert full.known is None and as_checked(full.distances, full.weights).known is None


def test_the_core_centres_chooses_the_hand_and_reports_it():
    x = ca(HELICAL)
    mirror = x * [1.0, 1.0, -1.0] + [10.0, -20.0, 30.0]
    out = reconstruct(Spy(lambda d: mirror), cdist(x, x))
    assert out.diagnostics["mirrored"] is True and out.diagnostics["handedness_margin"] < 0
    assert np.allclose(out.coords.mean(0), 0.0, atol=1e-9)
    assert rmsd_proper(out.coords, x) < 1e-6
    # the step is numerically the one the reconstructors used to end with (distmat.finish)
    from distfold.geometry.handedness import fix_handedness

    expected = fix_handedness(mirror - mirror.mean(0))[0]
    assert np.array_equal(out.coords, expected) and out.coords.flags.c_contiguous
    kept = reconstruct(Spy(lambda d: x), cdist(x, x)).diagnostics
    assert kept["mirrored"] is False and kept["handedness_margin"] > 0


def test_the_core_makes_the_diagnostics_plain_json_and_adds_its_own():
    out = reconstruct(Spy(), np.zeros((3, 3)))
    diag = out.diagnostics
    assert json.loads(json.dumps(diag, allow_nan=False)) == diag
    assert diag["share"] is None and diag["eigenvalues"] == [0.0, 1.0, 2.0]
    assert type(diag["iterations"]) is int and diag["converged"] is True
    assert diag["weighted"] is False and diag["max_asymmetry"] == 0.0
    assert reconstruct(Spy(), np.zeros((3, 3)), np.ones((3, 3))).diagnostics["weighted"] is True


def test_bad_input_never_reaches_the_plugin():
    spy = Spy()
    for d, w, _ in BAD.values():
        with pytest.raises(InputError):
            reconstruct(spy, d, w)
    assert spy.calls == []


def test_weights_only_for_a_reconstructor_that_declares_them():
    class NoWeights(Spy):
        accepts_weights = False

        def reconstruct(self, distances):  # no weights parameter at all
            return super().reconstruct(distances)

    d = np.ones((3, 3)) - np.eye(3)
    assert reconstruct(NoWeights(), d).coords.shape == (3, 3)
    with pytest.raises(InputError, match="^weights: reconstructor NoWeights does not take per-pair weights"):
        reconstruct(NoWeights(), d, np.ones((3, 3)))
    spy = Spy()
    reconstruct(spy, d)
    assert spy.calls[0][1] is None  # no weights given: none passed on


@pytest.mark.parametrize("result, words", [
    (lambda d: np.zeros((len(d), 2)), "shape (4, 2); expected (4, 3)"),
    (lambda d: np.zeros((len(d) + 1, 3)), "shape (5, 3); expected (4, 3)"),
    (lambda d: np.full((len(d), 3), np.nan), "12 non-finite coordinates"),
], ids=["two columns", "a row too many", "nan"])
def test_bad_coordinates_are_a_one_line_error_naming_the_reconstructor(result, words):
    from distfold.errors import DistfoldError

    with pytest.raises(DistfoldError) as err:
        reconstruct(Spy(result), np.ones((4, 4)) - np.eye(4))
    msg = str(err.value)
    assert msg.startswith("reconstructor Spy returned") and words in msg and "\n" not in msg


def test_a_result_that_is_not_a_reconstruction_is_an_error():
    from distfold.errors import DistfoldError

    class Tuple(Spy):
        def reconstruct(self, distances, weights=None):
            return np.zeros((len(distances), 3)), {}

    with pytest.raises(DistfoldError, match="reconstructor Tuple returned tuple, not a Reconstruction"):
        reconstruct(Tuple(), np.zeros((2, 2)))


# -- plugins stand alone ------------------------------------------------------------

PLUGINS = Path(__file__).parent.parent / "plugins"


def _imported_modules(path: Path, package: str) -> list[str]:
    """Absolute names of every module ``path`` (in ``package``) imports, relative ones resolved."""
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names]  # `from distfold.plugins import other`
    return names


def test_no_plugin_imports_another_plugins_modules():
    files = sorted(PLUGINS.glob("*/**/*.py"))
    assert len({f.relative_to(PLUGINS).parts[0] for f in files}) >= 5
    bad = []
    for path in files:
        own = path.relative_to(PLUGINS).parts[0]
        package = ".".join(["distfold.plugins", *path.relative_to(PLUGINS).parent.parts])
        for mod in _imported_modules(path, package):
            parts = mod.split(".")
            if parts[:2] == ["distfold", "plugins"] and len(parts) > 2 and parts[2] != own:
                bad.append(f"{path.relative_to(PLUGINS)} imports {mod}")
    assert not bad, bad


def test_smacof_and_refine_do_not_load_the_classical_plugin():
    import subprocess
    import sys

    code = ("import sys, distfold.plugins.mds_smacof.smacof, distfold.plugins.mds_smacof.refine; "
            "print(sorted(m for m in sys.modules if m.startswith('distfold.plugins.mds_classical')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
