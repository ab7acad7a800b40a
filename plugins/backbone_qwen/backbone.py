"""The ``qwen`` backbone: Qwen2/Qwen2.5 as a per-residue sequence embedder.

Two modes, one token per residue in both:

- **pretrained** (``base_model=PATH_OR_ID``): weights from a local directory or
  the local Hugging Face cache, offline (``local_files_only=True``), frozen,
  with LoRA adapters from peft on the attention and MLP projections. Residues
  are tokenised letter by letter with the single-letter tokens that exist in
  Qwen's vocabulary (never BPE merges). The adapter is saved in peft's format
  with the base model referenced by id/path, not copied.
- **from scratch** (``preset=NAME``): the Qwen2 decoder stack with a 22-token
  residue vocabulary (``<pad>``, ``X``, the 20 standard amino acids), trained
  fully. It runs on :mod:`.qwen2_torch`, plain torch that computes what
  ``transformers.Qwen2Model`` computes (same state-dict keys, same outputs and
  initial weights), so that predicting with a from-scratch model never pays
  ``import transformers`` (seconds of start-up for a network of a few million
  parameters). Only the pretrained mode imports transformers and peft.

Sizes of the presets (``PRESETS``) are written out into the config, so a
checkpoint does not depend on this table. The network is built in
``__init__`` from the (JSON) parameters alone; weights of a from-scratch model
are initialised deterministically from ``seed``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distfold.components import Configurable
from distfold.errors import DistfoldError, InputError

#: Residue vocabulary of the from-scratch model: id 0 pads, id 1 is any non-standard residue.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
SCRATCH_VOCAB = ["<pad>", "X", *AMINO_ACIDS]

#: Named from-scratch sizes. ``tiny`` is for tests; ``small`` (about 1.9 M parameters) is the
#: shipped default model's backbone.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                 intermediate_size=64),
    "small": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2,
                  intermediate_size=512),
    "base": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2,
                 intermediate_size=768),
}

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _offline_env():
    """Context: the hub is not contacted (a missing model fails in seconds, not ~50 s)."""
    @contextlib.contextmanager
    def ctx():
        old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return ctx()


def _enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing; the method was renamed in transformers 5."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers 4
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class QwenBackbone(Configurable, nn.Module):
    """Per-residue features (B, L, hidden_size) float32 from a Qwen2 model.

    Parameters
    ----------
    base_model: local directory or Hugging Face id (found in the local cache) of a
        pretrained Qwen2/Qwen2.5 model; None for a from-scratch model.
    preset: from-scratch size name (``tiny``, ``small``, ``base``); the sizes below
        override it. Ignored (must be None) with ``base_model``.
    hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
    intermediate_size: from-scratch sizes (None: from the preset).
    max_position_embeddings, rope_theta: from-scratch position encoding (RoPE).
    bidirectional: attend in both directions (None: True from scratch, False for a
        pretrained causal LM, which was trained causally).
    lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA (pretrained only).
    gradient_checkpointing: recompute activations in the backward pass.
    precision: ``fp32`` or ``bf16`` weights/compute (features are returned as float32).
    seed: initialisation seed of the from-scratch weights and of the LoRA adapters.
    """

    def __init__(self, base_model: str | None = None, preset: str | None = None,
                 hidden_size: int | None = None, num_hidden_layers: int | None = None,
                 num_attention_heads: int | None = None, num_key_value_heads: int | None = None,
                 intermediate_size: int | None = None, max_position_embeddings: int = 4096,
                 rope_theta: float = 10000.0, bidirectional: bool | None = None,
                 lora_r: int = 8, lora_alpha: float = 16.0, lora_dropout: float = 0.05,
                 lora_target_modules: list[str] | None = None, gradient_checkpointing: bool = False,
                 precision: str = "fp32", seed: int = 0):
        nn.Module.__init__(self)
        if precision not in PRECISIONS:
            raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if base_model is None and preset is None and hidden_size is None:
            preset = "small"
        if base_model is not None and preset is not None:
            raise InputError("give either a pretrained base_model or a from-scratch preset, not both")
        if preset is not None and preset not in PRESETS:
            raise InputError(f"unknown backbone preset {preset!r}; presets: {', '.join(PRESETS)}")
        self.base_model = None if base_model is None else str(base_model)
        self.preset = preset
        self.max_position_embeddings = int(max_position_embeddings)
        self.rope_theta = float(rope_theta)
        self.bidirectional = (self.base_model is None) if bidirectional is None else bool(bidirectional)
        self.lora_r = int(lora_r)
        self.lora_alpha = float(lora_alpha)
        self.lora_dropout = float(lora_dropout)
        self.lora_target_modules = list(lora_target_modules or DEFAULT_LORA_TARGETS)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.precision = precision
        self.seed = int(seed)
        sizes = dict(PRESETS.get(preset or "", {}))
        for key, value in (("hidden_size", hidden_size), ("num_hidden_layers", num_hidden_layers),
                           ("num_attention_heads", num_attention_heads),
                           ("num_key_value_heads", num_key_value_heads),
                           ("intermediate_size", intermediate_size)):
            if value is not None:
                sizes[key] = int(value)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.base_model is None:
                self._build_scratch(sizes)
            else:
                self._build_pretrained()
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "intermediate_size"):
            setattr(self, key, int(getattr(self.model_config, key)))

    # -- construction ---------------------------------------------------------------
    def _build_scratch(self, sizes: dict[str, int]) -> None:
        from distfold.plugins.backbone_qwen.qwen2_torch import Qwen2Sizes, Qwen2Stack

        missing = [k for k in PRESETS["tiny"] if k not in sizes]
        if missing:
            raise InputError(f"from-scratch backbone needs a preset or explicit sizes (missing {', '.join(missing)})")
        config = Qwen2Sizes(
            vocab_size=len(SCRATCH_VOCAB), max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta, pad_token_id=0, initializer_range=0.02, rms_norm_eps=1e-6,
            is_causal=not self.bidirectional, **sizes,
        )
        self.model_config = config
        self.model = Qwen2Stack(config).to(PRECISIONS[self.precision])
        lut = torch.full((128,), SCRATCH_VOCAB.index("X"), dtype=torch.long)
        for i, letter in enumerate(AMINO_ACIDS):
            lut[ord(letter)] = i + 2
            lut[ord(letter.lower())] = i + 2
        self.register_buffer("_lut", lut, persistent=False)
        self._pad_id = 0
        self.model.gradient_checkpointing = self.gradient_checkpointing

    def _build_pretrained(self) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        src = self.base_model
        with _offline_env():
            try:
                config = AutoConfig.from_pretrained(src, local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
                where = "directory" if Path(src).exists() else "model id (not in the local Hugging Face cache)"
                raise DistfoldError(f"base model {src!r}: cannot load this {where}: {_one_line(exc)}") from None
            if getattr(config, "model_type", None) not in ("qwen2", "qwen2_moe", "qwen3"):
                raise DistfoldError(f"base model {src!r} is a {config.model_type!r} model, not Qwen2/Qwen2.5")
            config.use_cache = False
            config.is_causal = not self.bidirectional
            try:
                model = AutoModel.from_pretrained(src, config=config, local_files_only=True,
                                                  dtype=PRECISIONS[self.precision])
            except Exception as exc:  # noqa: BLE001
                raise DistfoldError(f"base model {src!r}: cannot load weights: {_one_line(exc)}") from None
        self.model_config = model.config
        self._set_causal(model)
        lut = torch.full((128,), -1, dtype=torch.long)
        unk = self._letter_id(tokenizer, "X")
        for code in range(ord("A"), ord("Z") + 1):
            tid = self._letter_id(tokenizer, chr(code))
            lut[code] = tid if tid is not None else (unk if unk is not None else -1)
            lut[code + 32] = lut[code]
        for letter in AMINO_ACIDS:
            if lut[ord(letter)] < 0:
                raise DistfoldError(f"base model {src!r}: its tokenizer has no single-letter token for {letter!r}")
        lut[lut < 0] = lut[ord("A")]
        self.register_buffer("_lut", lut, persistent=False)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad if pad is not None else 0)
        for p in model.parameters():
            p.requires_grad_(False)
        if self.gradient_checkpointing:
            _enable_checkpointing(model)
            model.enable_input_require_grads()
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=list(self.lora_target_modules), bias="none")
        self.model = get_peft_model(model, lora)
        # peft records where the base came from; keep the id/path the user gave.
        self.model.peft_config["default"].base_model_name_or_path = src

    @staticmethod
    def _letter_id(tokenizer: Any, letter: str) -> int | None:
        ids = tokenizer.convert_tokens_to_ids([letter])
        tid = ids[0] if ids else None
        if tid is None or (tokenizer.unk_token_id is not None and tid == tokenizer.unk_token_id):
            return None
        return int(tid)

    def _set_causal(self, model: nn.Module) -> None:
        for module in model.modules():
            if hasattr(module, "is_causal") and isinstance(getattr(module, "is_causal"), bool):
                module.is_causal = not self.bidirectional

    # -- API ----------------------------------------------------------------------------
    @property
    def is_pretrained(self) -> bool:
        return self.base_model is not None

    def tokenize(self, sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids (B, L_max) long, mask (B, L_max) bool): one token per residue."""
        if not sequences:
            raise InputError("no sequences given")
        n = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), n), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), n), dtype=torch.bool)
        for b, seq in enumerate(sequences):
            if not seq:
                raise InputError(f"sequence {b + 1} is empty")
            codes = torch.tensor([min(ord(c), 127) for c in seq], dtype=torch.long)
            ids[b, : len(seq)] = self._lut[codes]
            mask[b, : len(seq)] = True
        return ids, mask

    def forward(self, sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, L_max, hidden_size) float32, mask (B, L_max) bool."""
        ids, mask = self.tokenize(sequences)
        device = next(self.model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        if not self.is_pretrained:
            return self.model(ids, mask).float(), mask
        out = self.model(input_ids=ids, attention_mask=mask.long(), use_cache=False)
        features = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return features.float(), mask

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors training changes: LoRA adapters (pretrained) or every weight (from scratch)."""
        if self.is_pretrained:
            from peft import get_peft_model_state_dict

            return {k: v.detach() for k, v in get_peft_model_state_dict(self.model).items()}
        return {k: v.detach() for k, v in self.model.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.is_pretrained:
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(self.model, state)
            unexpected = getattr(result, "unexpected_keys", [])
            if unexpected:
                raise DistfoldError(f"adapter weights do not fit this backbone (e.g. {unexpected[0]})")
            return
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise DistfoldError(
                f"backbone weights do not fit this configuration (missing {len(missing)}, unexpected {len(unexpected)})")

    def save_adapter(self, directory: str | os.PathLike) -> None:
        """Save the LoRA adapter in peft's format (adapter_config.json + adapter_model.safetensors)."""
        if not self.is_pretrained:
            raise DistfoldError("a from-scratch backbone has no adapter")
        self.model.save_pretrained(str(directory), safe_serialization=True)

    def load_adapter(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        self.load_trainable_state_dict(load_file(str(Path(directory) / "adapter_model.safetensors")))
