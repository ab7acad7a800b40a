"""Training checkpoints: a model directory plus the state needed to resume, pickle-free.

``MODEL_DIR/checkpoints/step-0000120/`` holds a complete model (see
:mod:`distfold.pipeline.model`) and

- ``training_state.safetensors``: optimizer tensors (``optimizer/<param index>/<name>``)
  and the torch RNG state (``rng/torch``);
- ``trainer_state.json``: step, samples seen, optimizer param groups and
  non-tensor state, scheduler state, the numpy sampler's bit-generator state,
  the training options, and the best validation score so far.

:func:`newest_checkpoint` finds the newest complete one; :func:`resumable_checkpoint`
the one ``--resume`` continues from: the newest that passes :func:`checkpoint_problem`
(every JSON file parses, every safetensors file is whole). Training sets damaged
newer ones aside as ``step-N.damaged`` (:func:`set_aside`), so that neither pruning
nor a later resume takes them for good ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from distfold.errors import InputError
from distfold.fileio import atomic_write
from distfold.serialise import jsonable

CHECKPOINT_DIR = "checkpoints"
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "trainer_state.json"
_STEP_RE = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def list_checkpoints(model_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``model_dir/checkpoints``, oldest first."""
    root = Path(model_dir) / CHECKPOINT_DIR
    out = []
    if root.is_dir():
        for p in root.iterdir():
            m = _STEP_RE.match(p.name)
            if m and (p / STATE_JSON).is_file() and (p / "config.json").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def newest_checkpoint(model_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(model_dir)
    return ckpts[-1][1] if ckpts else None


def checkpoint_problem(path: Path) -> str | None:
    """Why checkpoint ``path`` cannot be resumed from (one line), or None when it can.

    Reads the JSON files and the header of every safetensors file, and checks that
    each safetensors file holds all the bytes its header declares (a file cut short
    by a crash or a full disk fails here); no tensor is loaded.
    """
    from distfold.pipeline.model import DistanceModel, check_tensor_file, model_file, weight_files

    try:
        config = DistanceModel.read_config(path)
        doc = json.loads((path / STATE_JSON).read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("step"), int):
            return f"{STATE_JSON}: no step"
        pretrained = (path / "adapter").is_dir() and not (path / "backbone.safetensors").exists()
        for name in [*weight_files(path, pretrained), STATE_TENSORS]:
            check_tensor_file(path, name)
        if config.get("prior"):
            json.loads(model_file(path, config["prior"], "prior").read_text())
    except InputError as exc:
        return str(exc).replace(f"{path}/", "").replace(f"{path}: ", "")
    except json.JSONDecodeError as exc:
        return f"invalid JSON ({exc})"
    except (OSError, UnicodeDecodeError) as exc:
        from distfold.errors import message

        return message(exc)
    return None


def resumable_checkpoint(model_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest checkpoint under ``model_dir`` that :func:`checkpoint_problem` passes,
    [(newer damaged checkpoint, why), ...]); (None, []) when there is no checkpoint.
    Reads only. Raises InputError when checkpoints exist but none can be resumed from."""
    damaged: list[tuple[Path, str]] = []
    for _, path in reversed(list_checkpoints(model_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, damaged
        damaged.append((path, problem))
    if damaged:
        listed = "; ".join(f"{p.name}: {why}" for p, why in damaged)
        raise InputError(f"{Path(model_dir) / CHECKPOINT_DIR}: no checkpoint can be resumed from ({listed})")
    return None, []


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint ``step-N`` to ``step-N.damaged`` (``-2``, ... if taken), out
    of the way of pruning and of later resumes; returns the new path."""
    target = _free_name(path.with_name(path.name + ".damaged"))
    os.replace(path, target)
    return target


def _free_name(path: Path) -> Path:
    k = 2
    out = path
    while out.exists():
        out = path.with_name(f"{path.name}-{k}")
        k += 1
    return out


def prune_checkpoints(model_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(model_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def optimizer_state_to_flat(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in state_dict["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{idx}/{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = jsonable(state_dict["param_groups"])
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_state_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("optimizer/"):
            continue
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_training_state(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any, sampler_state: dict,
                        trainer: dict[str, Any]) -> None:
    """Write the resume state into checkpoint directory ``path`` (model files already there)."""
    from distfold.pipeline.model import _follow_umask, _save_tensors

    tensors, opt_meta = optimizer_state_to_flat(optimizer.state_dict())
    tensors["rng/torch"] = torch.get_rng_state().clone()
    _save_tensors(tensors, str(path / STATE_TENSORS), metadata={"format": "pt"})
    _follow_umask(path / STATE_TENSORS)  # safetensors writes 0600; outputs follow the umask
    sched = scheduler.state_dict()  # LambdaLR: lr_lambdas is [None] for plain functions
    doc = dict(trainer)
    doc.update({"optimizer": opt_meta, "scheduler": sched, "sampler_rng": sampler_state})
    with atomic_write(path / STATE_JSON) as fh:
        json.dump(jsonable(doc), fh, indent=2, sort_keys=True)


def load_training_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    from safetensors import SafetensorError

    try:
        tensors = load_file(str(path / STATE_TENSORS))
        doc = json.loads((path / STATE_JSON).read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path}: incomplete checkpoint ({Path(exc.filename or STATE_TENSORS).name} missing)") from None
    except SafetensorError as exc:
        raise InputError(f"{path / STATE_TENSORS}: not a readable safetensors file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path / STATE_JSON}: invalid JSON ({exc})") from None
    return tensors, doc
