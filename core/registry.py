"""The plugin manager and the name table of components.

Entry points of the ``distfold.plugins`` group are loaded one at a time and
registered with a pluggy :class:`~pluggy.PluginManager`; their hooks are called
through it (``pm.hook.distfold_reconstructors``), one plugin at a time. A plugin
fails, and is recorded (and warned about on stderr) instead of taking the
program down, when

- its module does not import (stage ``import``);
- pluggy refuses it, or it has a ``@hookimpl`` function that matches no hook
  spec, e.g. a misspelled ``distfold_reconstructorz`` (``pm.check_pending()``;
  stage ``register``; the plugin is unregistered and provides nothing);
- it defines a function named like a hook but not marked ``@hookimpl`` (stage:
  the hook name; the function is not collected);
- a hook raises or returns something other than a list of
  :class:`~distfold.hookspecs.ComponentSpec` (stage: the hook name; that hook's
  components are dropped).

Trained models arrive the same way, through the ``distfold_models`` hook
(:class:`~distfold.hookspecs.ModelSpec`): :attr:`Registry.models` lists them,
:meth:`Registry.get_model` looks one up by name (an unknown name lists the
installed ones, a name two plugins provide is an error naming both).

:meth:`Registry.create` imports a component's factory on first use (a factory
that does not import is a one-line :class:`~distfold.errors.PluginLoadError`
naming the plugin) and checks the instance against its kind's protocol
(:mod:`distfold.protocols`).

Two plugins may provide a component under the same name. The rule, which keeps
the defaults working when a third-party plugin also registers, say, ``smacof``:

- a name that one plugin provides is that plugin's;
- a name that several provide is the **built-in's** (distribution ``distfold``),
  so ``distfold predict`` keeps meaning what it meant; ``distfold plugins`` lists
  the others as shadowed;
- ``NAME@WHO`` chooses a provider, WHO being its distribution or plugin
  (entry-point) name, e.g. ``--reconstruct smacof@distfold-fastsmacof``; a model's
  ``config.json`` records each component's distribution, and loading the model
  prefers that provider when it is installed;
- several providers and no built-in among them is an error naming them all
  (:class:`~distfold.errors.ComponentConflictError`): choose with ``NAME@WHO`` or
  disable all but one with ``DISTFOLD_DISABLE_PLUGINS``.

Environment variables:

- ``DISTFOLD_PLUGINS``: comma-separated allow-list of plugin (entry-point)
  names; when set, only these load, built-ins included.
- ``DISTFOLD_DISABLE_PLUGINS``: comma-separated block-list of plugin names.
- ``DISTFOLD_STRICT_PLUGINS=1``: a plugin failure raises instead of warning.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from distfold import hookspecs
from distfold.errors import ComponentConflictError, PluginLoadError, UnknownComponentError, message
from distfold.hookspecs import ENTRY_POINT_GROUP, HOOK_NAMES, KINDS, MODEL_HOOK, ComponentSpec, ModelSpec

ENV_ALLOW = "DISTFOLD_PLUGINS"
ENV_BLOCK = "DISTFOLD_DISABLE_PLUGINS"
ENV_STRICT = "DISTFOLD_STRICT_PLUGINS"
#: The distribution whose components win a name that several plugins provide.
BUILTIN_DISTRIBUTION = "distfold"


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

    def describe(self) -> str:
        """``reconstructor 'smacof' (plugin 'mds_smacof', distribution distfold)``."""
        return (f"{self.kind.replace('_', ' ')} {self.name!r} (plugin {self.plugin!r}, "
                f"distribution {self.distribution or 'unknown'})")


@dataclass(frozen=True)
class InstalledModel:
    """One trained model as the registry knows it (hook ``distfold_models``)."""

    spec: ModelSpec
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def name(self) -> str:
        return self.spec.name

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "summary": s.summary, "backbone": s.backbone, "distance_head": s.distance_head,
                "normaliser": s.normaliser, "default": s.default, "plugin": self.plugin,
                "distribution": self.distribution, "version": self.version}

    def describe(self) -> str:
        """``model 'default' (plugin 'default_model', distribution distfold)``."""
        return f"model {self.name!r} (plugin {self.plugin!r}, distribution {self.distribution or 'unknown'})"


@dataclass
class PluginFailure:
    plugin: str
    distribution: str | None
    stage: str  # "import", "register" or the hook name
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


@dataclass
class Registry:
    """Components of every kind, with who provides them and what failed."""

    components: dict[str, list[Component]] = field(default_factory=lambda: {k: [] for k in KINDS})
    models: list[InstalledModel] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    plugins: dict[str, str | None] = field(default_factory=dict)  # plugin -> distribution
    pm: pluggy.PluginManager = field(default_factory=lambda: _new_plugin_manager())

    # -- building -----------------------------------------------------------
    @classmethod
    def from_entry_points(cls, warn: bool = True) -> "Registry":
        reg = cls()
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
                reg._fail(PluginFailure(ep.name, dist_name, "import", message(exc)), warn)
                continue
            reg.add_plugin(module, ep.name, dist_name, dist_version, warn=warn)
        return reg

    def add_plugin(self, module: Any, name: str, distribution: str | None = None,
                   version: str | None = None, warn: bool = True) -> None:
        """Register a plugin object (a module, or a hashable instance) and collect its components.

        Only functions marked with :data:`distfold.hookimpl` are hooks. The plugin's
        hooks are called through pluggy without the other plugins'
        (``pm.subset_hook_caller``), so that one plugin's failure costs only that
        plugin's components.
        """
        if name in self.plugins:
            self._fail(PluginFailure(name, distribution, "register", "a plugin of this name is already registered"), warn)
            return
        try:
            hash(module)  # pluggy's subset_hook_caller keeps plugins in a set
            self.pm.register(module, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy's PluginValidationError, ValueError
            self._fail(PluginFailure(name, distribution, "register", message(exc)), warn)
            return
        unknown = self._unknown_hooks(module)
        if unknown:
            self.pm.unregister(module, name=name)
            self._fail(PluginFailure(name, distribution, "register", unknown), warn)
            return
        self.plugins[name] = distribution
        for hook_name in self._unmarked_hooks(module):
            self._fail(PluginFailure(name, distribution, hook_name,
                                     "a function of this name is not marked with @hookimpl "
                                     "(from distfold import hookimpl); it was ignored"), warn)
        for kind, hook_name in KINDS.items():
            caller = self._caller(module, hook_name)
            if caller is None:
                continue
            try:
                specs = [spec for result in caller() for spec in _as_specs(result, hook_name)]
            except Exception as exc:  # noqa: BLE001 - a raising hook must not take us down
                self._fail(PluginFailure(name, distribution, hook_name, message(exc)), warn)
                continue
            for spec in specs:
                self.components[kind].append(Component(kind, spec, name, distribution, version))
        caller = self._caller(module, MODEL_HOOK)
        if caller is not None:
            try:
                models = [spec for result in caller() for spec in _as_specs(result, MODEL_HOOK, ModelSpec)]
            except Exception as exc:  # noqa: BLE001 - a raising hook must not take us down
                self._fail(PluginFailure(name, distribution, MODEL_HOOK, message(exc)), warn)
            else:
                self.models.extend(InstalledModel(spec, name, distribution, version) for spec in models)

    def _unknown_hooks(self, module: Any) -> str | None:
        """pluggy's ``check_pending()``: a ``@hookimpl`` whose name matches no hook spec
        (with the closest spec name), or None. Only ``module`` can be pending, since
        every plugin is checked as it is registered."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            pass
        else:
            return None
        names = sorted(caller.name for caller in self.pm.get_hookcallers(module) or []
                       if not caller.has_spec())
        out = []
        for hook_name in names:
            close = difflib.get_close_matches(hook_name, list(HOOK_NAMES), n=1)
            out.append(f"unknown hook {hook_name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return "; ".join(out) or "a hook implementation matches no hook spec"

    @staticmethod
    def _unmarked_hooks(module: Any) -> list[str]:
        """Hook names that ``module`` defines as plain functions, without ``@hookimpl``."""
        out = []
        for hook_name in HOOK_NAMES:
            try:
                obj = inspect.getattr_static(module, hook_name)
            except AttributeError:
                continue
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
            if inspect.isfunction(obj) and not hasattr(obj, f"{hookspecs.PROJECT}_impl"):
                out.append(hook_name)
        return out

    def _caller(self, module: Any, hook_name: str) -> pluggy.HookCaller | None:
        """The hook ``hook_name`` restricted to ``module``'s implementations, or None."""
        hook = getattr(self.pm.hook, hook_name)
        if not any(impl.plugin is module for impl in hook.get_hookimpls()):
            return None
        others = [p for p in self.pm.get_plugins() if p is not module]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)

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

    def get(self, kind: str, name: str, distribution: str | None = None) -> Component:
        """The component of ``kind`` called ``name`` (the module docstring says who wins a
        name that several plugins provide). ``name`` may be ``NAME@WHO``, WHO a distribution
        or plugin name; ``distribution`` prefers that distribution's provider when installed."""
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        who = None
        if isinstance(name, str) and "@" in name and name not in self.names(kind):
            name, _, who = name.rpartition("@")
        matches = [c for c in self.components[kind] if c.name == name]
        if matches and who is not None:
            chosen = [c for c in matches if _same(who, c.distribution) or _same(who, c.plugin)]
            if not chosen:
                raise UnknownComponentError(
                    f"{kind.replace('_', ' ')} {name!r} is not provided by {who!r}; providers: {_providers(matches)}")
            matches = chosen
        elif len(matches) > 1 and distribution is not None:
            matches = [c for c in matches if _same(distribution, c.distribution)] or matches
        if len(matches) > 1 and who is None:
            builtin = [c for c in matches if _same(BUILTIN_DISTRIBUTION, c.distribution)]
            if len(builtin) == 1:
                return builtin[0]
        if not matches:
            available = self.names(kind)
            label = kind.replace("_", " ")
            msg = f"unknown {label} {name!r}; available: {', '.join(available) or '(none)'}"
            close = difflib.get_close_matches(name, available, n=1)
            if close:
                msg += f". Did you mean {close[0]!r}?"
            raise UnknownComponentError(msg)
        if len(matches) > 1:
            raise ComponentConflictError(
                f"{kind.replace('_', ' ')} {name!r} is provided by several plugins: {_providers(matches)}; "
                f"choose one as {name}@DISTRIBUTION, or disable all but one with {ENV_BLOCK}"
            )
        return matches[0]

    def shadowed(self) -> dict[str, dict[str, tuple[str, list[str]]]]:
        """{kind: {name: (plugin that wins, [plugins it shadows])}} for the names of
        :meth:`conflicts` that the built-in wins; the rest are errors when used."""
        out: dict[str, dict[str, tuple[str, list[str]]]] = {}
        for kind, names in self.conflicts().items():
            for name, plugins in names.items():
                try:
                    winner = self.get(kind, name).plugin
                except ComponentConflictError:
                    continue
                out.setdefault(kind, {})[name] = (winner, [p for p in plugins if p != winner])
        return out

    def load(self, kind: str, name: str, distribution: str | None = None) -> Any:
        """The factory (usually a class) of a component, imported now (``name`` and
        ``distribution`` as for :meth:`get`).

        A factory that does not import is a one-line :class:`PluginLoadError` that
        names the component, its plugin and distribution.
        """
        comp = self.get(kind, name, distribution)
        try:
            return comp.spec.load()
        except Exception as exc:  # noqa: BLE001 - any import-time failure of the plugin's module
            factory = comp.spec.factory if isinstance(comp.spec.factory, str) else repr(comp.spec.factory)
            raise PluginLoadError(f"{comp.describe()}: cannot load {factory}: {message(exc)}") from exc

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """An instance of a component, built from keyword parameters and checked
        against its kind's protocol (:func:`distfold.protocols.contract_problems`).

        A component that does not follow the protocol (say, a reconstructor without
        ``accepts_weights``) is a one-line :class:`PluginLoadError` naming its plugin.
        Errors of the constructor itself (bad parameters) pass through unchanged.
        """
        from distfold.protocols import contract_problems

        instance = self.load(kind, name)(**params)
        problems = contract_problems(instance, kind)
        if problems:
            raise PluginLoadError(f"{self.get(kind, name).describe()} does not follow the "
                                  f"{kind.replace('_', ' ')} protocol: {'; '.join(problems)}")
        return instance

    def all_components(self) -> Iterable[Component]:
        for kind in KINDS:
            yield from sorted(self.components[kind], key=lambda c: (c.name, c.plugin))

    # -- trained models -------------------------------------------------------
    def model_names(self) -> list[str]:
        return sorted({m.name for m in self.models})

    def all_models(self) -> list[InstalledModel]:
        return sorted(self.models, key=lambda m: (m.name, m.plugin))

    def model_conflicts(self) -> dict[str, list[str]]:
        """{name: [plugin, ...]} for model names provided more than once."""
        by_name: dict[str, list[str]] = {}
        for m in self.models:
            by_name.setdefault(m.name, []).append(m.plugin)
        return {n: p for n, p in by_name.items() if len(p) > 1}

    def get_model(self, name: str) -> InstalledModel:
        """The installed model called ``name``; an unknown name is an
        :class:`UnknownComponentError` listing the installed ones, a name several
        plugins provide a :class:`ComponentConflictError` naming them."""
        matches = [m for m in self.models if m.name == name]
        if not matches:
            available = self.model_names()
            msg = f"no installed model {name!r}; installed: {', '.join(available) or '(none)'}"
            close = difflib.get_close_matches(name, available, n=1)
            if close:
                msg += f". Did you mean {close[0]!r}?"
            raise UnknownComponentError(msg)
        if len(matches) > 1:
            providers = ", ".join(f"{m.plugin} ({m.distribution or 'unknown distribution'})" for m in matches)
            raise ComponentConflictError(f"model {name!r} is provided by several plugins: {providers}; "
                                         f"disable all but one with {ENV_BLOCK}")
        return matches[0]


def _same(a: str | None, b: str | None) -> bool:
    """Distribution or plugin names equal up to case and runs of ``-``, ``_``, ``.`` (PEP 503)."""
    if a is None or b is None:
        return False
    import re

    return re.sub(r"[-_.]+", "-", a).lower() == re.sub(r"[-_.]+", "-", b).lower()


def _providers(matches: list[Component]) -> str:
    return ", ".join(f"{c.plugin} ({c.distribution or 'unknown distribution'})" for c in matches)


def _as_specs(result: Any, hook_name: str, spec_type: type = ComponentSpec) -> list[Any]:
    """One hook implementation's return value, checked: a list of ``spec_type``
    (:class:`ComponentSpec`, or :class:`ModelSpec` for the models hook)."""
    specs = list(result or [])
    for spec in specs:
        if not isinstance(spec, spec_type):
            raise TypeError(f"{hook_name} returned {type(spec).__name__}, not {spec_type.__name__}")
    return specs


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
