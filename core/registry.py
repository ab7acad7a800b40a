"""The plugin manager and the name table of components.

Entry points of the ``distfold.plugins`` group are loaded one at a time; a
plugin whose import or hook raises is recorded (and warned about on stderr)
instead of taking the program down. Environment variables:

- ``DISTFOLD_PLUGINS``: comma-separated allow-list of plugin (entry-point)
  names; when set, only these load, built-ins included.
- ``DISTFOLD_DISABLE_PLUGINS``: comma-separated block-list of plugin names.
- ``DISTFOLD_STRICT_PLUGINS=1``: a plugin failure raises instead of warning.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from distfold import hookspecs
from distfold.errors import ComponentConflictError, PluginLoadError, UnknownComponentError
from distfold.hookspecs import ENTRY_POINT_GROUP, KINDS, ComponentSpec

ENV_ALLOW = "DISTFOLD_PLUGINS"
ENV_BLOCK = "DISTFOLD_DISABLE_PLUGINS"
ENV_STRICT = "DISTFOLD_STRICT_PLUGINS"


@dataclass(frozen=True)
class Component:
    """One component as the registry knows it."""

    kind: str
    spec: ComponentSpec
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def name(self) -> str:
        return self.spec.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.spec.summary,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
        }


@dataclass
class PluginFailure:
    plugin: str
    distribution: str | None
    stage: str  # "import" or the hook name
    error: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def message(self) -> str:
        return f"plugin {self.plugin!r} failed at {self.stage}: {self.error}"


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _strict() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Registry:
    """Components of every kind, with who provides them and what failed."""

    components: dict[str, list[Component]] = field(default_factory=lambda: {k: [] for k in KINDS})
    failures: list[PluginFailure] = field(default_factory=list)
    plugins: dict[str, str | None] = field(default_factory=dict)  # plugin -> distribution
    pm: pluggy.PluginManager | None = None

    # -- building -----------------------------------------------------------
    @classmethod
    def from_entry_points(cls, warn: bool = True) -> "Registry":
        reg = cls(pm=_new_plugin_manager())
        allow, block = _env_list(ENV_ALLOW), _env_list(ENV_BLOCK)
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allow is not None and ep.name not in allow:
                continue
            if block is not None and ep.name in block:
                continue
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            dist_version = dist.version if dist is not None else None
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take us down
                reg._fail(PluginFailure(ep.name, dist_name, "import", _one_line(exc)), warn)
                continue
            reg.add_plugin(module, ep.name, dist_name, dist_version, warn=warn)
        return reg

    def add_plugin(self, module: Any, name: str, distribution: str | None = None,
                   version: str | None = None, warn: bool = True) -> None:
        """Register a plugin object (module or instance) and collect its components."""
        assert self.pm is not None
        if name in self.plugins:
            self._fail(PluginFailure(name, distribution, "register", "a plugin of this name is already registered"), warn)
            return
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # noqa: BLE001
            self._fail(PluginFailure(name, distribution, "register", _one_line(exc)), warn)
            return
        self.plugins[name] = distribution
        for kind, hook_name in KINDS.items():
            impl = getattr(module, hook_name, None)
            if impl is None:
                continue
            try:
                specs = impl()
                specs = list(specs or [])
                for spec in specs:
                    if not isinstance(spec, ComponentSpec):
                        raise TypeError(f"{hook_name} returned {type(spec).__name__}, not ComponentSpec")
            except Exception as exc:  # noqa: BLE001
                self._fail(PluginFailure(name, distribution, hook_name, _one_line(exc)), warn)
                continue
            for spec in specs:
                self.components[kind].append(Component(kind, spec, name, distribution, version))

    def _fail(self, failure: PluginFailure, warn: bool) -> None:
        if _strict():
            raise PluginLoadError(failure.message())
        self.failures.append(failure)
        if warn:
            print(f"Warning: {failure.message()}", file=sys.stderr)

    # -- lookup -------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted({c.name for c in self.components[kind]})

    def conflicts(self) -> dict[str, dict[str, list[str]]]:
        """{kind: {name: [plugin, ...]}} for names provided more than once."""
        out: dict[str, dict[str, list[str]]] = {}
        for kind, comps in self.components.items():
            by_name: dict[str, list[str]] = {}
            for c in comps:
                by_name.setdefault(c.name, []).append(c.plugin)
            dup = {n: p for n, p in by_name.items() if len(p) > 1}
            if dup:
                out[kind] = dup
        return out

    def get(self, kind: str, name: str) -> Component:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        matches = [c for c in self.components[kind] if c.name == name]
        if not matches:
            available = self.names(kind)
            label = kind.replace("_", " ")
            msg = f"unknown {label} {name!r}; available: {', '.join(available) or '(none)'}"
            close = difflib.get_close_matches(name, available, n=1)
            if close:
                msg += f". Did you mean {close[0]!r}?"
            raise UnknownComponentError(msg)
        if len(matches) > 1:
            providers = ", ".join(
                f"{c.plugin} ({c.distribution or 'unknown distribution'})" for c in matches
            )
            raise ComponentConflictError(
                f"{kind.replace('_', ' ')} {name!r} is provided by several plugins: {providers}; "
                f"disable all but one with {ENV_BLOCK}"
            )
        return matches[0]

    def load(self, kind: str, name: str) -> Any:
        """The factory (usually a class) of a component."""
        return self.get(kind, name).spec.load()

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """An instance of a component, built from keyword parameters."""
        return self.load(kind, name)(**params)

    def all_components(self) -> Iterable[Component]:
        for kind in KINDS:
            yield from sorted(self.components[kind], key=lambda c: (c.name, c.plugin))


def _new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built from entry points on first use."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = Registry.from_entry_points()
    return _REGISTRY


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests; embedding applications)."""
    global _REGISTRY
    _REGISTRY = registry
