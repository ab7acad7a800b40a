"""The example plugin's backbone, written only against distfold's public API.

A backbone is a ``torch.nn.Module`` that follows :class:`distfold.protocols.Backbone`:
``forward(sequences) -> (features (B, L, hidden_size) float32, mask (B, L) bool)``, one
position per residue, plus ``hidden_size``, ``is_pretrained`` and the trainable state.
This one is a small residual 1D convolution over learned residue embeddings, trained
from scratch (so ``is_pretrained`` is False and checkpoints hold all its weights).

torch is imported here, at the top of the component's own module: distfold imports
this module only when the backbone is used, never to list it (``hooks.py`` stays cheap).
"""

import torch
from torch import nn

from distfold.components import Configurable

#: id 0 pads, id 1 is any other letter, then the 20 amino acids.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


class ConvBackbone(Configurable, nn.Module):
    """Residue embeddings + ``layers`` residual convolutions (width ``kernel``, GELU).

    Padding is masked to zero before every convolution, so a residue's features do
    not depend on how the batch was padded (the conformance suite checks it).
    """

    is_pretrained = False

    def __init__(self, hidden_size: int = 32, layers: int = 2, kernel: int = 9, seed: int = 0):
        nn.Module.__init__(self)
        self.hidden_size = int(hidden_size)
        self.layers = int(layers)
        self.kernel = int(kernel)
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.embed = nn.Embedding(len(AMINO_ACIDS) + 2, self.hidden_size, padding_idx=0)
            self.convs = nn.ModuleList(nn.Conv1d(self.hidden_size, self.hidden_size, self.kernel,
                                                 padding=self.kernel // 2) for _ in range(self.layers))
            self.norm = nn.LayerNorm(self.hidden_size)

    def tokenize(self, sequences):
        n = max(len(s) for s in sequences)
        ids = torch.zeros((len(sequences), n), dtype=torch.long)
        for b, seq in enumerate(sequences):
            ids[b, : len(seq)] = torch.tensor([AMINO_ACIDS.find(c.upper()) + 2 for c in seq])
        return ids, ids > 0

    def forward(self, sequences):
        ids, mask = self.tokenize(sequences)
        ids, mask = ids.to(self.embed.weight.device), mask.to(self.embed.weight.device)
        keep = mask.unsqueeze(1).float()  # (B, 1, L)
        x = self.embed(ids).transpose(1, 2) * keep  # (B, H, L)
        for conv in self.convs:
            x = (x + nn.functional.gelu(conv(x))) * keep
        return self.norm(x.transpose(1, 2)).float(), mask

    def trainable_state_dict(self):
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state):
        self.load_state_dict(state)
