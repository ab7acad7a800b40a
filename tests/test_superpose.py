"""The batched Kabsch rotations (Horn's quaternion form, core/geometry/superpose.py)
against the SVD form they replace: the same rotations and the same fitted objective,
on real fragments, random and degenerate covariances."""

import numpy as np
import pytest

from distfold.geometry import superpose
from distfold.geometry.superpose import _rotations_by_svd, _rotations_from_covariance, kabsch_batch
from distfold.structure.io import read_chain

from conftest import DATA


def _objective(r, cov):
    """tr(R cov): what the best rotation maximises (sum_i y_i . R x_i of centred sets)."""
    return np.einsum("sij,sji->s", r, cov)


def _proper(r):
    eye = np.einsum("sij,skj->sik", r, r)
    return np.abs(eye - np.eye(3)).max() < 1e-12 and np.abs(np.linalg.det(r) - 1.0).max() < 1e-12


def _covariances(x, y, sel):
    w = sel.astype(float)
    sw = w.sum(1)
    cx, cy = (w @ x) / sw[:, None], (w @ y) / sw[:, None]
    outer = (x[:, :, None] * y[:, None, :]).reshape(len(x), 9)
    return (w @ outer).reshape(-1, 3, 3) - sw[:, None, None] * cx[:, :, None] * cy[:, None, :]


def _real_covariances():
    """Fragments and random 3-6 residue subsets of a real chain fitted onto its mirror image and
    onto itself with noise: good and poor fits, planar 3-point subsets."""
    y = read_chain(DATA / "compare" / "d1cih.pdb.gz").ca
    rng = np.random.default_rng(0)
    n = len(y)
    sel = [np.isin(np.arange(n), np.arange(s, s + k)) for k in (3, 4, 8, 30, n // 2) for s in range(0, n - k, 3)]
    keys = rng.random((600, n))
    k = 3 + np.arange(600) % 4
    sel += list(keys <= np.sort(keys, 1)[np.arange(600), k - 1][:, None])
    sel = np.array(sel)
    out = []
    for x in (y * [1.0, 1.0, -1.0], y + rng.normal(scale=1.5, size=y.shape)):
        out.append(_covariances(x - x.mean(0), y - y.mean(0), sel))
    return np.concatenate(out)


@pytest.mark.parametrize("source", ["real", "random"])
def test_same_rotations_and_objective_as_the_svd(source):
    cov = _real_covariances() if source == "real" else np.random.default_rng(1).normal(size=(3000, 3, 3))
    r = _rotations_from_covariance(cov)
    ref = _rotations_by_svd(cov.copy())
    assert _proper(r)
    obj, obj_ref = _objective(r, cov), _objective(ref, cov)
    scale = np.abs(cov).sum((1, 2))
    # never a worse fit than the SVD's, beyond rounding
    assert (obj - obj_ref >= -1e-13 * scale).all()
    dev = np.abs(r - ref).max((1, 2))
    assert np.median(dev) < 1e-14
    assert dev.max() < 1e-8  # rotations barely determined (near-collinear points) differ most
    assert (dev < 1e-11).mean() > 0.995


@pytest.fixture
def quaternion_always(monkeypatch):
    """The quaternion path for batches of any size (small ones take the SVD by default)."""
    monkeypatch.setattr(superpose, "QUATERNION_MIN_BATCH", 1)


def test_reflections_never_returned(quaternion_always):
    """A covariance whose best orthogonal map is a reflection (the mirror image of a chain)
    still gets the best proper rotation, as the SVD's sign correction gives it."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 3))
    y = x * [1.0, 1.0, -1.0]
    cov = _covariances(x, y, np.ones((1, 20), bool))
    assert np.linalg.det(cov[0]) < 0
    r = _rotations_from_covariance(cov)
    assert _proper(r)
    assert np.allclose(r, _rotations_by_svd(cov.copy()), atol=1e-10)


def test_degenerate_covariances_fall_back_to_the_svd(quaternion_always):
    """Zero (one point), rank one (collinear points): the largest eigenvalue is repeated and the
    rotation not determined; the result is still a proper rotation, the SVD's own."""
    line = np.outer([1.0, 2.0, 3.0], [3.0, 1.0, 0.5])
    cov = np.stack([np.zeros((3, 3)), line, 1e-300 * line])
    r = _rotations_from_covariance(cov)
    assert _proper(r)
    assert np.allclose(r, _rotations_by_svd(cov.copy()))


def test_small_batches_agree_with_large_ones():
    cov = _real_covariances()[:200]
    whole = _rotations_from_covariance(cov)
    pieces = np.concatenate([_rotations_from_covariance(cov[k:k + 5]) for k in range(0, 200, 5)])
    assert np.abs(whole - pieces).max() < 1e-8


def test_upper_bound_start_gives_the_same_rotations():
    """An upper bound of the eigenvalue (half the summed squared deviations) only saves Newton steps."""
    y = read_chain(DATA / "compare" / "d1cih.pdb.gz").ca
    x = y + np.random.default_rng(3).normal(scale=2.0, size=y.shape)
    x, y = x - x.mean(0), y - y.mean(0)
    sel = np.array([np.isin(np.arange(len(y)), np.arange(s, s + 12)) for s in range(0, len(y) - 12)])
    cov = _covariances(x, y, sel)
    w = sel.astype(float)
    sw = w.sum(1)
    dev = lambda a: (w @ (a * a).sum(1)) - sw * (((w @ a) / sw[:, None]) ** 2).sum(1)
    upper = 0.5 * (dev(x) + dev(y)) * (1 + 1e-9)
    assert np.allclose(_rotations_from_covariance(cov, upper=upper), _rotations_from_covariance(cov), atol=1e-12)


def test_kabsch_batch_superposes_a_rotated_copy_exactly():
    y = read_chain(DATA / "compare" / "d1cih.pdb.gz").ca
    a = np.deg2rad(70.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    x = (y - 5.0) @ rot.T
    r, t = kabsch_batch(x, y, np.ones((1, len(y))))
    assert np.abs(x @ r[0].T + t[0] - y).max() < 1e-9
