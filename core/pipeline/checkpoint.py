"""Training checkpoints: a model directory plus the state needed to resume, pickle-free.

``MODEL_DIR/checkpoints/step-0000120/`` holds a complete model (see
:mod:`distfold.pipeline.model`) and

- ``training_state.safetensors``: optimizer tensors (``optimizer/<param index>/<name>``)
  and the torch RNG state (``rng/torch``);
- ``trainer_state.json``: step, samples seen, optimizer param groups and
  non-tensor state, scheduler state, the numpy sampler's bit-generator state,
  the training options, and the best validation score so far.

:func:`newest_checkpoint` finds the one ``--resume`` continues from.
"""

from __future__ import annotations

import json
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
    from safetensors.torch import save_file

    tensors, opt_meta = optimizer_state_to_flat(optimizer.state_dict())
    tensors["rng/torch"] = torch.get_rng_state().clone()
    save_file(tensors, str(path / STATE_TENSORS), metadata={"format": "pt"})
    sched = scheduler.state_dict()  # LambdaLR: lr_lambdas is [None] for plain functions
    doc = dict(trainer)
    doc.update({"optimizer": opt_meta, "scheduler": sched, "sampler_rng": sampler_state})
    with atomic_write(path / STATE_JSON) as fh:
        json.dump(jsonable(doc), fh, indent=2, sort_keys=True)


def load_training_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path / STATE_TENSORS))
        doc = json.loads((path / STATE_JSON).read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path}: incomplete checkpoint ({exc.filename} missing)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path / STATE_JSON}: invalid JSON ({exc})") from None
    return tensors, doc
