"""The plugin core: discovery, the name table, failures, allow/block lists."""

import json
import types

import pytest

from distfold import ComponentSpec, hookimpl
from distfold.errors import ComponentConflictError, PluginLoadError, UnknownComponentError
from distfold.hookspecs import KINDS
from distfold.registry import Registry, _new_plugin_manager

from conftest import run_distfold

BUILTIN_PLUGINS = {"mds_classical", "mds_smacof", "backbone_qwen", "distance_heads", "normalisers"}


def _plugin(**hooks):
    mod = types.SimpleNamespace()
    for name, specs in hooks.items():
        def impl(specs=specs):
            return specs
        setattr(mod, name, hookimpl(specname=name)(impl))
    return mod


def _registry(*plugins):
    reg = Registry(pm=_new_plugin_manager())
    for i, p in enumerate(plugins):
        reg.add_plugin(p, f"p{i}", f"dist-{i}", "1.0", warn=False)
    return reg


def test_every_builtin_plugin_is_discovered_through_entry_points():
    reg = Registry.from_entry_points(warn=False)
    assert BUILTIN_PLUGINS <= set(reg.plugins), set(reg.plugins)
    assert all(reg.plugins[p] == "distfold" for p in BUILTIN_PLUGINS)
    assert not [f for f in reg.failures if f.plugin in BUILTIN_PLUGINS]
    assert {"classical", "smacof", "refine"} <= set(reg.names("reconstructor"))
    assert "qwen" in reg.names("backbone")


def test_specs_are_loaded_lazily_and_resolve():
    reg = Registry.from_entry_points(warn=False)
    for comp in reg.all_components():
        assert isinstance(comp.spec, ComponentSpec)
        assert comp.name == comp.name.lower()
        assert comp.spec.summary and "\n" not in comp.spec.summary
        assert callable(comp.spec.load())


def test_unknown_name_lists_available_and_suggests_closest():
    reg = _registry(_plugin(distfold_reconstructors=[ComponentSpec("smacof", "x:y", "s"),
                                                     ComponentSpec("classical", "x:y", "c")]))
    with pytest.raises(UnknownComponentError) as err:
        reg.get("reconstructor", "smacf")
    msg = str(err.value)
    assert "classical, smacof" in msg and "Did you mean 'smacof'" in msg


def test_duplicate_name_is_an_error_naming_every_provider():
    a = _plugin(distfold_normalisers=[ComponentSpec("dup", "x:y", "one")])
    b = _plugin(distfold_normalisers=[ComponentSpec("dup", "x:y", "two")])
    reg = _registry(a, b)
    assert reg.conflicts() == {"normaliser": {"dup": ["p0", "p1"]}}
    with pytest.raises(ComponentConflictError) as err:
        reg.get("normaliser", "dup")
    assert "p0 (dist-0)" in str(err.value) and "p1 (dist-1)" in str(err.value)


def test_a_raising_hook_is_recorded_and_others_survive():
    def boom():
        raise RuntimeError("hook exploded")

    bad = types.SimpleNamespace(distfold_reconstructors=hookimpl(specname="distfold_reconstructors")(boom))
    good = _plugin(distfold_reconstructors=[ComponentSpec("ok", "x:y", "fine")])
    reg = _registry(bad, good)
    assert reg.names("reconstructor") == ["ok"]
    assert reg.failures and "hook exploded" in reg.failures[0].error


def test_spec_validation():
    with pytest.raises(ValueError):
        ComponentSpec("Upper", "x:y", "s")
    with pytest.raises(ValueError):
        ComponentSpec("name", "no_colon", "s")


def test_every_hook_spec_is_documented():
    from distfold import hookspecs

    for kind, hook in KINDS.items():
        doc = getattr(hookspecs, hook).__doc__
        assert doc and "Contract" in doc, hook


BROKEN = "raise ImportError('this plugin is broken on purpose')\n"


def test_broken_plugin_warns_and_cli_keeps_working(fake_plugin):
    site = fake_plugin("distfold-broken", "broken", "distfold_broken_mod", BROKEN)
    res = run_distfold("plugins", "--json", pythonpath=site)
    assert res.returncode == 0, res.stderr
    assert "Warning: plugin 'broken' failed at import" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    data = json.loads(res.stdout)
    assert data["failures"][0]["plugin"] == "broken"
    assert data["failures"][0]["distribution"] == "distfold-broken"
    assert {"classical", "smacof"} <= {c["name"] for c in data["components"]}


def test_strict_mode_makes_plugin_failures_fatal(fake_plugin):
    site = fake_plugin("distfold-broken", "broken", "distfold_broken_mod", BROKEN)
    res = run_distfold("plugins", env={"DISTFOLD_STRICT_PLUGINS": "1"}, pythonpath=site)
    assert res.returncode == 1
    assert res.stderr.startswith("Error: plugin 'broken' failed at import")
    assert "Traceback" not in res.stderr


def test_block_and_allow_lists_cover_builtins(monkeypatch):
    monkeypatch.setenv("DISTFOLD_DISABLE_PLUGINS", "mds_smacof")
    reg = Registry.from_entry_points(warn=False)
    assert "smacof" not in reg.names("reconstructor") and "classical" in reg.names("reconstructor")
    monkeypatch.delenv("DISTFOLD_DISABLE_PLUGINS")
    monkeypatch.setenv("DISTFOLD_PLUGINS", "mds_classical")
    reg = Registry.from_entry_points(warn=False)
    assert set(reg.plugins) == {"mds_classical"}


def test_strict_mode_raises_in_api(monkeypatch):
    monkeypatch.setenv("DISTFOLD_STRICT_PLUGINS", "1")

    def boom():
        raise RuntimeError("no")

    bad = types.SimpleNamespace(distfold_backbones=hookimpl(specname="distfold_backbones")(boom))
    with pytest.raises(PluginLoadError):
        _registry(bad)


def test_conflict_shown_by_plugins_command(fake_plugin):
    src = ("from distfold import ComponentSpec, hookimpl\n"
           "@hookimpl\n"
           "def distfold_reconstructors():\n"
           "    return [ComponentSpec('smacof', 'os:getcwd', 'an impostor')]\n")
    site = fake_plugin("distfold-dup", "dup", "distfold_dup_mod", src)
    res = run_distfold("plugins", pythonpath=site)
    assert res.returncode == 0
    assert "Name conflicts" in res.stdout and "'smacof': dup, mds_smacof" in res.stdout
