"""Public conformance suite: one entry point per component kind.

Third-party plugins run the same checks as the built-ins::

    from distfold.testing import parametrize_with_checks

    @parametrize_with_checks("reconstructor", [MyReconstructor()])
    def test_conformance(component, check):
        check(component)

or call ``check_reconstructor(MyReconstructor())`` directly (it raises
``AssertionError`` naming the failed check). Each ``check_<kind>`` runs every
check of that kind; ``CHECKS[kind]`` lists them. The first check of every kind,
``check_<kind>_protocol``, asks whether the component follows its kind's
:mod:`distfold.protocols` protocol, declared capabilities included
(``accepts_weights``, ``error_distribution``, ``is_pretrained``).

This module imports the plugin kernel and :mod:`distfold.geometry` only, never a
plugin: the built-ins are checked exactly as a third party's components are.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Iterable

import numpy as np

from distfold.components import Reconstruction
from distfold.protocols import ERROR_DISTRIBUTIONS, PROTOCOLS, contract_problems

Check = Callable[[Any], None]
CHECKS: dict[str, list[Check]] = {"backbone": [], "distance_head": [], "normaliser": [], "reconstructor": []}


def _check(kind: str):
    def deco(func: Check) -> Check:
        CHECKS[kind].append(func)
        return func

    return deco


def _clone(component: Any) -> Any:
    """A fresh component from a JSON round trip of the config."""
    config = json.loads(json.dumps(component.get_config()))
    return type(component)(**config)


# -- shared -----------------------------------------------------------------

def check_config_json_round_trip(component: Any) -> None:
    config = component.get_config()
    text = json.dumps(config, sort_keys=True)
    again = _clone(component).get_config()
    assert json.dumps(again, sort_keys=True) == text, "config changed through a JSON round trip"


for _kind in CHECKS:
    CHECKS[_kind].append(check_config_json_round_trip)


# -- protocols (the first check of every kind) ----------------------------------

def _assert_protocol(component: Any, kind: str) -> None:
    protocol = PROTOCOLS[kind]
    problems = contract_problems(component, kind)
    assert not problems, f"not a distfold.protocols.{protocol.__name__}: {'; '.join(problems)}"
    assert isinstance(component, protocol), f"not a distfold.protocols.{protocol.__name__}"


def check_reconstructor_protocol(rec: Any) -> None:
    """A :class:`~distfold.protocols.Reconstructor`; ``accepts_weights`` is a bool and,
    when True, ``reconstruct(distances, weights=...)`` takes weights."""
    _assert_protocol(rec, "reconstructor")
    if rec.accepts_weights:
        x = _helix(6)
        out = rec.reconstruct(_dist(x), weights=1.0 - np.eye(6))  # as the core passes them: zero diagonal
        assert isinstance(out, Reconstruction), "reconstruct(d, weights=w) must return a Reconstruction"


def check_normaliser_protocol(norm: Any) -> None:
    """A :class:`~distfold.protocols.Normaliser`."""
    _assert_protocol(norm, "normaliser")


def check_backbone_protocol(bb: Any) -> None:
    """A :class:`~distfold.protocols.Backbone`; ``is_pretrained`` a bool, ``hidden_size`` an int."""
    _assert_protocol(bb, "backbone")


def check_distance_head_protocol(head: Any) -> None:
    """A :class:`~distfold.protocols.DistanceHead`; ``error_distribution`` is one of
    ``"laplace"``, ``"gaussian"``, None, and None exactly when the head returns no
    ``"variance"`` (and ``variance_angstrom`` gives None)."""
    _assert_protocol(head, "distance_head")
    declared = head.error_distribution
    assert declared in ERROR_DISTRIBUTIONS, f"error_distribution {declared!r}"
    head.eval()
    out, norm, _ = _head_forward(head, (4,))
    has_variance = out.get("variance") is not None
    if declared is None:
        assert not has_variance, "error_distribution is None but the head returns a 'variance'"
        assert head.variance_angstrom(out, norm) is None, \
            "error_distribution is None but variance_angstrom() is not None"
    else:
        assert has_variance, f"error_distribution is {declared!r} but the head returns no 'variance'"


for _kind, _func in (("reconstructor", check_reconstructor_protocol), ("normaliser", check_normaliser_protocol),
                     ("backbone", check_backbone_protocol), ("distance_head", check_distance_head_protocol)):
    CHECKS[_kind].insert(0, _func)


# -- reconstructors -----------------------------------------------------------

def _helix(n: int) -> np.ndarray:
    """An ideal right-handed C-alpha alpha helix (3.6 residues/turn, 1.5 A rise)."""
    t = np.arange(n) * np.deg2rad(100.0)
    return np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * np.arange(n)], axis=1)


def _dist(x: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def _kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD after optimal proper rotation (no reflection)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((a @ r - b) ** 2).sum(1).mean()))


def _reconstruct(rec: Any, distances: np.ndarray, weights: np.ndarray | None = None) -> Reconstruction:
    """``rec`` run the way distfold runs every reconstructor: input checked once,
    hand chosen once (:func:`distfold.geometry.reconstruct.reconstruct`)."""
    from distfold.geometry.reconstruct import reconstruct

    return reconstruct(rec, distances, weights)


@_check("reconstructor")
def check_reconstructor_exact_helix(rec: Any) -> None:
    """Exact distances of a right-handed helix come back, right hand kept (by the core:
    the plugin may return either hand), with the diagnostics the contract asks for."""
    from distfold.geometry.distmat import check_distances

    x = _helix(40)
    checked = check_distances(_dist(x))
    own = rec.reconstruct(checked.distances)
    assert isinstance(own, Reconstruction), "reconstruct() must return a Reconstruction"
    assert np.shape(own.coords) == (40, 3), f"coords shape {np.shape(own.coords)}, expected (40, 3)"
    for key in ("stress", "stress1", "iterations", "converged"):
        assert key in own.diagnostics, f"diagnostics lack {key!r}"
    out = _reconstruct(rec, _dist(x))
    assert out.coords.dtype == np.float64, "coords must be float64"
    rmsd = _kabsch_rmsd(out.coords, x)
    assert rmsd < 0.1, f"exact helix distances not reproduced with the right hand: RMSD {rmsd:.3f} A"
    for key in ("mirrored", "handedness_margin"):
        assert key in out.diagnostics, f"diagnostics lack {key!r}"
    json.dumps(out.diagnostics, allow_nan=False)


@_check("reconstructor")
def check_reconstructor_small_lengths(rec: Any) -> None:
    for n in (1, 2, 3):
        x = _helix(n)
        out = _reconstruct(rec, _dist(x))
        assert out.coords.shape == (n, 3), f"L={n}: coords shape {out.coords.shape}"
        assert np.allclose(_dist(out.coords), _dist(x), atol=1e-3), f"L={n}: distances not reproduced"


@_check("reconstructor")
def check_reconstructor_weights(rec: Any) -> None:
    """With ``accepts_weights``, a zero-weight NaN pair is ignored (the plugin gets it
    as distance 0, weight 0); without it, weights are refused before the plugin runs."""
    from distfold.errors import InputError

    x = _helix(30)
    d = _dist(x)
    w = np.ones_like(d)
    w[0, 29] = w[29, 0] = 0.0
    d[0, 29] = d[29, 0] = np.nan  # ignored pair may be non-finite
    if not getattr(rec, "accepts_weights", False):
        try:
            _reconstruct(rec, d, w)
        except InputError:
            return
        raise AssertionError("weights given to a reconstructor without accepts_weights were not refused")
    out = _reconstruct(rec, d, w)
    assert out.coords.shape == (30, 3), f"coords shape {out.coords.shape}, expected (30, 3)"


@_check("reconstructor")
def check_reconstructor_rejects_bad_input(rec: Any) -> None:
    """Bad input is a one-line InputError from the core; the plugin never sees it."""
    from distfold.errors import InputError

    bad = {
        "not square": np.zeros((3, 4)),
        "negative": -np.ones((4, 4)) + np.eye(4),
        "not finite": np.full((4, 4), np.nan),
        "empty": np.zeros((0, 0)),
    }
    for what, mat in bad.items():
        try:
            _reconstruct(rec, mat)
        except InputError as exc:
            assert "\n" not in str(exc), f"{what}: the error is not one line"
            continue
        raise AssertionError(f"{what} input was accepted instead of raising InputError")


@_check("reconstructor")
def check_reconstructor_deterministic(rec: Any) -> None:
    rng = np.random.default_rng(0)
    d = _dist(_helix(25)) * np.exp(0.1 * rng.standard_normal((25, 25)))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    a = _reconstruct(_clone(rec), d).coords
    b = _reconstruct(_clone(rec), d).coords
    assert np.allclose(a, b), "two runs with the same config gave different coordinates"


# -- normalisers ----------------------------------------------------------------

@_check("normaliser")
def check_normaliser_round_trip(norm: Any) -> None:
    rng = np.random.default_rng(0)
    d = np.abs(rng.gamma(2.0, 8.0, size=500))
    norm.fit(d)
    d = np.concatenate([[0.0, 3.8], d])
    y = norm.encode(d)
    assert np.allclose(norm.decode(y), d, rtol=1e-6, atol=1e-6), "decode(encode(d)) != d"
    assert abs(float(norm.encode(np.array([0.0]))[0])) < 1e-9, "encode(0) must be 0"
    s = np.sort(d)
    ys = norm.encode(s)
    assert np.all(np.diff(ys) >= 0) and np.all(np.diff(ys)[np.diff(s) > 0] > 0), "encode is not strictly monotonic"
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    t = torch.tensor(d, dtype=torch.float32)
    assert torch.allclose(norm.decode(norm.encode(t)), t, rtol=1e-4, atol=1e-4), "torch round trip failed"


@_check("normaliser")
def check_normaliser_config_keeps_fit(norm: Any) -> None:
    norm.fit(np.linspace(1.0, 40.0, 100))
    clone = _clone(norm)
    d = np.linspace(0.0, 50.0, 11)
    assert np.allclose(clone.encode(d), norm.encode(d)), "fitted parameters are not in get_config()"


# -- entry points -------------------------------------------------------------------

def _run_all(kind: str, component: Any) -> None:
    for check in CHECKS[kind]:
        try:
            check(component)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__}: {exc}") from exc


check_reconstructor = functools.partial(_run_all, "reconstructor")
check_normaliser = functools.partial(_run_all, "normaliser")
check_backbone = functools.partial(_run_all, "backbone")
check_distance_head = functools.partial(_run_all, "distance_head")


def parametrize_with_checks(kind: str, components: Iterable[Any]):
    """pytest decorator: one test per (component, check) of ``kind``."""
    import pytest

    components = list(components)
    params, ids = [], []
    for comp in components:
        for check in CHECKS[kind]:
            params.append((comp, check))
            ids.append(f"{type(comp).__name__}-{check.__name__}")
    return pytest.mark.parametrize("component, check", params, ids=ids)


# -- backbones ------------------------------------------------------------------------------------
# Backbones and heads are torch modules; torch is imported inside each check.

_SEQS = ["MKTAYIAKQR", "GSHM", "W"]


@_check("backbone")
def check_backbone_shapes(bb: Any) -> None:
    import torch

    bb.eval()
    with torch.no_grad():
        feats, mask = bb(_SEQS)
    h = int(bb.hidden_size)
    assert tuple(feats.shape) == (3, 10, h), f"features shape {tuple(feats.shape)}, expected (3, 10, {h})"
    assert feats.dtype == torch.float32, f"features dtype {feats.dtype}, expected float32"
    assert mask.dtype == torch.bool and tuple(mask.shape) == (3, 10), "mask must be bool (B, L_max)"
    assert mask.sum(1).tolist() == [10, 4, 1], f"mask counts {mask.sum(1).tolist()}, expected one per residue"
    assert bool(torch.isfinite(feats[mask]).all()), "non-finite features on real residues"


@_check("backbone")
def check_backbone_small_lengths(bb: Any) -> None:
    import torch

    bb.eval()
    for n in (1, 2, 3):
        with torch.no_grad():
            feats, mask = bb(["ACD"[:n]])
        assert tuple(feats.shape[:2]) == (1, n), f"L={n}: features shape {tuple(feats.shape)}"
        assert bool(torch.isfinite(feats).all()), f"L={n}: non-finite features"


@_check("backbone")
def check_backbone_padding_invariant(bb: Any) -> None:
    import torch

    bb.eval()
    with torch.no_grad():
        alone, _ = bb([_SEQS[1]])
        batched, _ = bb(_SEQS)
    assert torch.allclose(alone[0], batched[1, :4], atol=1e-4), "features depend on the padding of the batch"


@_check("backbone")
def check_backbone_deterministic(bb: Any) -> None:
    import torch

    bb.eval()
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        with torch.no_grad():
            outs.append(bb(_SEQS)[0])
    assert torch.equal(outs[0], outs[1]), "two eval-mode forwards after the same seed differ"


@_check("backbone")
def check_backbone_trainable_state(bb: Any) -> None:
    import torch

    sd = bb.trainable_state_dict()
    assert sd, "trainable_state_dict() is empty"
    assert all(isinstance(v, torch.Tensor) for v in sd.values()), "trainable_state_dict() holds non-tensors"
    bb.load_trainable_state_dict({k: v.clone() for k, v in sd.items()})


# -- distance heads ---------------------------------------------------------------------------------

def _head_inputs(head: Any, lengths=(5, 3)):
    import torch

    g = torch.Generator().manual_seed(0)
    b, n = len(lengths), max(lengths)
    feats = torch.randn(b, n, int(head.hidden_size), generator=g)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for k, m in enumerate(lengths):
        mask[k, :m] = True
    idx = torch.arange(n)
    sep = (idx[:, None] - idx[None, :]).abs().float()
    prior_a = 3.8 * sep ** 0.6  # a plausible prior in Å
    return feats, mask, prior_a.expand(b, n, n).clone()


class _Log1p:
    """y = log(1 + d) / scale for numpy arrays and torch tensors: the normaliser the
    head checks bind (defined here so that the suite imports no plugin)."""

    def __init__(self, scale: float = 5.0):
        self.scale = float(scale)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def fit(self, distances: Any) -> "_Log1p":
        return self

    def encode(self, d: Any) -> Any:
        return (d.log1p() if hasattr(d, "log1p") else np.log1p(d)) / self.scale

    def decode(self, y: Any) -> Any:
        y = y * self.scale
        return y.expm1() if hasattr(y, "expm1") else np.expm1(y)


def _bind_normaliser(head: Any):
    norm = _Log1p(scale=5.0)
    if hasattr(head, "set_normaliser"):
        head.set_normaliser(norm)
    return norm


def _head_forward(head: Any, lengths=(5, 3)):
    import torch

    norm = _bind_normaliser(head)
    feats, mask, prior_a = _head_inputs(head, lengths)
    with torch.no_grad():
        out = head(feats, mask, prior=norm.encode(prior_a))
    return out, norm, mask


@_check("distance_head")
def check_head_outputs(head: Any) -> None:
    import torch

    head.eval()
    out, norm, mask = _head_forward(head)
    d = out["distance"]
    assert tuple(d.shape) == (2, 5, 5), f"distance shape {tuple(d.shape)}, expected (2, 5, 5)"
    assert d.dtype == torch.float32, f"distance dtype {d.dtype}"
    for name, t in (("distance", d), ("variance", out.get("variance"))):
        if t is None:
            continue
        assert bool(torch.isfinite(t).all()), f"{name} is not finite"
        assert torch.allclose(t, t.transpose(-1, -2), atol=1e-6), f"{name} is not symmetric"
        assert bool((torch.diagonal(t, dim1=-2, dim2=-1) == 0).all()), f"{name} diagonal is not zero"
        assert bool((t >= 0).all()), f"{name} has negative entries"
    da = head.distance_angstrom(out, norm)
    assert tuple(da.shape) == (2, 5, 5) and bool((da >= 0).all()) and bool(torch.isfinite(da).all()), \
        "distance_angstrom must be finite, non-negative (B, L, L)"
    va = head.variance_angstrom(out, norm)
    if va is not None:
        assert tuple(va.shape) == (2, 5, 5) and bool((va >= 0).all()), "variance_angstrom must be >= 0 (B, L, L)"


@_check("distance_head")
def check_head_small_lengths(head: Any) -> None:
    import torch

    head.eval()
    for n in (1, 2, 3):
        out, _, _ = _head_forward(head, (n,))
        d = out["distance"]
        assert tuple(d.shape) == (1, n, n), f"L={n}: distance shape {tuple(d.shape)}"
        assert bool(torch.isfinite(d).all()) and bool((torch.diagonal(d, dim1=-2, dim2=-1) == 0).all()), \
            f"L={n}: distance not finite or diagonal not zero"


@_check("distance_head")
def check_head_deterministic(head: Any) -> None:
    import torch

    head.eval()
    a, _, _ = _head_forward(head)
    b, _, _ = _head_forward(head)
    assert torch.equal(a["distance"], b["distance"]), "two eval-mode forwards differ"
    c, _, _ = _head_forward(_clone(head).eval())
    assert torch.equal(a["distance"], c["distance"]), "a head rebuilt from its config gives different output"


@_check("distance_head")
def check_head_loss_masking(head: Any) -> None:
    import torch

    head.train()
    norm = _bind_normaliser(head)
    feats, mask, prior_a = _head_inputs(head)
    out = head(feats, mask, prior=norm.encode(prior_a))
    target = norm.encode(prior_a * 1.1)
    pair_mask = mask[:, :, None] & mask[:, None, :]
    pair_mask = pair_mask & ~torch.eye(5, dtype=torch.bool)
    loss = head.loss(out, target, pair_mask)
    assert loss.dim() == 0 and bool(torch.isfinite(loss)), "loss must be a finite scalar"
    loss.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), "loss gives no gradient"
    poisoned = target.clone()
    poisoned[~pair_mask] = 1e3
    again = head.loss({k: v.detach() if hasattr(v, "detach") else v for k, v in out.items()}, poisoned, pair_mask)
    assert torch.allclose(again, loss.detach(), atol=1e-5), "pairs outside pair_mask change the loss"
    head.zero_grad(set_to_none=True)
    head.eval()


@_check("distance_head")
def check_head_padding_invariant(head: Any) -> None:
    import torch

    head.eval()
    norm = _bind_normaliser(head)
    feats, mask, prior_a = _head_inputs(head, (5, 3))
    with torch.no_grad():
        batched = head(feats, mask, prior=norm.encode(prior_a))["distance"][1, :3, :3]
        alone = head(feats[1:, :3], mask[1:, :3], prior=norm.encode(prior_a[1:, :3, :3]))["distance"][0]
    assert torch.allclose(batched, alone, atol=1e-5), "a chain's distances depend on the padding of its batch"
