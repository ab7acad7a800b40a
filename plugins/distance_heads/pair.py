"""The pair representation shared by the built-in distance heads.

Entry (i, j) is built from residue i's and residue j's features and their
sequence separation -- the thing the method's predecessor lacked (SCIENCE.md
section 1):

    z_ij = A f_i + B f_j + (P f_i) * (Q f_j) + E[clip(j - i)] + w * prior_ij

followed by a cheap stack of residual, dilated 3x3 convolutions over the
L x L map (each block sees a growing window of both i's and j's neighbours)
and a 1x1 read-out. The read-out is symmetrised, (y + y^T) / 2, so the output
is symmetric by construction. Padding is zeroed after every block, which makes
the result independent of how much padding a batch carries.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PairStack(nn.Module):
    """features (B, L, H), mask (B, L), prior (B, L, L) or None -> (B, L, L, n_out), symmetric.

    hidden_size: backbone feature width H.
    pair_dim: channels of the pair map.
    n_blocks: residual conv blocks; block k uses dilation dilations[k % len(dilations)].
    max_separation: signed sequence separation j - i is clipped to +-max_separation and embedded.
    use_prior: add the separation prior (already in the normaliser's space) as an input channel.
    seq_kernel: when > 0, a residual 1D convolution of this width (odd) over the residue
        features runs before the pair map is formed: each residue sees its sequence
        neighbours directly, the local signal (helix vs strand) a from-scratch backbone is slow
        to find on its own; ``seq_dim`` channels wide. 0 = off.
    n_detached: the last ``n_detached`` output channels are read from the stack's final map
        with its gradient stopped, so they train their own read-out but never shape the stack
        (the regression head's uncertainty: see ``RegressionHead``).
    """

    def __init__(self, hidden_size: int, n_out: int, pair_dim: int = 32, n_blocks: int = 4,
                 dilations: tuple[int, ...] = (1, 2, 4, 8), max_separation: int = 32,
                 use_prior: bool = True, dropout: float = 0.0, n_detached: int = 0, seq_kernel: int = 0,
                 seq_dim: int = 64):
        super().__init__()
        if int(seq_kernel) < 0 or (int(seq_kernel) > 0 and int(seq_kernel) % 2 == 0):
            raise ValueError(f"seq_kernel must be 0 or an odd width, not {seq_kernel}")
        if not 0 <= int(n_detached) <= int(n_out):
            raise ValueError(f"n_detached must be in 0..{n_out}, not {n_detached}")
        self.n_detached = int(n_detached)
        self.max_separation = int(max_separation)
        self.use_prior = bool(use_prior)
        c = int(pair_dim)
        self.norm = nn.LayerNorm(hidden_size)
        self.seq_conv = self.seq_out = None
        if int(seq_kernel) > 0:
            self.seq_conv = nn.Conv1d(hidden_size, int(seq_dim), int(seq_kernel), padding=int(seq_kernel) // 2)
            self.seq_out = nn.Linear(int(seq_dim), hidden_size)
            nn.init.zeros_(self.seq_out.weight)
            nn.init.zeros_(self.seq_out.bias)
        self.left = nn.Linear(hidden_size, c)
        self.right = nn.Linear(hidden_size, c, bias=False)
        self.prod_a = nn.Linear(hidden_size, c, bias=False)
        self.prod_b = nn.Linear(hidden_size, c, bias=False)
        self.sep = nn.Embedding(2 * self.max_separation + 1, c)
        self.prior_proj = nn.Linear(1, c, bias=False) if self.use_prior else None
        self.blocks = nn.ModuleList()
        for k in range(int(n_blocks)):
            d = int(dilations[k % len(dilations)])
            conv1 = nn.Conv2d(c, c, 3, padding=d, dilation=d)
            conv2 = nn.Conv2d(c, c, 3, padding=d, dilation=d)
            nn.init.zeros_(conv2.bias)
            conv2.weight.data.mul_(0.1)  # start each block near the identity
            self.blocks.append(nn.ModuleList([conv1, conv2]))
        # pre-norm residual blocks: without a norm the stack drifts and training collapses back to the prior
        self.block_norms = nn.ModuleList(nn.LayerNorm(c) for _ in range(int(n_blocks)))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.out_norm = nn.LayerNorm(c)  # per pair, over channels: independent of padding
        self.out = nn.Conv2d(c, n_out, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = features.shape
        x = self.norm(features.float())
        if self.seq_conv is not None:
            xm = x * mask[..., None].to(x.dtype)  # padding must not leak into real residues
            x = x + self.seq_out(F.gelu(self.seq_conv(xm.transpose(1, 2)).transpose(1, 2)))
        if self.dropout is not None:
            x = self.dropout(x)  # residue-feature dropout: against memorising training chains
        # (B, L, L, C) in as few passes over the map as the terms allow: one for the sum and the
        # product, in place for the separation embedding and the prior (w * prior_ij is the
        # 1 -> C linear map prior_proj, written as the product it is)
        z = torch.addcmul(self.left(x)[:, :, None, :] + self.right(x)[:, None, :, :],
                          self.prod_a(x)[:, :, None, :], self.prod_b(x)[:, None, :, :])
        idx = torch.arange(n, device=features.device)
        rel = (idx[None, :] - idx[:, None]).clamp(-self.max_separation, self.max_separation) + self.max_separation
        z += self.sep(rel)
        if self.use_prior:
            if prior is None:
                raise ValueError("this head was built with use_prior=True; pass prior= (B, L, L) separation prior")
            z.addcmul_(prior.float()[..., None], self.prior_proj.weight[:, 0])
        # The pair map stays channels-last, (B, L, L, C), from here to the read-out: the per-pair
        # LayerNorm is the library kernel over the last dimension, and each convolution sees the
        # same memory as an NCHW tensor in torch.channels_last format (a view, no copy). Without
        # padding the pair mask is all ones and its multiplications are skipped (exactly the same).
        pm = None if bool(mask.all()) else (mask[:, :, None] & mask[:, None, :]).to(z.dtype)[..., None]
        z = _masked(z, pm)  # (B, L, L, C)
        for (conv1, conv2), norm in zip(self.blocks, self.block_norms):
            # mask the conv inputs too: a normalised zero pair is norm.bias, not 0, and padding must
            # look like the convolution's own zero border (a batch's padding must not change a chain)
            h = _conv_last(conv1, _masked(F.gelu(_layer_norm(z, norm)), pm))
            if self.dropout is not None:
                h = self.dropout(h)
            z = _masked(z + _conv_last(conv2, _masked(F.gelu(h), pm)), pm)
        g = F.gelu(_layer_norm(z, self.out_norm))
        w = self.out.weight[:, :, 0, 0]  # the 1x1 read-out is a linear map of each pair's channels
        k = self.out.out_channels - self.n_detached
        if self.n_detached:
            y = torch.cat([F.linear(g, w[:k], self.out.bias[:k]),
                           F.linear(g.detach(), w[k:], self.out.bias[k:])], -1)
        else:
            y = F.linear(g, w, self.out.bias)  # (B, L, L, n_out)
        return 0.5 * (y + y.transpose(1, 2))


def _layer_norm(z: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the channels of every pair of a (B, L, L, C) map (padding-independent)."""
    return F.layer_norm(z, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _masked(z: torch.Tensor, pm: torch.Tensor | None) -> torch.Tensor:
    """``z`` with padded pairs zeroed (``pm`` (B, L, L, 1) of 0/1, or None: no padding)."""
    return z if pm is None else z * pm


#: Smallest pair-map side at which the row sums of ``_conv3x3_weight_grad`` beat oneDNN's weight
#: gradient (1 thread, 32 channels, batch 8: at side 64 oneDNN takes 17-31 ms against 29-37 ms,
#: at side 128 133-186 ms against 97-120 ms; batch 2 at side 256: 206-406 ms against 94-121 ms).
ROW_SUM_MIN_SIDE = 128


def _conv_last(conv: nn.Conv2d, z: torch.Tensor) -> torch.Tensor:
    """``conv`` over a (B, L, L, C) map, as an NCHW channels-last view; returns (B, L, L, C').

    When a weight gradient is needed on the CPU and the map is at least ``ROW_SUM_MIN_SIDE`` on
    a side, a "same" 3x3 convolution (padding = dilation) runs through :class:`_SameConv3x3`: the
    same forward kernel, with the weight gradient summed by :func:`_conv3x3_weight_grad` instead
    of oneDNN's. Predictions (no gradient) and autocast (mixed dtypes) never take that path."""
    x = _nchw_view(z)
    if (conv.weight.requires_grad and torch.is_grad_enabled() and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and min(z.shape[1], z.shape[2]) >= ROW_SUM_MIN_SIDE and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.groups == 1 and conv.padding == conv.dilation
            and conv.dilation[0] == conv.dilation[1] and conv.padding_mode == "zeros"):
        return _SameConv3x3.apply(z, conv.weight, conv.bias, int(conv.dilation[0]))
    return conv(x).permute(0, 2, 3, 1)


def _nchw_view(z: torch.Tensor) -> torch.Tensor:
    """A (B, L, L, C) map as an NCHW tensor in channels-last memory (a view when ``z`` is contiguous)."""
    x = z.permute(0, 3, 1, 2)
    if not x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class _SameConv3x3(torch.autograd.Function):
    """A 3x3 convolution with padding = dilation = ``d`` of a (B, L, L, C) map -> (B, L, L, C').

    Forward and input gradient are the library's (oneDNN) kernels; the weight gradient is
    :func:`_conv3x3_weight_grad`. On the CPU, oneDNN's weight gradient for this shape (32
    channels, a long reduction over B * L * L pixels, dilated) is the slowest part of a
    training step: 5-14x its own forward convolution (1 thread, B 2, L 256, C 32: 212-553 ms
    for dilation 1-8 against 34-41 ms forward), where the row sums below take about 110 ms;
    they are also closer to a float64 reference (3.5e-4 against 1e-3 to 2e-2 on sums of about
    1,400). ``benchmarks/bench_train_step.py --pair-head --vs REV`` times whole steps."""

    @staticmethod
    def forward(ctx, z, weight, bias, d):
        x = _nchw_view(z)
        ctx.save_for_backward(x, weight)
        ctx.d = d
        return F.conv2d(x, weight, bias, padding=d, dilation=d).permute(0, 2, 3, 1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        d = ctx.d
        g = grad.contiguous()  # (B, L, L, C')
        gz = gw = gb = None
        if ctx.needs_input_grad[0]:
            gz = torch.ops.aten.convolution_backward(
                g.permute(0, 3, 1, 2), x, weight, None, [1, 1], [d, d], [d, d], False, [0, 0], 1,
                [True, False, False])[0].permute(0, 2, 3, 1)
        if ctx.needs_input_grad[1]:
            gw = _conv3x3_weight_grad(x.permute(0, 2, 3, 1), g, d)
        if ctx.needs_input_grad[2]:
            gb = g.sum((0, 1, 2))
        return gz, gw, gb, None


def _conv3x3_weight_grad(x: torch.Tensor, g: torch.Tensor, d: int) -> torch.Tensor:
    """Weight gradient (C', C, 3, 3) of a 3x3 convolution with padding = dilation = ``d`` from
    its input ``x`` (B, L, L, C) and output gradient ``g`` (B, L, L, C'), both channels-last:
    tap (ky, kx) is the sum over pixels of g[p, q]^T x[p + (ky - 1) d, q + (kx - 1) d], done one
    image row at a time as a batch of (C', L) @ (L, C) products on views of the zero-padded input."""
    b, n, m, c = x.shape
    xp = F.pad(x, (0, 0, d, d, d, d))  # (B, L + 2d, L + 2d, C)
    gt = g.transpose(2, 3)  # (B, L, C', L)
    out = x.new_empty(g.shape[-1], c, 3, 3)
    for ky in range(3):
        for kx in range(3):
            acc = torch.bmm(gt[0], xp[0, ky * d:ky * d + n, kx * d:kx * d + m]).sum(0)
            for i in range(1, b):
                acc += torch.bmm(gt[i], xp[i, ky * d:ky * d + n, kx * d:kx * d + m]).sum(0)
            out[:, :, ky, kx] = acc
    return out


def separation(n: int, device=None) -> torch.Tensor:
    """(L, L) long |i - j|."""
    idx = torch.arange(n, device=device)
    return (idx[None, :] - idx[:, None]).abs()


def off_diagonal(n: int, device=None) -> torch.Tensor:
    """(L, L) float, 0 on the diagonal and 1 elsewhere."""
    return 1.0 - torch.eye(n, device=device)


def masked_pair_mean(values: torch.Tensor, pair_mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over each sample's valid pairs, then over samples with any valid pair (scalar).

    values, pair_mask (bool), weights: (B, L, L). The diagonal must already be out of pair_mask.
    """
    w = pair_mask.to(values.dtype)
    if weights is not None:
        w = w * weights
    per = (torch.where(pair_mask, values, torch.zeros_like(values)) * w).sum((1, 2))
    tot = w.sum((1, 2))
    has = tot > 0
    if not bool(has.any()):
        return values.sum() * 0.0
    return (per[has] / tot[has]).mean()


def local_weights(n: int, local_range: int, local_weight: float, device=None) -> torch.Tensor | None:
    """(L, L) loss weights: 1 + local_weight for 0 < |i - j| <= local_range, else 1 (None if unused)."""
    if local_weight <= 0 or local_range <= 0:
        return None
    sep = separation(n, device)
    return 1.0 + local_weight * ((sep > 0) & (sep <= local_range)).float()


def decode_slope(normaliser, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """d decode / d y at y (central difference), for the delta method."""
    return (normaliser.decode(y + eps) - normaliser.decode(y - eps)) / (2 * eps)


class _Identity:
    """Stand-in normaliser (Å in, Å out) until a model binds the real one."""

    def encode(self, d):
        return d * 1.0

    def decode(self, y):
        return y * 1.0


class PairHeadBase(nn.Module):
    """Shared plumbing: the normaliser binding and the Å conversions of the contract."""

    def __init__(self) -> None:
        super().__init__()
        self._normaliser = _Identity()

    def set_normaliser(self, normaliser) -> None:
        """Bind the model's normaliser (heads that work in Å internally need it)."""
        self._normaliser = normaliser

    @staticmethod
    def _finish(d: torch.Tensor) -> torch.Tensor:
        """Exactly symmetric with an exact zero diagonal."""
        n = d.shape[-1]
        d = 0.5 * (d + d.transpose(-1, -2))
        return d * off_diagonal(n, d.device)

    def distance_angstrom(self, output: dict, normaliser) -> torch.Tensor:
        """(B, L, L) point estimate in Å."""
        return self._finish(normaliser.decode(output["distance"]))

    def variance_angstrom(self, output: dict, normaliser) -> torch.Tensor | None:
        """(B, L, L) variance in Å^2 by the delta method, or None."""
        var = output.get("variance")
        if var is None:
            return None
        slope = decode_slope(normaliser, output["distance"])
        return self._finish(var * slope**2)
