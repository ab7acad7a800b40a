"""The ``distogram`` head: a distribution over distance bins for every pair.

AlphaFold 1's layout by default: 64 equal bins over 2-22 Å plus one "beyond"
bin for everything farther (a distance below ``min_distance`` falls in the first
bin). Trained with cross-entropy. The point estimate is the expected distance
and the per-pair variance is the spread of the distribution -- the uncertainty
that weights SMACOF. The "beyond" bin stands for ``beyond_distance`` Å, or for the
separation prior's distance when that is larger and a prior is given.

Bins live in Å, so the head needs the model's normaliser (``set_normaliser``)
to read normalised targets and to report its outputs in the normaliser's space.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from distfold.components import Configurable
from distfold.plugins.distance_heads.pair import (PairHeadBase, PairStack, decode_slope, local_weights,
                                                  masked_pair_mean, off_diagonal)


class DistogramHead(Configurable, PairHeadBase):
    """Pair features -> (B, L, L, n_bins + 1) logits; expected distance and variance.

    hidden_size: backbone feature width.
    n_bins, min_distance, max_distance: equal-width bins over [min, max] Å, plus a beyond bin.
    beyond_distance: Å value the beyond bin stands for (floor; the prior raises it).
    pair_dim, n_blocks, dilations, max_separation, use_prior, dropout, seq_kernel, seq_dim: the pair
        stack (see ``PairStack``).
    local_range, local_weight: extra loss weight for 0 < |i - j| <= local_range.
    seed: initialisation seed.
    """

    #: The variance is that of the binned distribution; read as Gaussian for confidence.
    error_distribution = "gaussian"

    def __init__(self, hidden_size: int = 64, n_bins: int = 64, min_distance: float = 2.0,
                 max_distance: float = 22.0, beyond_distance: float = 30.0, pair_dim: int = 32,
                 n_blocks: int = 4, dilations: list[int] | None = None, max_separation: int = 32,
                 use_prior: bool = True, local_range: int = 0, local_weight: float = 0.0,
                 dropout: float = 0.0, seq_kernel: int = 0, seq_dim: int = 64,
                 seed: int = 0):
        PairHeadBase.__init__(self)
        if not (n_bins >= 2 and max_distance > min_distance >= 0):
            raise ValueError("distogram needs n_bins >= 2 and 0 <= min_distance < max_distance")
        self.hidden_size = int(hidden_size)
        self.n_bins = int(n_bins)
        self.min_distance = float(min_distance)
        self.max_distance = float(max_distance)
        self.beyond_distance = float(beyond_distance)
        self.pair_dim = int(pair_dim)
        self.n_blocks = int(n_blocks)
        self.dilations = [int(d) for d in (dilations or [1, 2, 4, 8])]
        self.max_separation = int(max_separation)
        self.use_prior = bool(use_prior)
        self.local_range = int(local_range)
        self.local_weight = float(local_weight)
        self.dropout = float(dropout)
        self.seq_kernel = int(seq_kernel)
        self.seq_dim = int(seq_dim)
        self.seed = int(seed)
        edges = torch.linspace(self.min_distance, self.max_distance, self.n_bins + 1, dtype=torch.float64)
        self.register_buffer("edges", edges.float(), persistent=False)
        self.register_buffer("centers", (0.5 * (edges[1:] + edges[:-1])).float(), persistent=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.stack = PairStack(self.hidden_size, self.n_bins + 1, self.pair_dim, self.n_blocks,
                                   tuple(self.dilations), self.max_separation, self.use_prior, self.dropout,
                                   seq_kernel=self.seq_kernel, seq_dim=self.seq_dim)

    def _bin_values(self, prior_angstrom: torch.Tensor | None, shape) -> torch.Tensor:
        """(B, L, L, n_bins + 1) Å value of every bin (the beyond bin may vary per pair)."""
        beyond = torch.full(shape, self.beyond_distance, device=self.centers.device)
        if prior_angstrom is not None:
            beyond = torch.maximum(beyond, prior_angstrom.float())
        centers = self.centers.expand(*shape, self.n_bins)
        return torch.cat([centers, beyond[..., None]], dim=-1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor | None = None) -> dict:
        """-> {"logits": (B, L, L, K), "distance", "variance": (B, L, L) normalised,
        "distance_angstrom", "variance_angstrom": (B, L, L) Å / Å^2}."""
        logits = self.stack(features, mask, prior if self.use_prior else None)
        prob = torch.softmax(logits, dim=-1)
        b, n = logits.shape[:2]
        prior_a = self._normaliser.decode(prior.float()) if (prior is not None) else None
        values = self._bin_values(prior_a, (b, n, n))
        mean = (prob * values).sum(-1)
        var = (prob * (values - mean[..., None]) ** 2).sum(-1)
        off = off_diagonal(n, logits.device)
        mean_a, var_a = mean * off, var * off
        dist = self._normaliser.encode(mean_a)
        slope = decode_slope(self._normaliser, dist)
        return {"logits": logits, "distance": dist * off, "variance": var_a / slope.clamp_min(1e-6) ** 2 * off,
                "distance_angstrom": mean_a, "variance_angstrom": var_a}

    def distance_angstrom(self, output: dict, normaliser) -> torch.Tensor:
        return output["distance_angstrom"]

    def variance_angstrom(self, output: dict, normaliser) -> torch.Tensor:
        return output["variance_angstrom"]

    def target_bins(self, target_angstrom: torch.Tensor) -> torch.Tensor:
        """(B, L, L) long bin index of distances in Å (n_bins = beyond)."""
        t = torch.nan_to_num(target_angstrom.float(), nan=0.0)
        idx = torch.bucketize(t, self.edges[1:-1].contiguous(), right=True)
        return torch.where(t >= self.max_distance, torch.full_like(idx, self.n_bins), idx)

    def loss(self, output: dict, target: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over pairs in ``pair_mask`` (per chain, then over chains), scalar.
        ``target`` is in the normaliser's space."""
        logits = output["logits"]
        n = logits.shape[1]
        bins = self.target_bins(self._normaliser.decode(torch.nan_to_num(target.float())))
        ce = F.cross_entropy(logits.permute(0, 3, 1, 2), bins, reduction="none")  # (B, L, L)
        pm = pair_mask & ~torch.eye(n, dtype=torch.bool, device=logits.device)
        return masked_pair_mean(ce, pm, local_weights(n, self.local_range, self.local_weight, logits.device))
