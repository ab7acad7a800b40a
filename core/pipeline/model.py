"""A trained distance predictor: backbone + distance head + normaliser (+ separation prior).

A model directory (a checkpoint) holds:

- ``config.json`` (``indent=2, sort_keys=True``): the distfold version, every
  component's name, distribution and parameters (the normaliser's fitted scale
  included), the base model id/path, the dataset fingerprint, the crop length
  and a few training facts;
- ``backbone.safetensors`` (a from-scratch backbone: all its weights) or
  ``adapter/`` (a LoRA adapter in peft's format, ``adapter_config.json`` +
  ``adapter_model.safetensors``, the base model referenced, not copied);
- ``head.safetensors``; ``prior.json`` when the model uses the separation prior.

Nothing is pickled. Loading a checkpoint whose plugin is not installed names the
distribution to install.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distfold import __version__
from distfold.errors import DistfoldError, InputError, UnknownComponentError
from distfold.pipeline.prior import SeparationPrior

MODEL_FORMAT = "distfold-model"
MODEL_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
KNOWN_KEYS = {"format", "format_version", "distfold_version", "components", "base_model", "normaliser_scale",
              "dataset_fingerprint", "crop", "prior", "training", "confidence_calibration", "init"}


def default_model_path() -> Path:
    """The model ``distfold predict`` uses unless told otherwise (shipped as package data)."""
    return Path(__file__).resolve().parent.parent / "default_model"


def _registry():
    from distfold.registry import get_registry

    return get_registry()


def _component_entry(kind: str, name: str, obj: Any) -> dict[str, Any]:
    try:
        dist = _registry().get(kind, name).distribution
    except DistfoldError:
        dist = None
    return {"name": name, "distribution": dist, "params": obj.get_config()}


def _create(kind: str, entry: dict[str, Any], where: str) -> Any:
    name = entry.get("name")
    try:
        factory = _registry().load(kind, name)
    except UnknownComponentError:
        dist = entry.get("distribution")
        hint = f"install the distribution {dist!r} (pip install {dist})" if dist else "install the plugin that provides it"
        raise DistfoldError(f"{where}: needs the {kind.replace('_', ' ')} {name!r}, which is not installed; {hint}") from None
    try:
        return factory(**entry.get("params", {}))
    except DistfoldError:
        raise
    except (TypeError, ValueError) as exc:
        raise DistfoldError(f"{where}: cannot build {kind.replace('_', ' ')} {name!r}: {exc}") from None


class DistanceModel(nn.Module):
    """sequences -> (L, L) distances in Å (and variances in Å^2).

    backbone: a ``distfold_backbones`` component; head: a ``distfold_distance_heads``
    component; normaliser: a ``distfold_normalisers`` component (fitted);
    prior: a :class:`SeparationPrior` or None; config: the checkpoint config (dict).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, normaliser: Any, prior: SeparationPrior | None = None,
                 config: dict[str, Any] | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.normaliser = normaliser
        self.prior = prior
        self.config = dict(config or {})
        if hasattr(head, "set_normaliser"):
            head.set_normaliser(normaliser)
        if getattr(head, "use_prior", False) and prior is None:
            raise DistfoldError("this head uses the separation prior, but the model has none")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, backbone: tuple[str, dict], head: tuple[str, dict], normaliser: tuple[str, dict],
              prior: SeparationPrior | None = None, **extra: Any) -> "DistanceModel":
        """Create components by name through the registry; the head gets the backbone's width."""
        reg = _registry()
        bb = reg.create("backbone", backbone[0], **backbone[1])
        hp = dict(head[1])
        hp["hidden_size"] = int(bb.hidden_size)
        hd = reg.create("distance_head", head[0], **hp)
        nm = reg.create("normaliser", normaliser[0], **normaliser[1])
        model = cls(bb, hd, nm, prior)
        model.config = model._make_config({"backbone": backbone[0], "distance_head": head[0],
                                           "normaliser": normaliser[0]}, extra)
        return model

    def _make_config(self, names: dict[str, str], extra: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "distfold_version": __version__,
            "components": {
                "backbone": _component_entry("backbone", names["backbone"], self.backbone),
                "distance_head": _component_entry("distance_head", names["distance_head"], self.head),
                "normaliser": _component_entry("normaliser", names["normaliser"], self.normaliser),
            },
            "base_model": getattr(self.backbone, "base_model", None),
            "prior": "prior.json" if self.prior is not None else None,
        }
        config.update(extra)
        return config

    def refresh_config(self) -> None:
        """Re-read every component's parameters (e.g. after fitting the normaliser)."""
        for kind, obj in (("backbone", self.backbone), ("distance_head", self.head), ("normaliser", self.normaliser)):
            self.config["components"][kind]["params"] = obj.get_config()
        scale = getattr(self.normaliser, "scale", None)
        self.config["normaliser_scale"] = scale
        self.config["prior"] = "prior.json" if self.prior is not None else None

    # -- forward -------------------------------------------------------------------------------
    def prior_tensor(self, lengths: list[int], starts: list[int], size: int, device=None) -> torch.Tensor | None:
        """(B, size, size) separation prior in the normaliser's space for crops
        [start, start + size) of chains of the given full lengths (None without a prior)."""
        if self.prior is None:
            return None
        mats = [self.normaliser.encode(self.prior.matrix(n, s, size)) for n, s in zip(lengths, starts)]
        return torch.from_numpy(np.stack(mats).astype(np.float32)).to(device)

    def forward(self, sequences: list[str], lengths: list[int] | None = None,
                starts: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Head output for a batch of (possibly cropped) sequences.

        lengths: full chain lengths (the prior's length bucket; default len(sequence));
        starts: crop offsets (unused by the prior, which depends on |i - j| only).
        """
        features, mask = self.backbone(sequences)
        n = features.shape[1]
        lengths = lengths or [len(s) for s in sequences]
        starts = starts or [0] * len(sequences)
        prior = self.prior_tensor(lengths, starts, n, features.device)
        out = self.head(features, mask, prior=prior)
        out["mask"] = mask
        return out

    @torch.no_grad()
    def predict(self, sequences: list[str], lengths: list[int] | None = None) -> list[dict[str, Any]]:
        """One dict per sequence: ``distance`` (L, L) float32 Å, symmetric, zero diagonal;
        ``variance`` (L, L) float32 Å^2 or None. Whole chains at once (no windowing).
        ``lengths``: full chain lengths when the sequences are windows of longer chains
        (the prior's length bucket, as in training crops; default len(sequence))."""
        was_training = self.training
        self.eval()
        try:
            results = []
            for k, seq in enumerate(sequences):
                if not seq:
                    raise InputError("empty sequence")
                out = self.forward([seq], None if lengths is None else [int(lengths[k])])
                d = self.head.distance_angstrom(out, self.normaliser)[0].float().cpu().numpy()
                v = self.head.variance_angstrom(out, self.normaliser)
                # the head made both exactly symmetric with a zero diagonal (its contract, checked by
                # distfold.testing.check_distance_head); here they only become non-negative float32
                d = np.maximum(d, 0.0).astype(np.float32)
                if v is not None:
                    v = np.maximum(v[0].float().cpu().numpy(), 0.0).astype(np.float32)
                results.append({"distance": d, "variance": v})
            return results
        finally:
            self.train(was_training)

    # -- persistence ---------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, replace_dir: bool = True) -> Path:
        """Write the model directory; a reader never sees half of it.

        ``dtype`` (e.g. torch.float16) stores floating tensors in that type. With
        ``replace_dir`` the whole directory is swapped in at once; without, the model
        files are moved into an existing directory (other files there are kept) with
        ``config.json`` last."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.refresh_config()
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            def cast(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                out = {}
                for k, v in sd.items():
                    v = v.detach().cpu()
                    if dtype is not None and v.is_floating_point():
                        v = v.to(dtype)
                    out[k] = v.contiguous().clone()
                return out

            if getattr(self.backbone, "is_pretrained", False):
                self.backbone.save_adapter(tmp / "adapter")
                if dtype is not None:
                    save_file(cast(self.backbone.trainable_state_dict()),
                              str(tmp / "adapter" / "adapter_model.safetensors"))
            else:
                save_file(cast(self.backbone.trainable_state_dict()), str(tmp / "backbone.safetensors"),
                          metadata={"format": "pt"})
            save_file(cast(self.head.state_dict()), str(tmp / "head.safetensors"), metadata={"format": "pt"})
            if self.prior is not None:
                self.prior.save(tmp / "prior.json")
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
            if not replace_dir and path.is_dir():
                names = sorted(p.name for p in tmp.iterdir() if p.name != CONFIG_NAME) + [CONFIG_NAME]
                (path / CONFIG_NAME).unlink(missing_ok=True)  # no config = not (yet) a model
                for name in names:
                    target = path / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    os.replace(tmp / name, target)
                shutil.rmtree(tmp, ignore_errors=True)
                return path
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def read_config(cls, path: str | os.PathLike) -> dict[str, Any]:
        path = Path(path)
        cfg_path = path / CONFIG_NAME
        if not cfg_path.is_file():
            raise InputError(f"{path}: not a distfold model directory (no {CONFIG_NAME})")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{cfg_path}: invalid JSON ({exc})") from None
        if config.get("format") != MODEL_FORMAT:
            raise InputError(f"{cfg_path}: not a distfold model config")
        if int(config.get("format_version", 0)) > MODEL_FORMAT_VERSION:
            raise InputError(f"{cfg_path}: model format {config['format_version']} is newer than this distfold "
                             f"understands; upgrade distfold")
        unknown = sorted(set(config) - KNOWN_KEYS)
        if unknown:
            print(f"Warning: {cfg_path}: ignoring unknown keys {', '.join(unknown)} (written by a newer distfold?)",
                  file=sys.stderr)
        return config

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "DistanceModel":
        """The model saved in ``path``, in eval mode."""
        from safetensors.torch import load_file

        path = Path(path)
        config = cls.read_config(path)
        comps = config.get("components", {})
        for kind in ("backbone", "distance_head", "normaliser"):
            if kind not in comps:
                raise InputError(f"{path / CONFIG_NAME}: no {kind} in components")
        backbone = _create("backbone", comps["backbone"], str(path))
        head = _create("distance_head", comps["distance_head"], str(path))
        normaliser = _create("normaliser", comps["normaliser"], str(path))
        prior = SeparationPrior.load(path / config["prior"]) if config.get("prior") else None
        try:
            if getattr(backbone, "is_pretrained", False):
                backbone.load_adapter(path / "adapter")
            else:
                backbone.load_trainable_state_dict(_cast_like(load_file(str(path / "backbone.safetensors")),
                                                              backbone.trainable_state_dict()))
            head_sd = _cast_like(load_file(str(path / "head.safetensors")), head.state_dict())
            head.load_state_dict(head_sd)
        except FileNotFoundError as exc:
            raise InputError(f"{path}: incomplete model directory ({exc.filename} missing)") from None
        except RuntimeError as exc:
            raise InputError(f"{path}: weights do not fit the config ({str(exc).splitlines()[0]})") from None
        model = cls(backbone, head, normaliser, prior, config)
        model.to(device)
        model.eval()
        return model


def _cast_like(loaded: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cast stored tensors (e.g. fp16) to the dtype of the live ones."""
    out = {}
    for k, v in loaded.items():
        ref = reference.get(k)
        out[k] = v.to(ref.dtype) if ref is not None and v.is_floating_point() else v
    return out
