"""The floor plan holds: imports go one way, plugins stand alone, no cycles.

The import graph is read from the source (every ``import``, including the lazy
ones inside functions) under the installed names: ``core/`` is ``distfold``,
``cli/`` is ``distfold.cli`` and ``plugins/`` is ``distfold.plugins``. See
ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "distfold", "cli": "distfold.cli", "plugins": "distfold.plugins"}

#: Layer of each sub-package; a module may import only from its own layer or lower ones.
LAYERS = {
    "kernel": 0,
    "distfold.geometry": 1,
    "distfold.structure": 2,
    "distfold.data": 3,
    "distfold.pipeline": 4,
    "distfold.report": 5,
    "distfold.cli": 6,
    "distfold.__main__": 6,
}
#: The public conformance suite runs plugins and checks geometry; it may use no more.
TESTING_MAX_LAYER = LAYERS["distfold.geometry"]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    base = FOLDERS[parts[0]].split(".") + parts[1:]
    if base[-1] == "__init__":
        base = base[:-1]
    return ".".join(base)


def source_modules() -> dict[str, Path]:
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "build" in path.relative_to(ROOT).parts:
                continue
            out[module_name(path)] = path
    return out


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """distfold modules imported anywhere in the file (resolved to known module names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(mod: str) -> str | None:
        while mod and mod not in known:
            mod = mod.rpartition(".")[0]
        return mod or None

    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            if t == "distfold" or t.startswith("distfold."):
                r = resolve(t)
                if r and r != name:
                    found.add(r)
    return found


def graph() -> dict[str, set[str]]:
    mods = source_modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def layer(module: str) -> int | None:
    """Layer rank of a non-plugin module (None for plugins and distfold.testing)."""
    if module.startswith("distfold.plugins") or module == "distfold.testing":
        return None
    for prefix, rank in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if prefix != "kernel" and (module == prefix or module.startswith(prefix + ".")):
            return rank
    return LAYERS["kernel"]


def plugin_of(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:3]) if module.startswith("distfold.plugins.") else None


GRAPH = graph()


def test_the_graph_is_read():
    """The parser sees the imports it must (a guard against a test that cannot fail)."""
    assert "distfold.hookspecs" in GRAPH["distfold.registry"]
    assert any(m.startswith("distfold.pipeline") for m in GRAPH["distfold.cli.predict"])
    assert len(GRAPH) > 40


def test_imports_go_one_way():
    upward = []
    for mod, deps in GRAPH.items():
        mine = layer(mod)
        for dep in deps:
            theirs = layer(dep)
            if dep.startswith("distfold.plugins") and not mod.startswith("distfold.plugins"):
                upward.append(f"{mod} -> {dep} (the core imports a plugin)")
            elif mod == "distfold.testing":
                if theirs is None or theirs > TESTING_MAX_LAYER:
                    upward.append(f"{mod} -> {dep} (the conformance suite may use the kernel and geometry only)")
            elif mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{mod} -> {dep} (layer {mine} imports layer {theirs})")
    assert upward == []


def test_plugins_stand_alone():
    """A plugin imports the kernel, distfold.geometry and itself: never another plugin or a higher layer."""
    bad = []
    for mod, deps in GRAPH.items():
        own = plugin_of(mod)
        if own is None:
            continue
        for dep in deps:
            other = plugin_of(dep)
            if other is not None and other != own:
                bad.append(f"{mod} -> {dep} (another plugin)")
            elif other is None and dep != "distfold.plugins" and (layer(dep) or 0) > LAYERS["distfold.geometry"]:
                bad.append(f"{mod} -> {dep} (above the geometry layer)")
            elif dep == "distfold.testing":
                bad.append(f"{mod} -> {dep}")
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    # package __init__ modules re-exporting from their children are not cycles of substance
    g = {m: {d for d in deps if not (m.startswith(d + ".") or d.startswith(m + "."))} for m, deps in GRAPH.items()}
    assert _cycles(g) == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_cycle_finder(graph, expected):
    assert _cycles(graph) == expected


def test_layer_rule_catches_an_upward_import():
    assert layer("distfold.structure.metrics") < layer("distfold.pipeline.predict")
    assert layer("distfold.errors") == 0 and layer("distfold.testing") is None
