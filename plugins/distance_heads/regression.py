"""The ``regression`` head: one distance per pair in the normaliser's space, with a
learned per-pair uncertainty (Laplace or Gaussian negative log-likelihood).

With a Laplace loss the point estimate is a median, which on this problem beats
the mean in both MAE and lDDT (SCIENCE.md section 5). With ``use_prior`` the
separation prior (in the normaliser's space) is an input channel and the head
predicts a correction to it, so an untrained head starts at the prior.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from distfold.components import Configurable
from distfold.plugins.distance_heads.pair import (PairHeadBase, PairStack, local_weights, masked_pair_mean,
                                                  off_diagonal)

LOSSES = ("laplace", "gaussian")


class RegressionHead(Configurable, PairHeadBase):
    """Pair features -> normalised distance (B, L, L) and its variance (B, L, L).

    hidden_size: backbone feature width.
    pair_dim, n_blocks, dilations, max_separation: the pair stack (see ``PairStack``).
    use_prior: take the separation prior as input and predict a correction to it.
    loss: ``laplace`` (|t - mu| / b + log b; variance 2 b^2) or ``gaussian``
        ((t - mu)^2 / (2 s^2) + log s; variance s^2), in the normaliser's space.
    min_scale: floor of b (or s), normalised units.
    decouple: train the point estimate by the plain absolute (laplace) or squared
        (gaussian) error and the scale by the NLL of the detached residual. The full NLL
        weights each pair's error by 1 / b, so the easiest pairs (i, i+1, with tiny b)
        dominate the gradient and, after clipping, starve the rest; decoupling keeps
        the same optimum (median or mean) without that. Decoupled, the scale is also read
        from the pair stack with its gradient stopped: the scale's NLL gradient (of order
        error / scale**2, thousands for the tight i, i+1 pairs) otherwise swamps the
        point error's in the shared stack and, after gradient clipping, stalls it (measured:
        8 training chains fitted for 200 steps: MAE 5.8 A with the shared gradient, 3.0 A
        with it stopped, 1.7 A with the point error alone).
        False: the plain NLL, gradient shared.
    local_range, local_weight: pairs with 0 < |i - j| <= local_range weigh
        1 + local_weight in the loss (an auxiliary short-range emphasis; 0 = off).
    dropout: dropout on the residue features entering the pair stack and inside its blocks.
    seq_kernel, seq_dim: a residual 1D convolution over the residue features (see ``PairStack``).
    ss_weight: when > 0, a per-residue secondary-structure read-out (3 states, columns in the
        order H, E, C: ``distfold.structure.secondary.SS_STATES``) from the backbone features
        through its own residual 1D convolution (width ``ss_kernel``, ``seq_dim`` channels),
        trained jointly by cross-entropy (``ss_loss``) weighted ``ss_weight`` against the
        distance loss. The output then carries ``"ss_logits"`` (B, L, 3). 0 = no read-out
        (older models, and the distances alone).
    ss_channels: the read-out's width (0, the default: ``seq_dim``).
    ss_dilations: one more residual convolution of width ``ss_kernel`` per entry, with that
        dilation (``SecondaryStructureReadout``); empty (the default): the original read-out.
    seed: initialisation seed.
    """

    #: The NLL the head is trained with; an instance built with ``loss="gaussian"`` says "gaussian".
    error_distribution = "laplace"
    _config_attrs = {"loss": "loss_name"}  # the parameter ``loss``; ``loss()`` is the method

    def __init__(self, hidden_size: int = 64, pair_dim: int = 32, n_blocks: int = 4,
                 dilations: list[int] | None = None, max_separation: int = 32, use_prior: bool = True,
                 loss: str = "laplace", min_scale: float = 1e-3, decouple: bool = True, local_range: int = 0,
                 local_weight: float = 0.0, dropout: float = 0.0, seq_kernel: int = 0, seq_dim: int = 64,
                 ss_weight: float = 0.0, ss_kernel: int = 15, ss_channels: int = 0,
                 ss_dilations: list[int] | None = None, seed: int = 0):
        PairHeadBase.__init__(self)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        self.hidden_size = int(hidden_size)
        self.pair_dim = int(pair_dim)
        self.n_blocks = int(n_blocks)
        self.dilations = [int(d) for d in (dilations or [1, 2, 4, 8])]
        self.max_separation = int(max_separation)
        self.use_prior = bool(use_prior)
        self.loss_name = loss
        self.error_distribution = loss  # LOSSES are the distributions of the variance
        self.min_scale = float(min_scale)
        self.decouple = bool(decouple)
        self.local_range = int(local_range)
        self.local_weight = float(local_weight)
        self.dropout = float(dropout)
        self.seq_kernel = int(seq_kernel)
        self.seq_dim = int(seq_dim)
        self.ss_weight = float(ss_weight)
        self.ss_kernel = int(ss_kernel)
        self.ss_channels, self.ss_dilations = _ss_shape(ss_channels, ss_dilations)
        if self.ss_weight < 0:
            raise ValueError(f"ss_weight must be >= 0, not {ss_weight}")
        if self.ss_weight > 0 and (self.ss_kernel < 1 or self.ss_kernel % 2 == 0):
            raise ValueError(f"ss_kernel must be an odd width >= 1, not {ss_kernel}")
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.stack = PairStack(self.hidden_size, 2, self.pair_dim, self.n_blocks, tuple(self.dilations),
                                   self.max_separation, self.use_prior, self.dropout,
                                   n_detached=1 if self.decouple else 0, seq_kernel=self.seq_kernel,
                                   seq_dim=self.seq_dim)
            self.ss = self._new_ss_readout() if self.ss_weight > 0 else None

    def forward(self, features: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor | None = None) -> dict:
        """features (B, L, H), mask (B, L) bool, prior (B, L, L) normalised or None ->
        {"distance": (B, L, L), "variance": (B, L, L), "scale": (B, L, L)}, normalised space."""
        y = self.stack(features, mask, prior if self.use_prior else None)
        raw = y[..., 0]
        if self.use_prior:
            raw = raw + prior.float()
        mu = F.softplus(raw, beta=50.0)  # >= 0, equal to raw for raw well above 0
        scale = F.softplus(y[..., 1] - 2.0) + self.min_scale
        var = 2.0 * scale**2 if self.loss_name == "laplace" else scale**2
        off = off_diagonal(mu.shape[-1], mu.device)
        out = {"distance": mu * off, "variance": var * off, "scale": scale}
        if self.ss is not None:
            out["ss_logits"] = self.ss(features, mask)
        return out

    def _new_ss_readout(self) -> "SecondaryStructureReadout":
        return SecondaryStructureReadout(self.hidden_size, self.ss_channels or self.seq_dim, self.ss_kernel,
                                         self.dropout, tuple(self.ss_dilations))

    def add_ss_readout(self, ss_weight: float = 0.5, ss_kernel: int = 15, ss_channels: int = 0,
                       ss_dilations: list[int] | None = None, replace: bool = False) -> None:
        """Give a head trained without one a fresh secondary-structure read-out (seeded by
        ``seed``); the distance path is untouched. A head that has one keeps it, unless
        ``replace`` (a new read-out of the given shape in its place)."""
        if self.ss is not None and not replace:
            return
        if ss_weight <= 0 or ss_kernel < 1 or ss_kernel % 2 == 0:
            raise ValueError(f"need ss_weight > 0 and an odd ss_kernel, not {ss_weight}, {ss_kernel}")
        self.ss_channels, self.ss_dilations = _ss_shape(ss_channels, ss_dilations)
        self.ss_weight, self.ss_kernel = float(ss_weight), int(ss_kernel)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.ss = self._new_ss_readout()

    def ss_loss(self, output: dict, labels: torch.Tensor) -> torch.Tensor:
        """``ss_weight`` x the mean cross-entropy of ``output["ss_logits"]`` over the residues
        whose label (B, L) long is a state index (0, 1, 2; -1 = no label); scalar, 0 when
        the head has no read-out or no residue is labelled."""
        logits = output.get("ss_logits")
        if logits is None or not bool((labels >= 0).any()):
            return (logits if logits is not None else output["distance"]).sum() * 0.0
        n = logits.shape[1]
        return self.ss_weight * F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                labels[:, :n].reshape(-1).to(logits.device), ignore_index=-1)

    def loss(self, output: dict, target: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """Mean over pairs in ``pair_mask`` (per chain, then over chains) of the NLL (plus,
        when decoupled, the point error), scalar."""
        mu, scale = output["distance"], output["scale"]
        t = torch.nan_to_num(target.float())
        err = (t - mu).abs()
        if self.decouple:
            point = err if self.loss_name == "laplace" else 0.5 * err**2
            err = err.detach()
        if self.loss_name == "laplace":
            nll = err / scale + torch.log(scale)
        else:
            nll = 0.5 * (err / scale) ** 2 + torch.log(scale)
        if self.decouple:
            nll = nll + point
        n = mu.shape[-1]
        pm = pair_mask & ~torch.eye(n, dtype=torch.bool, device=mu.device)
        return masked_pair_mean(nll, pm, local_weights(n, self.local_range, self.local_weight, mu.device))


def _ss_shape(ss_channels: int, ss_dilations: list[int] | None) -> tuple[int, list[int]]:
    """The read-out's (width, dilations) as ints, checked."""
    channels, dilations = int(ss_channels), [int(d) for d in (ss_dilations or [])]
    if channels < 0 or any(d < 1 for d in dilations):
        raise ValueError(f"ss_channels must be >= 0 and ss_dilations >= 1, not {ss_channels}, {ss_dilations}")
    return channels, dilations


class SecondaryStructureReadout(nn.Module):
    """features (B, L, H), mask (B, L) -> (B, L, 3) logits of H, E, C: a LayerNorm, a residual
    1D convolution over the sequence (each residue sees ``kernel // 2`` neighbours on either
    side, the span of a helix turn or a strand pairing's register) and a linear read-out.

    ``dilations``: one more residual block per entry, a 1D convolution of the same width
    with that dilation (``channels`` -> ``channels``, GELU), so that a residue sees
    ``kernel // 2 * (1 + sum(dilations))`` neighbours on either side (strand partners
    further apart). Empty (the default) is the original read-out, parameter for parameter."""

    def __init__(self, hidden_size: int, channels: int, kernel: int, dropout: float = 0.0,
                 dilations: tuple[int, ...] = ()):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.conv = nn.Conv1d(hidden_size, channels, kernel, padding=kernel // 2)
        self.mix = nn.Linear(channels, channels)
        self.dilated = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=kernel // 2 * int(d),
                                               dilation=int(d)) for d in dilations)
        self.out = nn.Linear(channels, 3)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(torch.float32)
        x = self.norm(features.float()) * m  # padding must not leak in
        h = F.gelu(self.conv(x.transpose(1, 2)).transpose(1, 2))
        if self.dropout is not None:
            h = self.dropout(h)
        h = h + F.gelu(self.mix(h))
        for conv in self.dilated:
            step = F.gelu(conv((h * m).transpose(1, 2)).transpose(1, 2))
            if self.dropout is not None:
                step = self.dropout(step)
            h = h + step
        return self.out(h)
