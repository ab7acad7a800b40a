"""The Qwen2 decoder stack of the from-scratch ``qwen`` backbone, in plain torch.

``transformers.Qwen2Model`` costs ``import transformers`` (seconds of start-up) to run
a network of a few million parameters; this module is the same network without it:
token embedding, ``num_hidden_layers`` pre-norm blocks (RMSNorm, grouped-query
self-attention with rotary position embedding (RoPE), RMSNorm, SwiGLU MLP) and a
final RMSNorm. It mirrors what ``Qwen2Model`` computes with the configuration the
backbone builds (``attn_implementation="sdpa"``, ``rope_type="default"``, no sliding
window, no KV cache, attention dropout 0), operation by operation, so that

- the state-dict keys are the same (``embed_tokens.weight``,
  ``layers.N.self_attn.q_proj.weight``, ..., ``norm.weight``): checkpoints written
  with ``transformers.Qwen2Model`` load unchanged;
- the outputs are the same to the last bit on CPU for the same inputs (the same
  ``scaled_dot_product_attention`` calls: unmasked grouped-query attention without
  padding, a boolean padding mask over repeated key/value heads with it);
- the initial weights for a seed are the same (modules are created in the same order,
  then re-initialised in the same order: normal(0, 0.02) for linear and embedding
  weights, zero biases and padding row, unit norms).

``tests/test_backbone.py`` checks all three against ``transformers.Qwen2Model``. The
pretrained path (weights from Hugging Face files, LoRA with peft) still uses
transformers; only the from-scratch path uses this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Qwen2Sizes:
    """The configuration of a from-scratch stack (names as in ``transformers.Qwen2Config``)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    pad_token_id: int = 0
    initializer_range: float = 0.02
    is_causal: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 and cast back (as ``Qwen2RMSNorm``)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos and sin of RoPE for positions 0..L-1 (the ``default`` rope type)."""

    def __init__(self, sizes: Qwen2Sizes):
        super().__init__()
        dim = sizes.head_dim
        inv_freq = 1.0 / (sizes.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        # Not persistent (not in checkpoints) and cast by .to(dtype) like the model's own.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        position_ids = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, kv_heads, L, d) -> (B, kv_heads * n_rep, L, d), each key/value head repeated n_rep times."""
    if n_rep == 1:
        return x
    b, h, n, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, n, d).reshape(b, h * n_rep, n, d)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE (biases on q, k, v; none on the output)."""

    def __init__(self, sizes: Qwen2Sizes):
        super().__init__()
        self.head_dim = sizes.head_dim
        self.num_key_value_groups = sizes.num_attention_heads // sizes.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        self.is_causal = sizes.is_causal
        h, kv = sizes.num_attention_heads * self.head_dim, sizes.num_key_value_heads * self.head_dim
        self.q_proj = nn.Linear(sizes.hidden_size, h, bias=True)
        self.k_proj = nn.Linear(sizes.hidden_size, kv, bias=True)
        self.v_proj = nn.Linear(sizes.hidden_size, kv, bias=True)
        self.o_proj = nn.Linear(h, sizes.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """``mask``: None (every position valid) or (B, 1, L, L) bool, True where attention may go."""
        shape = (*x.shape[:-1], -1, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if mask is None:  # the kernel shares key/value heads itself
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling,
                                                 is_causal=self.is_causal and q.shape[2] > 1,
                                                 enable_gqa=self.num_key_value_groups > 1)
        else:
            k, v = repeat_kv(k, self.num_key_value_groups), repeat_kv(v, self.num_key_value_groups)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)
        out = out.transpose(1, 2).contiguous()
        return self.o_proj(out.reshape(*x.shape[:-1], -1).contiguous())


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, sizes: Qwen2Sizes):
        super().__init__()
        self.gate_proj = nn.Linear(sizes.hidden_size, sizes.intermediate_size, bias=False)
        self.up_proj = nn.Linear(sizes.hidden_size, sizes.intermediate_size, bias=False)
        self.down_proj = nn.Linear(sizes.intermediate_size, sizes.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, sizes: Qwen2Sizes):
        super().__init__()
        self.self_attn = Attention(sizes)
        self.mlp = MLP(sizes)
        self.input_layernorm = RMSNorm(sizes.hidden_size, sizes.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(sizes.hidden_size, sizes.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen2Stack(nn.Module):
    """Token ids (B, L) and a validity mask (B, L) -> last hidden states (B, L, hidden_size)."""

    def __init__(self, sizes: Qwen2Sizes):
        super().__init__()
        self.config = sizes
        self.embed_tokens = nn.Embedding(sizes.vocab_size, sizes.hidden_size, sizes.pad_token_id)
        self.layers = nn.ModuleList([DecoderLayer(sizes) for _ in range(sizes.num_hidden_layers)])
        self.norm = RMSNorm(sizes.hidden_size, sizes.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(sizes)
        self.gradient_checkpointing = False
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The initialisation of ``transformers`` (``PreTrainedModel._init_weights``), in its order:
        children before parents, in the order they were created."""
        std = self.config.initializer_range

        def init(module: nn.Module) -> None:
            for child in module.children():
                init(child)
            if isinstance(module, nn.Linear):
                module.weight.normal_(mean=0.0, std=std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(mean=0.0, std=std)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)

        init(self)

    def forward(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``valid`` (B, L) bool: False at padding (keys there are never attended to)."""
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(x)
        mask = None
        if not bool(valid.all()):
            n = valid.shape[1]
            mask = valid.to(device=x.device, dtype=torch.bool)[:, None, None, :].expand(-1, 1, n, n)
            if self.config.is_causal:
                mask = mask & torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if checkpointing:
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask)
        return self.norm(x)
