"""The plugin core: discovery, the name table, failures, allow/block lists."""

import json
import types

import pytest

from distfold import ComponentSpec, hookimpl
from distfold.errors import ComponentConflictError, PluginLoadError, UnknownComponentError
from distfold.hookspecs import KINDS
from distfold.registry import Registry

from conftest import run_distfold

BUILTIN_PLUGINS = {"mds_classical", "mds_smacof", "backbone_qwen", "distance_heads", "normalisers"}


def _module(**attrs):
    """A plugin as entry points give them: a module object."""
    mod = types.ModuleType("fake_plugin")
    for name, value in attrs.items():
        setattr(mod, name, value)
    return mod


def _plugin(**hooks):
    mod = _module()
    for name, specs in hooks.items():
        def impl(specs=specs):
            return specs
        setattr(mod, name, hookimpl(specname=name)(impl))
    return mod


@pytest.fixture
def registry():
    """A fresh registry with its own plugin manager and nothing loaded (no entry points)."""
    return Registry()


def _registry(*plugins):
    reg = Registry()
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

    bad = _module(distfold_reconstructors=hookimpl(specname="distfold_reconstructors")(boom))
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

    bad = _module(distfold_backbones=hookimpl(specname="distfold_backbones")(boom))
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


# -- hooks are called through pluggy ---------------------------------------------------------------

def test_hooks_are_called_through_the_plugin_manager(registry):
    called = []
    registry.pm.add_hookcall_monitoring(lambda name, impls, kwargs: called.append(name), lambda *a: None)
    registry.add_plugin(_plugin(distfold_reconstructors=[ComponentSpec("ok", "x:y", "fine")]), "p", warn=False)
    assert called == ["distfold_reconstructors"]
    assert registry.names("reconstructor") == ["ok"]
    assert registry.pm.get_plugin("p") is not None


def _misspelled():
    @hookimpl
    def distfold_reconstructorz():
        return [ComponentSpec("typo", "x:y", "never listed")]

    @hookimpl
    def distfold_normalisers():
        return [ComponentSpec("fine", "x:y", "from the same plugin")]

    return _module(distfold_reconstructorz=distfold_reconstructorz, distfold_normalisers=distfold_normalisers)


def test_a_misspelled_hookimpl_is_a_failure_naming_the_plugin(registry):
    good = _plugin(distfold_reconstructors=[ComponentSpec("ok", "x:y", "fine")])
    registry.add_plugin(_misspelled(), "typo_plugin", "distfold-typo", "0.1", warn=False)
    registry.add_plugin(good, "good", warn=False)
    [failure] = registry.failures
    assert failure.plugin == "typo_plugin" and failure.distribution == "distfold-typo"
    assert failure.stage == "register"
    assert "unknown hook 'distfold_reconstructorz'" in failure.error
    assert "did you mean 'distfold_reconstructors'" in failure.error
    assert "plugin 'typo_plugin'" in failure.message()
    # the broken plugin provides nothing and is not left registered; the others load
    assert "typo_plugin" not in registry.plugins and registry.pm.get_plugin("typo_plugin") is None
    assert registry.names("normaliser") == [] and registry.names("reconstructor") == ["ok"]


def test_a_misspelled_hookimpl_raises_in_strict_mode(registry, monkeypatch):
    monkeypatch.setenv("DISTFOLD_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'typo_plugin' failed at register: unknown hook"):
        registry.add_plugin(_misspelled(), "typo_plugin", warn=False)


TYPO = ("from distfold import ComponentSpec, hookimpl\n"
        "@hookimpl\n"
        "def distfold_reconstructorz():\n"
        "    return [ComponentSpec('typo', 'os:getcwd', 'never listed')]\n")


def test_a_misspelled_hookimpl_is_reported_by_the_cli(fake_plugin):
    site = fake_plugin("distfold-typo", "typo", "distfold_typo_mod", TYPO)
    res = run_distfold("plugins", "--json", pythonpath=site)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == ("Warning: plugin 'typo' failed at register: unknown hook "
                                  "'distfold_reconstructorz' (did you mean 'distfold_reconstructors'?)")
    data = json.loads(res.stdout)
    assert [(f["plugin"], f["distribution"], f["stage"]) for f in data["failures"]] == \
        [("typo", "distfold-typo", "register")]
    assert "typo" not in {c["name"] for c in data["components"]}
    strict = run_distfold("plugins", env={"DISTFOLD_STRICT_PLUGINS": "1"}, pythonpath=site)
    assert strict.returncode == 1 and strict.stderr.startswith("Error: plugin 'typo' failed at register")


def test_an_unmarked_hook_function_is_not_collected(registry):
    def distfold_reconstructors():  # no @hookimpl
        return [ComponentSpec("unmarked", "x:y", "must not be listed")]

    registry.add_plugin(_module(distfold_reconstructors=distfold_reconstructors), "plain", warn=False)
    assert registry.names("reconstructor") == []
    [failure] = registry.failures
    assert (failure.plugin, failure.stage) == ("plain", "distfold_reconstructors")
    assert "not marked with @hookimpl" in failure.error


def test_a_hook_returning_no_specs_is_recorded(registry):
    registry.add_plugin(_plugin(distfold_normalisers=["not a spec"]), "odd", warn=False)
    assert registry.names("normaliser") == []
    assert registry.failures[0].stage == "distfold_normalisers"
    assert "str, not ComponentSpec" in registry.failures[0].error


# -- loading and creating components ------------------------------------------------------------

def test_a_factory_whose_module_is_missing_is_a_one_line_error_naming_the_plugin():
    reg = _registry(_plugin(distfold_reconstructors=[
        ComponentSpec("ghost", "distfold_no_such_module.recon:Ghost", "imports nothing")]))
    for call in (reg.load, reg.create):
        with pytest.raises(PluginLoadError) as err:
            call("reconstructor", "ghost")
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith("reconstructor 'ghost' (plugin 'p0', distribution dist-0): "
                              "cannot load distfold_no_such_module.recon:Ghost")
        assert "No module named 'distfold_no_such_module'" in msg


GHOST = ("from distfold import ComponentSpec, hookimpl\n"
         "@hookimpl\n"
         "def distfold_reconstructors():\n"
         "    return [ComponentSpec('ghost', 'distfold_ghost_missing:Ghost', 'factory module absent')]\n")


def test_a_factory_whose_module_is_missing_fails_the_cli_in_one_line(fake_plugin, tmp_path):
    import numpy as np

    site = fake_plugin("distfold-ghost", "ghost", "distfold_ghost_mod", GHOST)
    np.save(tmp_path / "d.npy", np.array([[0.0, 3.8], [3.8, 0.0]]))
    res = run_distfold("reconstruct", str(tmp_path / "d.npy"), "-o", str(tmp_path / "x.pdb"), "--method", "ghost",
                       pythonpath=site)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines() == [
        "Error: reconstructor 'ghost' (plugin 'ghost', distribution distfold-ghost): cannot load "
        "distfold_ghost_missing:Ghost: ModuleNotFoundError: No module named 'distfold_ghost_missing'"]


class _NoFlags:
    """Reconstructs, but declares no accepts_weights."""

    def get_config(self):
        return {}

    def reconstruct(self, distances, weights=None):  # pragma: no cover - never called
        raise AssertionError


def test_create_checks_the_protocol_of_the_kind():
    reg = _registry(_plugin(distfold_reconstructors=[ComponentSpec("noflags", _NoFlags, "no declarations")]))
    assert reg.load("reconstructor", "noflags") is _NoFlags  # loading does not instantiate or check
    with pytest.raises(PluginLoadError) as err:
        reg.create("reconstructor", "noflags")
    assert str(err.value) == ("reconstructor 'noflags' (plugin 'p0', distribution dist-0) does not follow the "
                              "reconstructor protocol: missing accepts_weights (see distfold.protocols.Reconstructor)")


def test_create_returns_a_checked_builtin():
    from distfold.protocols import Reconstructor

    rec = Registry.from_entry_points(warn=False).create("reconstructor", "classical")
    assert isinstance(rec, Reconstructor) and rec.accepts_weights is True


def test_set_registry_is_gone():
    import distfold.registry

    assert not hasattr(distfold.registry, "set_registry")


# -- issue 16, point 6: a name several plugins provide ------------------------------------------------

def _with_builtins(*plugins):
    """The installed registry (built-ins included) plus ``plugins`` as third-party ones."""
    reg = Registry.from_entry_points(warn=False)
    for i, p in enumerate(plugins):
        reg.add_plugin(p, f"third{i}", f"distfold-third-{i}", "1.0", warn=False)
    return reg


def test_a_builtin_wins_a_name_a_third_party_plugin_also_provides():
    reg = _with_builtins(_plugin(distfold_reconstructors=[ComponentSpec("smacof", "os:getcwd", "an impostor")]))
    assert reg.conflicts()["reconstructor"] == {"smacof": ["mds_smacof", "third0"]}
    assert reg.get("reconstructor", "smacof").plugin == "mds_smacof"
    assert type(reg.create("reconstructor", "smacof")).__name__ == "SMACOF"
    assert reg.shadowed() == {"reconstructor": {"smacof": ("mds_smacof", ["third0"])}}


@pytest.mark.parametrize("who", ["distfold-third-0", "distfold_third_0", "DISTFOLD.third-0", "third0"])
def test_name_at_distribution_or_plugin_chooses_the_provider(who):
    reg = _with_builtins(_plugin(distfold_reconstructors=[ComponentSpec("smacof", "os:getcwd", "an impostor")]))
    assert reg.get("reconstructor", f"smacof@{who}").plugin == "third0"
    assert reg.get("reconstructor", "smacof@distfold").plugin == "mds_smacof"
    assert reg.get("reconstructor", "smacof", distribution="distfold-third-0").plugin == "third0"
    assert reg.get("reconstructor", "smacof", distribution="not-installed").plugin == "mds_smacof"


def test_name_at_someone_who_does_not_provide_it_is_an_unknown_name():
    reg = _with_builtins()
    with pytest.raises(UnknownComponentError) as err:
        reg.get("reconstructor", "smacof@nobody")
    assert str(err.value) == "reconstructor 'smacof' is not provided by 'nobody'; providers: mds_smacof (distfold)"


def test_without_a_builtin_among_the_providers_a_shared_name_is_still_an_error():
    a = _plugin(distfold_normalisers=[ComponentSpec("dup", "x:y", "one")])
    b = _plugin(distfold_normalisers=[ComponentSpec("dup", "x:y", "two")])
    reg = _registry(a, b)
    with pytest.raises(ComponentConflictError, match=r"choose one as dup@DISTRIBUTION, or disable all but one"):
        reg.get("normaliser", "dup")
    assert reg.get("normaliser", "dup@dist-1").plugin == "p1"
    assert reg.shadowed() == {}


def test_default_predict_works_beside_a_plugin_that_also_registers_smacof(fake_plugin, tmp_path):
    """Before: "reconstructor 'smacof' is provided by several plugins ...", exit 1, until one
    was disabled."""
    src = ("from distfold import ComponentSpec, hookimpl\n"
           "@hookimpl\n"
           "def distfold_reconstructors():\n"
           "    return [ComponentSpec('smacof', 'os:getcwd', 'an impostor')]\n")
    site = fake_plugin("distfold-dup", "dup", "distfold_dup_mod", src)
    res = run_distfold("predict", "MKTAYIAKQRQISFVKSHFSRQ", "-o", str(tmp_path / "o"), "--json", pythonpath=site)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "query.pdb").is_file()
    listing = run_distfold("plugins", pythonpath=site)
    assert "reconstructor 'smacof': dup, mds_smacof -> mds_smacof (built-in) is used" in listing.stdout
    chosen = run_distfold("reconstruct", str(tmp_path / "o" / "query.distmat.npy"), "-o", str(tmp_path / "x.pdb"),
                          "--method", "smacof@distfold-dup", pythonpath=site)
    assert chosen.returncode == 1  # the impostor was used, and its "reconstructor" is os.getcwd
    assert "Traceback" not in chosen.stderr and "plugin 'dup'" in chosen.stderr, chosen.stderr


def test_a_model_loads_the_provider_it_was_saved_with(monkeypatch, tmp_path):
    """config.json records each component's distribution; with two providers of the name, that one loads."""
    import distfold.registry
    from distfold.pipeline.model import DistanceModel
    from distfold.plugins.normalisers.log1p import Log1pNormaliser

    class ThirdLog1p(Log1pNormaliser):
        pass

    reg = _with_builtins(_plugin(distfold_normalisers=[ComponentSpec("log1p", ThirdLog1p, "a look-alike")]))
    monkeypatch.setattr(distfold.registry, "_REGISTRY", reg)
    model = DistanceModel.build(("qwen", {"preset": "tiny"}),
                                ("regression", {"pair_dim": 8, "n_blocks": 1, "use_prior": False}),
                                ("log1p@third0", {"scale": 5.0}))
    assert type(model.normaliser) is ThirdLog1p
    assert model.config["components"]["normaliser"]["name"] == "log1p"
    assert model.config["components"]["normaliser"]["distribution"] == "distfold-third-0"
    model.save(tmp_path / "m")
    assert type(DistanceModel.load(tmp_path / "m").normaliser) is ThirdLog1p
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["components"]["normaliser"]["distribution"] = "distfold"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    assert type(DistanceModel.load(tmp_path / "m").normaliser) is Log1pNormaliser
