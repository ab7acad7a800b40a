"""The distogram and regression heads beyond the conformance suite."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from distfold.plugins.distance_heads.distogram import DistogramHead  # noqa: E402
from distfold.plugins.distance_heads.regression import RegressionHead  # noqa: E402
from distfold.plugins.normalisers.log1p import IdentityNormaliser, Log1pNormaliser  # noqa: E402


def _inputs(n=6, h=16):
    g = torch.Generator().manual_seed(1)
    idx = torch.arange(n)
    prior_a = (3.8 * (idx[:, None] - idx[None, :]).abs().float() ** 0.6)[None]
    return torch.randn(1, n, h, generator=g), torch.ones(1, n, dtype=torch.bool), prior_a


def test_distogram_bins_alphafold_layout():
    head = DistogramHead(hidden_size=16)
    assert head.n_bins == 64 and head.centers.shape == (64,)
    d = torch.tensor([0.5, 2.0, 2.3, 2.32, 12.0, 21.99, 22.0, 80.0])
    bins = head.target_bins(d).tolist()
    width = 20 / 64
    assert bins[:4] == [0, 0, 0, 1]
    assert bins[4] == int((12.0 - 2.0) / width)
    assert bins[5:] == [63, 64, 64]  # 22 A and farther: the beyond bin


def test_distogram_expected_distance_and_variance():
    head = DistogramHead(hidden_size=16, use_prior=False).eval()
    head.set_normaliser(IdentityNormaliser())
    feats, mask, _ = _inputs()
    logits = torch.full((1, 6, 6, 65), -30.0)
    logits[..., 10] = 30.0  # all mass on bin 10
    head.stack.forward = lambda f, m, p=None: logits
    out = head(feats, mask)
    center = 2.0 + (10 + 0.5) * 20 / 64
    off = ~torch.eye(6, dtype=torch.bool)
    assert torch.allclose(out["distance_angstrom"][0][off], torch.tensor(center), atol=1e-4)
    assert out["variance_angstrom"].abs().max() < 1e-3
    bins = torch.full((1, 6, 6), 10)
    target = head.centers[bins]
    loss = head.loss(out, target, mask[:, :, None] & mask[:, None, :])
    assert float(loss) < 1e-6  # confident and right


def test_distogram_reports_in_normaliser_space():
    head = DistogramHead(hidden_size=16).eval()
    norm = Log1pNormaliser(scale=5.0)
    head.set_normaliser(norm)
    feats, mask, prior_a = _inputs()
    with torch.no_grad():
        out = head(feats, mask, prior=norm.encode(prior_a))
    assert torch.allclose(norm.decode(out["distance"]), out["distance_angstrom"], atol=1e-4)


def test_regression_starts_at_the_prior():
    head = RegressionHead(hidden_size=16).eval()
    norm = Log1pNormaliser(scale=5.0)
    feats, mask, prior_a = _inputs()
    with torch.no_grad():
        out = head(feats, mask, prior=norm.encode(prior_a))
    d = head.distance_angstrom(out, norm)
    assert torch.allclose(d, prior_a, atol=1e-3)  # untrained: exactly the separation prior


def test_regression_needs_prior_when_built_with_it():
    head = RegressionHead(hidden_size=16)
    feats, mask, _ = _inputs()
    with pytest.raises(ValueError, match="prior"):
        head(feats, mask)
    assert RegressionHead(hidden_size=16, use_prior=False)(feats, mask)["distance"].shape == (1, 6, 6)


@pytest.mark.parametrize("decouple", [False, True])
@pytest.mark.parametrize("kind", ["laplace", "gaussian"])
def test_regression_nll_value(kind, decouple):
    head = RegressionHead(hidden_size=16, use_prior=False, loss=kind, decouple=decouple)
    mu = torch.full((1, 3, 3), 0.5)
    scale = torch.full((1, 3, 3), 0.2)
    target = torch.full((1, 3, 3), 0.7)
    pm = ~torch.eye(3, dtype=torch.bool)[None]
    got = float(head.loss({"distance": mu, "scale": scale}, target, pm))
    want = (0.2 / 0.2 + math.log(0.2)) if kind == "laplace" else (0.5 * 1.0 + math.log(0.2))
    if decouple:
        want += 0.2 if kind == "laplace" else 0.5 * 0.2**2
    assert got == pytest.approx(want, rel=1e-5)


def test_decoupled_point_gradient_ignores_the_scale():
    head = RegressionHead(hidden_size=16, use_prior=False, decouple=True)
    grads = []
    for b in (0.01, 1.0):
        mu = torch.full((1, 2, 2), 0.5, requires_grad=True)
        head.loss({"distance": mu, "scale": torch.full((1, 2, 2), b)}, torch.full((1, 2, 2), 0.7),
                  ~torch.eye(2, dtype=torch.bool)[None]).backward()
        grads.append(mu.grad[0, 0, 1].item())
    assert grads[0] == pytest.approx(grads[1]) != 0  # a confident pair does not dominate


def test_local_weight_emphasises_short_range_pairs():
    head = RegressionHead(hidden_size=16, use_prior=False, local_range=1, local_weight=3.0,
                          decouple=False)
    mu = torch.zeros(1, 3, 3)
    scale = torch.ones(1, 3, 3)
    target = torch.tensor([[[0, 1.0, 5.0], [1.0, 0, 1.0], [5.0, 1.0, 0]]])
    pm = ~torch.eye(3, dtype=torch.bool)[None]
    got = float(head.loss({"distance": mu, "scale": scale}, target, pm))
    assert got == pytest.approx((4 * 4 * 1.0 + 2 * 5.0) / (4 * 4 + 2))


def test_variance_angstrom_delta_method():
    head = RegressionHead(hidden_size=16, use_prior=False)
    norm = Log1pNormaliser(scale=4.0)
    y = torch.full((1, 2, 2), 0.6)
    var = torch.full((1, 2, 2), 1e-4)
    va = head.variance_angstrom({"distance": y, "variance": var}, norm)
    slope = 4.0 * math.exp(0.6 * 4.0)  # d/dy expm1(4 y)
    assert float(va[0, 0, 1]) == pytest.approx(1e-4 * slope**2, rel=1e-3)
    assert float(va[0, 0, 0]) == 0.0


def _perturb_out(head, seed=3):
    """Give the zero-initialised read-out weights so that both outputs depend on the stack."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.stack.out.weight.copy_(0.1 * torch.randn(head.stack.out.weight.shape, generator=g))


@pytest.mark.parametrize("decouple", [False, True])
def test_scale_gradient_reaches_the_stack_only_when_not_decoupled(decouple):
    head = RegressionHead(hidden_size=16, use_prior=False, decouple=decouple)
    _perturb_out(head)
    feats, mask, _ = _inputs()
    out = head(feats, mask)
    out["scale"].sum().backward()  # only the uncertainty output
    stack_grad = sum(float(p.grad.abs().sum()) for n, p in head.stack.named_parameters()
                     if p.grad is not None and not n.startswith("out."))
    assert head.stack.out.weight.grad[1].abs().sum() > 0  # the scale's own read-out still learns
    assert (stack_grad > 0) == (not decouple)


def test_decoupled_distance_output_is_unchanged_by_the_gradient_stop():
    feats, mask, _ = _inputs()
    outs = []
    for decouple in (False, True):
        head = RegressionHead(hidden_size=16, use_prior=False, decouple=decouple).eval()
        _perturb_out(head)
        with torch.no_grad():
            outs.append(head(feats, mask))
    for key in ("distance", "scale"):
        assert torch.allclose(outs[0][key], outs[1][key])


@pytest.mark.parametrize("head_cls", [RegressionHead, DistogramHead])
def test_sequence_convolution_ignores_padding(head_cls):
    head = head_cls(hidden_size=16, use_prior=False, seq_kernel=5, seq_dim=8).eval()
    _perturb_out(head)
    with torch.no_grad():
        head.stack.seq_out.weight.normal_(0, 0.1)  # zero-initialised: make it matter
    feats, mask, _ = _inputs(n=6)
    padded = torch.cat([feats, 100 * torch.ones(1, 3, 16)], 1)
    pmask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], 1)
    with torch.no_grad():
        a = head(feats, mask)["distance"]
        b = head(padded, pmask)["distance"][:, :6, :6]
        c = head_cls(hidden_size=16, use_prior=False).eval()(feats, mask)["distance"]
    assert torch.allclose(a, b, atol=1e-5)
    assert head.stack.seq_conv.kernel_size == (5,)
    assert c.shape == a.shape


def test_sequence_convolution_width_must_be_odd():
    with pytest.raises(ValueError, match="odd"):
        RegressionHead(hidden_size=16, seq_kernel=4)


def _nchw_reference(stack, features, mask, prior):
    """The pair stack computed the plain way: NCHW map, per-pair LayerNorm on a permuted copy,
    NCHW convolutions and the read-out as the 1x1 convolution module it is."""
    from torch.nn import functional as F

    x = stack.norm(features)
    z = (stack.left(x)[:, :, None] + stack.right(x)[:, None] + stack.prod_a(x)[:, :, None] * stack.prod_b(x)[:, None])
    n = features.shape[1]
    idx = torch.arange(n)
    z = z + stack.sep((idx[None] - idx[:, None]).clamp(-stack.max_separation, stack.max_separation)
                      + stack.max_separation)
    z = z + stack.prior_proj(prior[..., None])
    pm = (mask[:, :, None] & mask[:, None, :]).float()[:, None]
    z = z.permute(0, 3, 1, 2).contiguous() * pm

    def norm(t, ln):
        return ln(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()

    for (conv1, conv2), ln in zip(stack.blocks, stack.block_norms):
        h = conv1(F.gelu(norm(z, ln)) * pm)
        z = (z + conv2(F.gelu(h) * pm)) * pm
    y = stack.out(F.gelu(norm(z, stack.out_norm)))
    return (0.5 * (y + y.transpose(-1, -2))).permute(0, 2, 3, 1)


def test_channels_last_pair_stack_matches_the_plain_nchw_computation():
    """Same parameters, same outputs and gradients as the textbook layout (checkpoints keep
    predicting what they did), with and without padding in the batch."""
    head = RegressionHead(hidden_size=16, pair_dim=8, n_blocks=3, decouple=False).train()  # no gradient stop
    _perturb_out(head)
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(2, 11, 16, generator=g)
    prior = torch.rand(2, 11, 11, generator=g)
    for mask in (torch.ones(2, 11, dtype=torch.bool), torch.arange(11)[None] < torch.tensor([[11], [7]])):
        got = head.stack(feats, mask, prior)
        want = _nchw_reference(head.stack, feats, mask, prior)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
        grads = []
        for y in (got, want):
            head.zero_grad()
            (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward(retain_graph=True)
            grads.append([p.grad.clone() for p in head.stack.parameters()])
        for a, b in zip(*grads):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("d", [1, 2, 4, 8])
def test_row_sum_weight_gradient_matches_the_library_convolution(d):
    """The pair stack's 3x3 convolution with its own weight gradient: same output, input, weight
    and bias gradients as ``nn.Conv2d`` (float64), borders included (side 5 < dilation 8)."""
    from distfold.plugins.distance_heads.pair import _SameConv3x3

    g = torch.Generator().manual_seed(d)
    conv = torch.nn.Conv2d(6, 5, 3, padding=d, dilation=d).double()
    for n in (5, 20):
        z = torch.randn(2, n, n, 6, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(2, n, n, 5, generator=g, dtype=torch.float64)
        got = []
        for f in (lambda t: _SameConv3x3.apply(t, conv.weight, conv.bias, d),
                  lambda t: conv(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)):
            conv.zero_grad()
            z.grad = None
            y = f(z)
            (y * w).sum().backward()
            got.append([y.detach(), z.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()])
        for a, b in zip(*got):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_pair_stack_row_sum_path_matches_the_library_path(monkeypatch):
    """From ROW_SUM_MIN_SIDE residues on, training convolutions use the row-sum weight gradient
    (checked by counting its calls; below it, none); outputs and gradients equal the library
    convolution's to float32 rounding."""
    from distfold.plugins.distance_heads import pair

    calls = []
    apply = pair._SameConv3x3.apply
    monkeypatch.setattr(pair._SameConv3x3, "apply", lambda *a: calls.append(a[-1]) or apply(*a))
    head = RegressionHead(hidden_size=8, pair_dim=4, n_blocks=2, decouple=False).train()
    _perturb_out(head)
    n = 40
    g = torch.Generator().manual_seed(7)
    feats, mask, prior = torch.randn(1, n, 8, generator=g), torch.ones(1, n, dtype=torch.bool), torch.rand(1, n, n)
    grads = []
    for side in (n, n + 1):
        monkeypatch.setattr(pair, "ROW_SUM_MIN_SIDE", side)
        head.zero_grad()
        y = head.stack(feats, mask, prior)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        grads.append([y.detach()] + [p.grad.clone() for p in head.stack.parameters()])
        with torch.no_grad():
            head.stack(feats, mask, prior)  # no gradient: the library convolution
    assert calls == [1, 1, 2, 2]  # two blocks (dilations 1 and 2) at side n, none at n + 1
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_pair_stack_trains_under_cpu_autocast(monkeypatch):
    """bf16 autocast (float32 inputs, bf16 convolutions) keeps the library convolution, whose
    backward handles the mixed dtypes."""
    from distfold.plugins.distance_heads import pair

    monkeypatch.setattr(pair, "ROW_SUM_MIN_SIDE", 8)
    calls = []
    apply = pair._SameConv3x3.apply
    monkeypatch.setattr(pair._SameConv3x3, "apply", lambda *a: calls.append(a[-1]) or apply(*a))
    head = RegressionHead(hidden_size=8, pair_dim=4, n_blocks=2).train()
    feats, mask, prior = torch.randn(1, 12, 8), torch.ones(1, 12, dtype=torch.bool), torch.rand(1, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats, mask, prior)
        loss = out["distance"].float().sum() + out["scale"].float().sum()
    loss.backward()
    assert calls == [] and head.stack.blocks[0][0].weight.grad is not None
