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

``config.json`` may also hold ``"shrinkage"``: ``{"bands": [[lo, hi], ...] (|i - j|, hi null =
open), "factors": [f, ...], "fitted_on": str}``. At inference (:meth:`DistanceModel.predict`)
the head's correction to the separation prior, in the normaliser's space, is multiplied by
the factor of the pair's separation band: y = prior + f (y_head - prior); f = 1 is the head
as trained, f = 0 the prior. The factors are fitted on out-of-fold predictions of new
families (``benchmarks/cv_new_family.py``), so the model falls back to the prior where its
corrections do not transfer. The head's per-pair scale (its uncertainty in the normaliser's
space) is kept, and the variance in Å^2 is derived by the head at the shrunk distance (the
delta method of ``variance_angstrom``), so distance and variance stay consistent.

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
from distfold.structure.secondary import SS_STATES

MODEL_FORMAT = "distfold-model"
MODEL_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
KNOWN_KEYS = {"format", "format_version", "distfold_version", "components", "base_model", "normaliser_scale",
              "dataset_fingerprint", "crop", "prior", "training", "confidence_calibration", "init",
              "shrinkage"}


def default_model_path() -> Path:
    """The model ``distfold predict`` uses unless told otherwise (shipped as package data)."""
    return Path(__file__).resolve().parent.parent / "default_model"


def _registry():
    from distfold.registry import get_registry

    return get_registry()


def _component_entry(kind: str, name: str, obj: Any) -> dict[str, Any]:
    """The config entry of a component: its name (``NAME@WHO`` resolved), the distribution
    that provides it, its parameters."""
    try:
        comp = _registry().get(kind, name)
        name, dist = comp.name, comp.distribution
    except DistfoldError:
        dist = None
    return {"name": name, "distribution": dist, "params": obj.get_config()}


def _create(kind: str, entry: dict[str, Any], where: str) -> Any:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}/{CONFIG_NAME}: the {kind.replace('_', ' ')} has no name")
    try:
        # the provider the model was saved with, when several plugins give this name (distfold.registry)
        factory = _registry().load(kind, name, entry.get("distribution"))
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
              prior: SeparationPrior | None = None, backbone_module: nn.Module | None = None,
              **extra: Any) -> "DistanceModel":
        """Create components by name through the registry; the head gets the backbone's width.
        ``backbone_module``: the backbone already created from ``backbone`` (training builds it
        first, so that a base model that cannot load fails before the slow preparations)."""
        reg = _registry()
        bb = backbone_module if backbone_module is not None else reg.create("backbone", backbone[0], **backbone[1])
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
        if prior is not None:
            out["prior"] = prior  # normalised; shrink() reuses it instead of building it again
        return out

    def shrink(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``out`` (from :meth:`forward`) with its normalised ``distance`` pulled toward the
        separation prior that ``forward`` put in ``out["prior"]``, by the config's
        ``"shrinkage"`` factors (module docstring); unchanged without them or without a prior."""
        spec = self.config.get("shrinkage")
        prior = out.get("prior")
        if not spec or prior is None:
            return out
        y = out["distance"]
        n = y.shape[-1]
        factor = torch.from_numpy(shrinkage_matrix(spec, n)).to(y.device)
        out = dict(out)
        out["distance"] = (prior + factor * (y - prior)) * (1.0 - torch.eye(n, device=y.device))
        return out

    def forward_ss(self, sequences: list[str]) -> dict[str, torch.Tensor]:
        """The secondary-structure read-out alone, ``{"ss_logits": (B, L, 3), "mask"}``, without
        the pair stack (training a read-out on a frozen model); the head must have one."""
        if getattr(self.head, "ss", None) is None:
            raise DistfoldError("this model has no secondary-structure read-out")
        features, mask = self.backbone(sequences)
        return {"ss_logits": self.head.ss(features, mask), "mask": mask}

    @torch.no_grad()
    def predict(self, sequences: list[str], lengths: list[int] | None = None,
                shrink: bool = True) -> list[dict[str, Any]]:
        """One dict per sequence: ``distance`` (L, L) float32 Å, symmetric, zero diagonal;
        ``variance`` (L, L) float32 Å^2 or None; with a secondary-structure read-out,
        ``ss_probs`` (L, 3) float32, rows summing to 1, columns H, E, C (``SS_STATES``).
        Whole chains at once (no windowing).
        ``lengths``: full chain lengths when the sequences are windows of longer chains
        (the prior's length bucket, as in training crops; default len(sequence)).
        ``shrink``: apply the config's shrinkage toward the prior (False: the head as trained)."""
        was_training = self.training
        self.eval()
        try:
            results = []
            for k, seq in enumerate(sequences):
                if not seq:
                    raise InputError("empty sequence")
                full = [len(seq) if lengths is None else int(lengths[k])]
                out = self.forward([seq], full)
                if shrink:
                    out = self.shrink(out)
                d = self.head.distance_angstrom(out, self.normaliser)[0].float().cpu().numpy()
                v = self.head.variance_angstrom(out, self.normaliser)
                # the head made both exactly symmetric with a zero diagonal (its contract, checked by
                # distfold.testing.check_distance_head); here they only become non-negative float32
                d = np.maximum(d, 0.0).astype(np.float32)
                if v is not None:
                    v = np.maximum(v[0].float().cpu().numpy(), 0.0).astype(np.float32)
                res = {"distance": d, "variance": v}
                if out.get("ss_logits") is not None:
                    res["ss_probs"] = torch.softmax(out["ss_logits"][0].double(), -1).float().cpu().numpy()
                results.append(res)
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
                    _save_tensors(cast(self.backbone.trainable_state_dict()),
                                  str(tmp / "adapter" / "adapter_model.safetensors"))
            else:
                _save_tensors(cast(self.backbone.trainable_state_dict()), str(tmp / "backbone.safetensors"),
                              metadata={"format": "pt"})
            _save_tensors(cast(self.head.state_dict()), str(tmp / "head.safetensors"), metadata={"format": "pt"})
            if self.prior is not None:
                self.prior.save(tmp / "prior.json")
            try:
                (tmp / CONFIG_NAME).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
            except OSError as exc:
                raise _named(exc, tmp / CONFIG_NAME) from exc
            _follow_umask(tmp)  # mkdtemp makes 0700 and safetensors 0600; outputs get the user's usual modes
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
        except OSError as exc:  # a failed write names the file it was meant to become
            shutil.rmtree(tmp, ignore_errors=True)
            named = _in_place(exc, tmp, path)
            if named is exc:
                raise
            raise named from exc
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
        prior = SeparationPrior.load(model_file(path, config["prior"], "prior")) if config.get("prior") else None
        if config.get("shrinkage"):
            try:
                shrinkage_matrix(config["shrinkage"], 2)
            except (InputError, TypeError, ValueError) as exc:
                raise InputError(f"{path / CONFIG_NAME}: {exc}") from None
        pretrained = getattr(backbone, "is_pretrained", False)
        for name in weight_files(path, pretrained):
            check_tensor_file(path, name)
        try:
            if pretrained:
                backbone.load_adapter(path / "adapter")
            else:
                backbone.load_trainable_state_dict(_cast_like(load_file(str(path / "backbone.safetensors")),
                                                              backbone.trainable_state_dict()))
            head_sd = _cast_like(load_file(str(path / "head.safetensors")), head.state_dict())
            head.load_state_dict(head_sd)
        except FileNotFoundError as exc:
            raise InputError(f"{path}: incomplete model directory ({exc.filename or 'a weights file'} missing)") from None
        except RuntimeError as exc:  # SafetensorError is not one: check_tensor_file read every file's header
            raise InputError(f"{path}: weights do not fit the config ({str(exc).splitlines()[0]})") from None
        model = cls(backbone, head, normaliser, prior, config)
        model.to(device)
        model.eval()
        return model


def ss_label_indices(ss: str | None, length: int) -> np.ndarray:
    """(length,) int64 state index per residue of a dataset ``ss`` string (0, 1, 2 in
    ``SS_STATES`` order; -1 for ``-`` and for every residue when ``ss`` is None)."""
    out = np.full(length, -1, dtype=np.int64)
    if ss:
        codes = np.frombuffer(ss[:length].encode("ascii", "replace"), dtype=np.uint8)
        for k, state in enumerate(SS_STATES):
            out[:len(codes)][codes == ord(state)] = k
    return out


def shrinkage_matrix(spec: dict[str, Any], n: int) -> np.ndarray:
    """(n, n) float32 factor of each pair by its separation band (``"shrinkage"`` in config.json;
    1 for separations no band covers, 0 on the diagonal)."""
    bands, factors = spec.get("bands"), spec.get("factors")
    if not isinstance(bands, list) or not isinstance(factors, list) or len(bands) != len(factors):
        raise InputError("shrinkage needs 'bands' and 'factors' lists of one length")
    row = np.ones(n, dtype=np.float32)
    sep = np.arange(n)
    for (lo, hi), f in zip(bands, factors):
        f = float(f)
        if not 0.0 <= f <= 1.5:
            raise InputError(f"shrinkage factor {f} is outside 0..1.5")
        sel = (sep >= int(lo)) & (sep <= (n if hi is None else int(hi)))
        row[sel] = f
    row[0] = 0.0
    idx = np.abs(sep[:, None] - sep[None, :])
    return row[idx]


def weight_files(path: Path, pretrained: bool) -> list[str]:
    """The safetensors files a model directory must hold (relative paths): ``backbone.safetensors``,
    or, for a pretrained backbone, every one under ``adapter/`` (which must exist); and
    ``head.safetensors``."""
    if not pretrained:
        return ["backbone.safetensors", "head.safetensors"]
    if not (path / "adapter").is_dir():
        raise InputError(f"{path}: incomplete model directory (adapter/ missing)")
    return sorted(p.relative_to(path).as_posix() for p in (path / "adapter").rglob("*.safetensors")) + \
        ["head.safetensors"]


def model_file(path: Path, name: Any, key: str) -> Path:
    """``path / name`` for a file that ``config.json`` names under ``key``; a name that
    is not a plain relative path inside the model directory (absolute, ``..``) is an
    InputError, so that a config cannot make distfold open files elsewhere."""
    from pathlib import PurePosixPath, PureWindowsPath

    text = name if isinstance(name, str) else ""
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if (not text or PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive or ".." in parts
            or text.startswith(("\\", "~"))):
        raise InputError(f"{path / CONFIG_NAME}: {key} {name!r} must name a file inside the model directory")
    return path / text


def check_tensor_file(path: Path, name: str) -> None:
    """Raise a one-line InputError unless ``path / name`` is a whole safetensors file
    (its header read and its data length checked against the file, no tensor loaded)."""
    from safetensors import SafetensorError, safe_open

    file = path / name
    if not file.is_file():
        raise InputError(f"{path}: incomplete model directory ({name} missing)")
    try:
        with safe_open(str(file), "pt"):
            pass
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{file}: not a readable safetensors file ({_first_line(exc)}); "
                         "the file is damaged or cut short") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _save_tensors(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file; a failed write is an OSError naming the file (safetensors
    raises its own error, e.g. "No space left on device (os error 28)")."""
    import errno
    import re

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, filename, metadata=metadata)
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        n = int(code.group(1)) if code else errno.EIO
        raise OSError(n, os.strerror(n) if code else _first_line(exc), filename) from exc


def _named(exc: OSError, file: Path) -> OSError:
    from distfold.fileio import named_os_error

    return named_os_error(exc, file) or exc


def _in_place(exc: OSError, tmp: Path, path: Path) -> OSError:
    """``exc`` naming ``path / x`` instead of the temporary ``tmp / x`` it was written as."""
    try:
        rel = Path(os.fsdecode(exc.filename)).relative_to(tmp)
    except (TypeError, ValueError):
        return exc
    try:
        return type(exc)(exc.errno, exc.strerror, str(path / rel))
    except Exception:  # noqa: BLE001 - a subclass with its own constructor
        return OSError(exc.errno, exc.strerror, str(path / rel))


def _follow_umask(root: Path) -> None:
    """Give a freshly written tree the modes the user's umask asks for."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [root, *(root.rglob("*") if root.is_dir() else [])]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _cast_like(loaded: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cast stored tensors (e.g. fp16) to the dtype of the live ones."""
    out = {}
    for k, v in loaded.items():
        ref = reference.get(k)
        out[k] = v.to(ref.dtype) if ref is not None and v.is_floating_point() else v
    return out
