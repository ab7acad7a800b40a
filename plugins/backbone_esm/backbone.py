"""The ``esm`` backbone: an ESM-2 protein language model as a per-residue embedder.

ESM-2 (Lin et al., Science 2023; the language model under ESMFold) is
transformers' :class:`~transformers.EsmModel`. Its weights come from a local
directory or the local Hugging Face cache, offline (``local_files_only=True``;
nothing is downloaded), e.g. ``facebook/esm2_t12_35M_UR50D`` after a
``huggingface-cli download`` elsewhere, or a folder copied from one.

Tokens: one per residue, looked up letter by letter in the ESM vocabulary
(``X`` for a letter it lacks), with ESM's ``<cls>`` before and ``<eos>`` after
each sequence as in pre-training; the features of those two special tokens (and
of padding) are stripped, so position i of the output is residue i.

Two ways to train (``finetune``):

- ``"lora"`` (the default): the base weights frozen, LoRA adapters from peft on
  the attention projections (``query``, ``key``, ``value``) and every ``dense``
  layer (attention output, MLP in and out); features are the last layer's.
- ``"frozen"``: the whole language model frozen and run without gradients (so
  no activation memory for it); the features are a learned softmax-weighted mix
  of every layer's hidden states (ESMFold's ``esm_s_combine``) through a trainable
  linear projection to ``projection_size`` (default: the model's width).

The default, LoRA, was chosen by measurement (``benchmarks/bench_esm_modes.py``: a tiny
random ESM-2, hidden 64, 4 layers; 150 steps of 4 crops of 128 on 120 real training
chains; 23 validation chains). LoRA ended with the lower validation distance MAE
(7.448 vs 7.457 Å; separation prior 7.496 Å), frozen with the higher lDDT (0.244 vs
0.239; prior 0.253), at 1.24 vs 1.18 s per step: a tie within noise on random weights,
broken towards LoRA, which adapts the representation itself (Schmirler et al., Nat.
Commun. 2024, found fine-tuning protein language models, LoRA included, better than
their frozen embeddings on most tasks) and matches the ``qwen`` backbone. Frozen is the
cheaper option at real sizes (no activations of the language model kept for a backward
pass; README, "Your own weights, on real hardware").

Checkpoints hold only what training changes: the LoRA adapter in peft's format
(``adapter/adapter_config.json`` + ``adapter_model.safetensors``, the base model
referenced by the id/path given, not copied) or, frozen, the layer mix and
projection in ``adapter/adapter_model.safetensors``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distfold.components import Configurable
from distfold.errors import DistfoldError, InputError

DEFAULT_LORA_TARGETS = ["query", "key", "value", "dense"]
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
FINETUNE_MODES = ("lora", "frozen")
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


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


class EsmBackbone(Configurable, nn.Module):
    """Per-residue features (B, L, hidden_size) float32 from an ESM-2 model.

    Parameters
    ----------
    base_model: local directory or Hugging Face id (found in the local cache) of an
        ESM-2 model (``model_type`` ``esm``; an ``EsmForMaskedLM`` checkpoint is fine).
        Required.
    finetune: ``"lora"`` (adapters on the frozen model) or ``"frozen"`` (no
        gradients into the model; a trainable layer mix and projection).
    lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA (``finetune="lora"``).
    projection_size: width of the trainable projection (``finetune="frozen"``);
        None: the model's hidden size. It is the backbone's ``hidden_size``.
    gradient_checkpointing: recompute activations in the backward pass (LoRA only:
        a frozen model keeps no activations for a backward pass).
    precision: ``fp32`` or ``bf16`` weights/compute (features are returned as float32).
    seed: initialisation seed of the LoRA adapters / the projection.
    """

    is_pretrained = True

    def __init__(self, base_model: str | None = None, finetune: str = "lora", lora_r: int = 8,
                 lora_alpha: float = 16.0, lora_dropout: float = 0.05, lora_target_modules: list[str] | None = None,
                 projection_size: int | None = None, gradient_checkpointing: bool = False, precision: str = "fp32",
                 seed: int = 0):
        nn.Module.__init__(self)
        if base_model is None:
            raise InputError("the esm backbone needs base_model: a local ESM-2 directory or a Hugging Face id in "
                             "the local cache (distfold train ... --backbone esm --base-model PATH_OR_ID)")
        if precision not in PRECISIONS:
            raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if finetune not in FINETUNE_MODES:
            raise InputError(f"finetune {finetune!r} is not one of {', '.join(FINETUNE_MODES)}")
        if projection_size is not None and finetune != "frozen":
            raise InputError("projection_size applies to finetune='frozen' only")
        self.base_model = str(base_model)
        self.finetune = finetune
        self.lora_r = int(lora_r)
        self.lora_alpha = float(lora_alpha)
        self.lora_dropout = float(lora_dropout)
        self.lora_target_modules = list(lora_target_modules or DEFAULT_LORA_TARGETS)
        self.projection_size = None if projection_size is None else int(projection_size)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.precision = precision
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build()

    # -- construction ---------------------------------------------------------------
    def _build(self) -> None:
        from transformers import AutoConfig, AutoTokenizer, EsmModel
        from transformers.utils import logging as hf_logging

        src = self.base_model
        with _offline_env():
            try:
                config = AutoConfig.from_pretrained(src, local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
                where = "directory" if Path(src).exists() else "model id (not in the local Hugging Face cache)"
                raise DistfoldError(f"base model {src!r}: cannot load this {where}: {_one_line(exc)}") from None
            if getattr(config, "model_type", None) != "esm":
                raise DistfoldError(f"base model {src!r} is a {config.model_type!r} model, not ESM-2 ('esm')")
            if getattr(config, "is_folding_model", False):
                raise DistfoldError(f"base model {src!r} is ESMFold; give its language model (an ESM-2 checkpoint)")
            verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
            hf_logging.set_verbosity_error()  # an EsmForMaskedLM checkpoint's unused LM head is expected
            hf_logging.disable_progress_bar()
            try:
                model = EsmModel.from_pretrained(src, config=config, add_pooling_layer=False, local_files_only=True,
                                                 dtype=PRECISIONS[self.precision])
            except Exception as exc:  # noqa: BLE001
                raise DistfoldError(f"base model {src!r}: cannot load weights: {_one_line(exc)}") from None
            finally:
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()
        self.model_config = model.config
        self.num_hidden_layers = int(model.config.num_hidden_layers)
        self._base_hidden = int(model.config.hidden_size)
        self._set_vocabulary(tokenizer)
        for p in model.parameters():
            p.requires_grad_(False)
        if self.finetune == "lora":
            if self.gradient_checkpointing:
                _enable_checkpointing(model)
                model.enable_input_require_grads()
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                              target_modules=list(self.lora_target_modules), bias="none")
            self.model = get_peft_model(model, lora)
            self.model.peft_config["default"].base_model_name_or_path = src  # the id/path the user gave
            self.hidden_size = self._base_hidden
        else:
            model.eval()
            self.model = model
            width = self.projection_size or self._base_hidden
            self.layer_logits = nn.Parameter(torch.zeros(self.num_hidden_layers + 1))
            self.projection = nn.Linear(self._base_hidden, width)
            self.hidden_size = width

    def _set_vocabulary(self, tokenizer: Any) -> None:
        src = self.base_model
        specials = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("cls", "eos", "pad")}
        missing = [name for name, tid in specials.items() if tid is None]
        if missing:
            raise DistfoldError(f"base model {src!r}: its tokenizer has no {', '.join(missing)} token (not ESM-2?)")
        self._cls_id, self._eos_id, self._pad_id = int(specials["cls"]), int(specials["eos"]), int(specials["pad"])
        vocab = tokenizer.get_vocab()
        unk = vocab.get("X", tokenizer.unk_token_id)
        lut = torch.full((128,), -1, dtype=torch.long)
        for code in range(ord("A"), ord("Z") + 1):
            tid = vocab.get(chr(code), unk)
            lut[code] = -1 if tid is None else int(tid)
            lut[code + 32] = lut[code]
        for letter in AMINO_ACIDS:
            if int(lut[ord(letter)]) < 0 or vocab.get(letter) is None:
                raise DistfoldError(f"base model {src!r}: its tokenizer has no token for residue {letter!r}")
        lut[lut < 0] = lut[ord("X")] if int(lut[ord("X")]) >= 0 else lut[ord("A")]
        self.register_buffer("_lut", lut, persistent=False)

    # -- API ----------------------------------------------------------------------------
    def tokenize(self, sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids (B, L_max + 2) long: ``<cls>`` residues ``<eos>`` then padding;
        mask (B, L_max) bool, True on residues)."""
        if not sequences:
            raise InputError("no sequences given")
        n = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), n + 2), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), n), dtype=torch.bool)
        for b, seq in enumerate(sequences):
            if not seq:
                raise InputError(f"sequence {b + 1} is empty")
            codes = torch.tensor([min(ord(c), 127) for c in seq], dtype=torch.long)
            ids[b, 0] = self._cls_id
            ids[b, 1: len(seq) + 1] = self._lut[codes]
            ids[b, len(seq) + 1] = self._eos_id
            mask[b, : len(seq)] = True
        return ids, mask

    def forward(self, sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, L_max, hidden_size) float32, mask (B, L_max) bool."""
        ids, mask = self.tokenize(sequences)
        device = self._lut.device
        ids, mask = ids.to(device), mask.to(device)
        attention = (ids != self._pad_id).long()
        if self.finetune == "lora":
            out = self.model(input_ids=ids, attention_mask=attention)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            return hidden[:, 1:-1].float(), mask
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=attention, output_hidden_states=True)
            layers = torch.stack([h[:, 1:-1].float() for h in out.hidden_states], dim=0)  # (layers+1, B, L, H)
        weights = torch.softmax(self.layer_logits.float(), dim=0)
        mixed = torch.einsum("k,kblh->blh", weights, layers)
        return self.projection(mixed).float(), mask

    def train(self, mode: bool = True) -> "EsmBackbone":
        super().train(mode)
        if self.finetune == "frozen":
            self.model.eval()  # frozen: never dropout in the language model
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors training changes: the LoRA adapter, or the layer mix and projection."""
        if self.finetune == "lora":
            from peft import get_peft_model_state_dict

            return {k: v.detach() for k, v in get_peft_model_state_dict(self.model).items()}
        return {"layer_logits": self.layer_logits.detach(), "projection.weight": self.projection.weight.detach(),
                "projection.bias": self.projection.bias.detach()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.finetune == "lora":
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(self.model, state)
            unexpected = getattr(result, "unexpected_keys", [])
            if unexpected:
                raise DistfoldError(f"adapter weights do not fit this backbone (e.g. {unexpected[0]})")
            return
        expected = set(self.trainable_state_dict())
        if set(state) != expected:
            raise DistfoldError(f"projection weights do not fit this backbone (expected {', '.join(sorted(expected))})")
        with torch.no_grad():
            self.layer_logits.copy_(state["layer_logits"])
            self.projection.weight.copy_(state["projection.weight"])
            self.projection.bias.copy_(state["projection.bias"])

    def save_adapter(self, directory: str | os.PathLike) -> None:
        """The trained tensors: a LoRA adapter in peft's format, or (frozen) the layer mix and
        projection as ``adapter_model.safetensors`` beside an ``adapter_config.json`` naming the base."""
        directory = Path(directory)
        if self.finetune == "lora":
            self.model.save_pretrained(str(directory), safe_serialization=True)
            return
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().clone() for k, v in self.trainable_state_dict().items()},
                  str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
        (directory / "adapter_config.json").write_text(json.dumps(
            {"distfold_adapter": "esm-frozen-projection", "base_model_name_or_path": self.base_model,
             "num_hidden_layers": self.num_hidden_layers, "projection_size": self.hidden_size},
            indent=2, sort_keys=True) + "\n")

    def load_adapter(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        self.load_trainable_state_dict(load_file(str(Path(directory) / "adapter_model.safetensors")))
