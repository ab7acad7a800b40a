"""Installed trained models: ``--model NAME|DIR``, ``--backbone/--head/--normaliser``, ``distfold models``.

Plugins provide trained models through the ``distfold_models`` hook
(:class:`distfold.hookspecs.ModelSpec`); distfold's own shipped model is one of
them (plugin ``default_model``, name ``default``). This module turns what the
user typed into a checkpoint directory, and describes installed models, without
importing torch: it reads ``config.json`` and the safetensors headers only.

**Which model** ``distfold predict`` uses (:func:`select_model`):

1. ``--model`` given: a folder or an installed model's name. A value with a path
   separator, or starting with ``.`` or ``~``, is always a folder; otherwise an
   installed model of that name, or else a folder of that name. A bare name that is
   both is an error (write ``./NAME`` for the folder). ``--backbone``, ``--head``
   and ``--normaliser``, when also given, must name the model's own components
   (its ``config.json``), or it is an error saying what the model is built from.
2. No ``--model`` but ``--backbone`` (and/or ``--head``, ``--normaliser``): the
   installed models whose spec names those components. One: that one. Several: the
   one among them whose spec says ``default=True``; none or more than one marked
   default is an error listing them (choose with ``--model NAME``). None: an error
   listing the installed models and what they are built on.
3. Neither: the shipped model (``core/default_model``), as before.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from distfold.errors import DistfoldError, InputError, UsageError, message

CONFIG_NAME = "config.json"
#: ``--backbone`` etc. -> the key of ``config.json``'s ``components``.
COMPONENT_OPTIONS = {"backbone": "backbone", "head": "distance_head", "normaliser": "normaliser"}
#: Validation numbers ``distfold models`` shows, from ``config.json``'s ``training.val``.
VAL_KEYS = ("lddt", "mae", "rmse", "prior_lddt", "prior_mae", "step")


def _registry(registry: Any = None) -> Any:
    if registry is not None:
        return registry
    from distfold.registry import get_registry

    return get_registry()


# -- reading a checkpoint without torch -------------------------------------------------

def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of the model directory ``path`` (a one-line :class:`InputError`
    when the folder is missing, is not a model directory, or the JSON is broken)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model not found (a checkpoint directory written by `distfold train`)")
    if not path.is_dir():
        raise InputError(f"{path}: a model is a checkpoint directory, not a file")
    cfg = path / CONFIG_NAME
    if not cfg.is_file():
        raise InputError(f"{path}: not a distfold model directory (no {CONFIG_NAME})")
    try:
        config = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{cfg}: invalid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{cfg}: not a distfold model config")
    return config


def component_names(config: dict[str, Any]) -> dict[str, str | None]:
    """``{"backbone": ..., "distance_head": ..., "normaliser": ...}`` named by a model config."""
    comps = config.get("components") or {}
    out: dict[str, str | None] = {}
    for kind in ("backbone", "distance_head", "normaliser"):
        entry = comps.get(kind)
        out[kind] = entry.get("name") if isinstance(entry, dict) else None
    return out


def safetensors_numel(path: str | os.PathLike) -> int:
    """Number of elements stored in a ``.safetensors`` file (its JSON header only)."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    total = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in info.get("shape", []):
            count *= int(dim)
        total += count
    return total


def model_files(path: Path) -> list[Path]:
    """The files that make up the model in ``path`` (not ``checkpoints/`` or ``best/`` of a run)."""
    files = [f for f in sorted(path.iterdir()) if f.is_file()]
    adapter = path / "adapter"
    if adapter.is_dir():
        files += [f for f in sorted(adapter.rglob("*")) if f.is_file()]
    return files


def model_facts(path: str | os.PathLike) -> dict[str, Any]:
    """What ``distfold models`` shows of a checkpoint directory: its components,
    stored (trained) parameters, size on disk, base model, crop and validation numbers."""
    path = Path(path)
    config = read_config(path)
    files = model_files(path)
    tensors = [f for f in files if f.suffix == ".safetensors"]
    try:
        params: int | None = sum(safetensors_numel(f) for f in tensors) if tensors else None
    except (OSError, ValueError, struct.error):
        params = None
    val = ((config.get("training") or {}).get("val") or {})
    return {
        "path": str(path),
        "components": component_names(config),
        "parameters": params,
        "size_bytes": sum(f.stat().st_size for f in files),
        "base_model": config.get("base_model"),
        "crop": config.get("crop"),
        "distfold_version": config.get("distfold_version"),
        "val": {k: val[k] for k in VAL_KEYS if k in val},
    }


# -- choosing a model ---------------------------------------------------------------------

def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.startswith((".", "~")) or os.path.isabs(value)


def model_location(installed: Any) -> Path:
    """The checkpoint directory of an installed model (its loader runs now), checked to exist."""
    try:
        path = installed.spec.location()
    except Exception as exc:  # noqa: BLE001 - a plugin's loader may fail in any way
        raise DistfoldError(f"{installed.describe()}: cannot locate its weights: {message(exc)}") from None
    if not (path / CONFIG_NAME).is_file():
        raise DistfoldError(f"{installed.describe()}: {path} is not a model directory (no {CONFIG_NAME}); "
                            f"reinstall {installed.distribution or 'the plugin'}")
    return path


def resolve_model(value: str, registry: Any = None) -> tuple[Path, Any]:
    """``(directory, installed model or None)`` for what ``--model`` was given: a folder
    or an installed model's name (rule 1 of the module docstring)."""
    value = str(value)
    if _looks_like_path(value):
        return Path(value).expanduser(), None
    reg = _registry(registry)
    named = [m for m in reg.models if m.name == value]
    folder = Path(value)
    if named and folder.exists():
        raise UsageError(f"--model {value}: both an installed model and a folder of that name; write "
                         f"./{value} for the folder")
    if named:
        installed = reg.get_model(value)  # a name two plugins provide: an error naming both
        return model_location(installed), installed
    if folder.exists():
        return folder, None
    raise InputError(f"--model {value}: no such folder, and no installed model of that name; installed models: "
                     f"{', '.join(reg.model_names()) or '(none)'} (see `distfold models`)")


def _wanted(backbone: str | None, head: str | None, normaliser: str | None) -> dict[str, str]:
    given = {"backbone": backbone, "distance_head": head, "normaliser": normaliser}
    # NAME@PROVIDER chooses among plugins that share a name; a model records the name alone
    return {k: str(v).strip().lower().partition("@")[0] for k, v in given.items() if v is not None}


def _built_from(names: dict[str, Any]) -> str:
    return (f"backbone {names.get('backbone')}, head {names.get('distance_head')}, "
            f"normaliser {names.get('normaliser')}")


def _option(kind: str) -> str:
    return "--head" if kind == "distance_head" else f"--{kind}"


def check_components(path: Path, wanted: dict[str, str], what: str) -> None:
    """A :class:`UsageError` unless the model in ``path`` is built from ``wanted``'s components."""
    if not wanted:
        return
    names = component_names(read_config(path))
    bad = [f"{_option(k)} {v}" for k, v in wanted.items() if names.get(k) != v]
    if bad:
        raise UsageError(f"{' '.join(bad)} does not match {what}, which is built from {_built_from(names)}; "
                         f"drop the option or choose another model")


def select_model(model: str | None = None, backbone: str | None = None, head: str | None = None,
                 normaliser: str | None = None, registry: Any = None) -> Path | None:
    """The checkpoint directory ``distfold predict`` should load, or None for the
    shipped model (the rule is in the module docstring)."""
    wanted = _wanted(backbone, head, normaliser)
    if model is not None:
        path, installed = resolve_model(model, registry)
        check_components(path, wanted, f"model {installed.name!r}" if installed is not None else f"the model in {path}")
        return path
    if not wanted:
        return None
    reg = _registry(registry)
    everything = reg.all_models()
    candidates = [m for m in everything
                  if all(getattr(m.spec, k) == v for k, v in wanted.items())]
    asked = " ".join(f"{_option(k)} {v}" for k, v in wanted.items())
    if not candidates:
        listing = "; ".join(f"{m.name} ({_built_from(vars(m.spec))})" for m in everything) or "none"
        raise UsageError(f"{asked}: no installed model is built from that; installed models: {listing}. "
                         f"Train one (distfold train DATA --backbone ...) and pass --model DIR")
    if len(candidates) > 1:
        defaults = [m for m in candidates if m.spec.default]
        if len(defaults) != 1:
            names = ", ".join(f"{m.name}{' (default)' if m.spec.default else ''} [{m.plugin}]" for m in candidates)
            why = "none is marked default" if not defaults else "several are marked default"
            raise UsageError(f"{asked}: {len(candidates)} installed models fit ({names}) and {why}; "
                             f"choose one with --model NAME")
        candidates = defaults
    chosen = candidates[0]
    if len([m for m in everything if m.name == chosen.name]) > 1:
        reg.get_model(chosen.name)  # raises the conflict naming every provider
    path = model_location(chosen)
    names = component_names(read_config(path))
    spec_names = {k: getattr(chosen.spec, k) for k in ("backbone", "distance_head", "normaliser")}
    if names != spec_names:
        raise DistfoldError(f"{chosen.describe()}: its spec says {_built_from(spec_names)} but {path / CONFIG_NAME} "
                            f"says {_built_from(names)}")
    return path


# -- listing ------------------------------------------------------------------------------

def describe_models(registry: Any = None) -> list[dict[str, Any]]:
    """One dict per installed model (``distfold models``): the spec, who provides it and
    :func:`model_facts`; ``problems`` lists what would stop it from loading (its folder
    missing, its config disagreeing with its spec, a component not installed, its name
    provided twice)."""
    reg = _registry(registry)
    conflicts = reg.model_conflicts()
    out = []
    for m in reg.all_models():
        row = m.as_dict()
        problems: list[str] = []
        if m.name in conflicts:
            problems.append(f"name also provided by {', '.join(p for p in conflicts[m.name] if p != m.plugin)}")
        try:
            path = model_location(m)
            facts = model_facts(path)
            card = m.spec.data_card_path(path)
            row["data_card"] = str(card) if card is not None and card.is_file() else None
            row.update(facts)
            spec_names = {k: getattr(m.spec, k) for k in ("backbone", "distance_head", "normaliser")}
            if facts["components"] != spec_names:
                problems.append(f"config.json says {_built_from(facts['components'])}")
        except DistfoldError as exc:
            row.update(path=None, components=None, parameters=None, size_bytes=None, val={}, data_card=None)
            problems.append(message(exc))
        for kind in ("backbone", "distance_head", "normaliser"):
            name = getattr(m.spec, kind)
            if name not in reg.names(kind):
                problems.append(f"{kind.replace('_', ' ')} {name!r} is not installed")
        row["problems"] = problems
        out.append(row)
    return out


def installed_model(name: str, registry: Any = None) -> Any:
    """The installed model ``name`` (unknown: :class:`UsageError` listing the installed ones)."""
    from distfold.errors import UnknownComponentError

    try:
        return _registry(registry).get_model(name)
    except UnknownComponentError as exc:
        raise UsageError(str(exc)) from None
