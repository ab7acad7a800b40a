"""Trained models as plugins: the ``distfold_models`` hook, ``distfold models``, ``--model NAME``,
and ``predict --backbone/--head/--normaliser``."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import distfold
from distfold import ModelSpec, hookimpl
from distfold.cli.main import cli
from distfold.errors import ComponentConflictError, DistfoldError, InputError, UnknownComponentError, UsageError
from distfold.pipeline.models import describe_models, model_facts, resolve_model, select_model
from distfold.registry import Registry

from conftest import run_distfold

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "core" / "default_model"
SEQ = "MKTAYIAKQRQISFVKSHFSRQ"


def _plugin(**hooks):
    mod = types.ModuleType("fake_model_plugin")
    for name, specs in hooks.items():
        def impl(specs=specs):
            return specs
        setattr(mod, name, hookimpl(specname=name)(impl))
    return mod


def _registry(*plugins):
    reg = Registry()
    for i, p in enumerate(plugins):
        reg.add_plugin(p, f"p{i}", f"dist-{i}", "1.0", warn=False)
    return reg


def _fake_model(path: Path, backbone="qwen", head="regression", normaliser="log1p", val=None) -> Path:
    """A folder with only a model config (all that choosing a model reads)."""
    path.mkdir(parents=True, exist_ok=True)
    config = {"format": "distfold-model", "format_version": 1,
              "components": {"backbone": {"name": backbone, "params": {}},
                             "distance_head": {"name": head, "params": {}},
                             "normaliser": {"name": normaliser, "params": {}}}}
    if val is not None:
        config["training"] = {"val": val}
    (path / "config.json").write_text(json.dumps(config))
    return path


def _spec(name, path, backbone="qwen", head="regression", normaliser="log1p", default=False, **kw):
    return ModelSpec(name, f"{name} model", backbone=backbone, distance_head=head, normaliser=normaliser,
                     path=path, default=default, **kw)


# -- the spec and the hook ----------------------------------------------------------------

def test_model_spec_is_checked_and_cheap(tmp_path):
    with pytest.raises(ValueError, match="lower-case"):
        ModelSpec("Big", "s", backbone="qwen", distance_head="regression", normaliser="log1p", path=tmp_path)
    with pytest.raises(ValueError, match="exactly one of path and loader"):
        ModelSpec("m", "s", backbone="qwen", distance_head="regression", normaliser="log1p")
    with pytest.raises(ValueError, match="exactly one of path and loader"):
        ModelSpec("m", "s", backbone="qwen", distance_head="regression", normaliser="log1p", path=tmp_path,
                  loader=lambda: tmp_path)
    with pytest.raises(ValueError, match="module:function"):
        ModelSpec("m", "s", backbone="qwen", distance_head="regression", normaliser="log1p", loader="nomodule")
    with pytest.raises(ValueError, match="backbone"):
        ModelSpec("m", "s", backbone="", distance_head="regression", normaliser="log1p", path=tmp_path)
    # a loader runs only when asked
    calls = []
    spec = ModelSpec("m", "s", backbone="qwen", distance_head="regression", normaliser="log1p",
                     loader=lambda: calls.append(1) or tmp_path)
    assert calls == [] and spec.location() == tmp_path and calls == [1]
    assert ModelSpec("m", "s", backbone="q", distance_head="r", normaliser="n",
                     loader="os.path:expanduser").loader == "os.path:expanduser"


def test_hook_spec_is_documented_with_an_example():
    from distfold import hookspecs

    doc = hookspecs.distfold_models.__doc__
    assert "ModelSpec(" in doc and "@hookimpl" in doc and "Contract" in doc
    assert hookspecs.MODEL_HOOK in hookspecs.HOOK_NAMES


def test_shipped_model_arrives_through_the_hook():
    reg = Registry.from_entry_points(warn=False)
    m = reg.get_model("default")
    assert (m.plugin, m.distribution) == ("default_model", "distfold")
    assert m.spec.location().resolve() == DEFAULT_DIR.resolve()
    assert (m.spec.backbone, m.spec.distance_head, m.spec.normaliser, m.spec.default) == \
        ("qwen", "regression", "log1p", True)
    assert m.spec.data_card_path() == m.spec.location() / "DATA_CARD.md"


def test_registry_collects_models_conflicts_and_failures(tmp_path):
    a = _plugin(distfold_models=[_spec("one", tmp_path), _spec("dup", tmp_path)])
    b = _plugin(distfold_models=[_spec("dup", tmp_path)])
    reg = _registry(a, b)
    assert reg.model_names() == ["dup", "one"]
    assert reg.model_conflicts() == {"dup": ["p0", "p1"]}
    with pytest.raises(ComponentConflictError, match="p0 .*p1"):
        reg.get_model("dup")
    with pytest.raises(UnknownComponentError, match="Did you mean 'one'"):
        reg.get_model("onr")

    def broken():
        raise RuntimeError("boom")
    mod = types.ModuleType("raising")
    mod.distfold_models = hookimpl(broken)
    wrong = _plugin(distfold_models=["not a spec"])
    typo = types.ModuleType("typo")
    typo.distfold_modelz = hookimpl(lambda: [])
    unmarked = types.ModuleType("unmarked")
    unmarked.distfold_models = lambda: [_spec("never", tmp_path)]
    reg = _registry(mod, wrong, typo, unmarked)
    stages = {(f.plugin, f.stage): f.error for f in reg.failures}
    assert "boom" in stages[("p0", "distfold_models")]
    assert "not ModelSpec" in stages[("p1", "distfold_models")]
    assert "did you mean 'distfold_models'" in stages[("p2", "register")]
    assert "not marked with @hookimpl" in stages[("p3", "distfold_models")]
    assert reg.models == []


# -- what a model is ---------------------------------------------------------------------------

def test_facts_of_the_shipped_model_match_its_data_card():
    facts = model_facts(DEFAULT_DIR)
    assert facts["parameters"] == 1_998_581  # DATA_CARD.md: 1,809,458 parameters + 189,123 of the SS read-out
    assert facts["components"] == {"backbone": "qwen", "distance_head": "regression", "normaliser": "log1p"}
    config = json.loads((DEFAULT_DIR / "config.json").read_text())
    assert facts["val"]["lddt"] == config["training"]["val"]["lddt"]
    assert facts["size_bytes"] > 3_000_000


def test_describe_reports_problems_without_failing(tmp_path):
    good = _fake_model(tmp_path / "good", val={"lddt": 0.5, "mae": 3.0, "step": 7})
    liar = _fake_model(tmp_path / "liar", backbone="qwen")
    reg = _registry(_plugin(distfold_models=[
        _spec("good", good), _spec("liar", liar, backbone="esm2"), _spec("gone", tmp_path / "nowhere"),
        ModelSpec("lost", "s", backbone="qwen", distance_head="regression", normaliser="log1p",
                  loader="no_such_module_anywhere:where")]))
    rows = {r["name"]: r for r in describe_models(reg)}
    assert rows["good"]["val"] == {"lddt": 0.5, "mae": 3.0, "step": 7} and rows["good"]["problems"] == [
        "backbone 'qwen' is not installed", "distance head 'regression' is not installed",
        "normaliser 'log1p' is not installed"]  # this registry has no components
    assert any("config.json says backbone qwen" in p for p in rows["liar"]["problems"])
    assert any("not a model directory" in p for p in rows["gone"]["problems"])
    assert any("cannot locate its weights" in p and "no_such_module_anywhere" in p for p in rows["lost"]["problems"])


# -- choosing a model ------------------------------------------------------------------------

@pytest.fixture
def several(tmp_path):
    """Three qwen models (one default) and one other-backbone model, installed by two plugins."""
    dirs = {n: _fake_model(tmp_path / "models" / n, backbone=b, head=h)
            for n, b, h in (("q-small", "qwen", "regression"), ("q-big", "qwen", "regression"),
                            ("q-dist", "qwen", "distogram"), ("e-one", "esm", "regression"))}
    reg = _registry(
        _plugin(distfold_models=[_spec("q-small", dirs["q-small"]), _spec("q-big", dirs["q-big"], default=True)]),
        _plugin(distfold_models=[_spec("q-dist", dirs["q-dist"], head="distogram"),
                                 _spec("e-one", dirs["e-one"], backbone="esm")]))
    return reg, dirs


def test_backbone_picks_the_default_among_several(several):
    reg, dirs = several
    assert select_model(backbone="qwen", registry=reg) == dirs["q-big"]
    assert select_model(backbone="qwen@dist-0", registry=reg) == dirs["q-big"]  # NAME@PROVIDER: the name counts
    assert select_model(backbone="esm", registry=reg) == dirs["e-one"]  # the only one: no default needed
    assert select_model(backbone="qwen", head="distogram", registry=reg) == dirs["q-dist"]
    assert select_model(head="distogram", registry=reg) == dirs["q-dist"]
    assert select_model(registry=reg) is None  # nothing asked: the shipped model


def test_no_model_for_the_backbone_is_one_line_listing_what_exists(several):
    reg, _ = several
    with pytest.raises(UsageError) as err:
        select_model(backbone="esm", head="distogram", registry=reg)
    msg = str(err.value)
    assert "\n" not in msg and "--backbone esm --head distogram" in msg
    for name in ("q-small", "q-big", "q-dist", "e-one"):
        assert name in msg
    assert "e-one (backbone esm, head regression" in msg


def test_several_without_one_default_is_an_error_listing_them(tmp_path):
    a, b = _fake_model(tmp_path / "a"), _fake_model(tmp_path / "b")
    for defaults, why in (((False, False), "none is marked default"), ((True, True), "several are marked default")):
        reg = _registry(_plugin(distfold_models=[_spec("a", a, default=defaults[0]),
                                                 _spec("b", b, default=defaults[1])]))
        with pytest.raises(UsageError) as err:
            select_model(backbone="qwen", registry=reg)
        assert why in str(err.value) and "a" in str(err.value) and "--model NAME" in str(err.value)


def test_model_by_name_or_folder(several, tmp_path, monkeypatch):
    reg, dirs = several
    assert select_model("q-small", registry=reg) == dirs["q-small"]
    assert select_model(str(dirs["e-one"]), registry=reg) == dirs["e-one"]
    monkeypatch.chdir(tmp_path / "models")
    assert select_model("./q-small", registry=reg) == Path("./q-small")  # a path is always a folder
    with pytest.raises(UsageError, match="both an installed model and a folder.*./q-small"):
        select_model("q-small", registry=reg)
    _fake_model(tmp_path / "models" / "mine")
    assert select_model("mine", registry=reg) == Path("mine")  # not a model name: the folder
    with pytest.raises(InputError, match="no such folder, and no installed model.*q-big"):
        select_model("nothing", registry=reg)


def test_options_must_agree_with_the_given_model(several):
    reg, dirs = several
    assert select_model("q-big", backbone="qwen", head="regression", registry=reg) == dirs["q-big"]
    with pytest.raises(UsageError) as err:
        select_model("q-big", backbone="esm", registry=reg)
    assert "--backbone esm does not match model 'q-big'" in str(err.value)
    assert "backbone qwen, head regression, normaliser log1p" in str(err.value)
    with pytest.raises(UsageError, match="--head distogram does not match the model in"):
        select_model(str(dirs["e-one"]), head="distogram", registry=reg)


def test_spec_and_config_must_agree(tmp_path):
    path = _fake_model(tmp_path / "m", backbone="qwen")
    reg = _registry(_plugin(distfold_models=[_spec("m", path, backbone="esm")]))
    with pytest.raises(DistfoldError, match="its spec says backbone esm, .* but .*config.json says backbone qwen"):
        select_model(backbone="esm", registry=reg)


def test_loader_resolves_on_use_and_its_failure_names_the_plugin(tmp_path):
    path = _fake_model(tmp_path / "m")
    reg = _registry(_plugin(distfold_models=[
        ModelSpec("lazy", "s", backbone="qwen", distance_head="regression", normaliser="log1p",
                  loader=lambda: str(path)),
        ModelSpec("broken", "s", backbone="esm", distance_head="regression", normaliser="log1p",
                  loader=lambda: 1 / 0)]))
    assert resolve_model("lazy", reg)[0] == path
    with pytest.raises(DistfoldError, match="model 'broken' \\(plugin 'p0', distribution dist-0\\): cannot locate"):
        select_model(backbone="esm", registry=reg)


# -- the commands -------------------------------------------------------------------------------

def test_models_command_lists_the_shipped_model():
    res = CliRunner().invoke(cli, ["models"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if line.startswith("default*"))
    val = json.loads((Path(distfold.__file__).parent / "default_model" / "config.json").read_text())["training"]["val"]
    assert "qwen" in line and "regression" in line and "2.00 M" in line
    assert f"{val['lddt']:.3f}" in line and f"{val['mae']:.2f} A" in line  # the numbers the model records
    rows = json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)
    default = next(r for r in rows if r["name"] == "default")
    assert default["parameters"] == 1_998_581 and default["problems"] == []
    res = CliRunner().invoke(cli, ["models", "default"])
    assert res.exit_code == 0 and "data card" in res.output and "not the global fold" in res.output
    res = CliRunner().invoke(cli, ["models", "defualt"])
    assert res.exit_code == 2 and "Did you mean 'default'" in res.output


def test_the_usage_line_works_out_of_the_box(tmp_path):
    """`distfold predict --backbone qwen --reconstruct smacof SEQ -o out`: the shipped model,
    the same files as without --backbone."""
    runner = CliRunner()
    res = runner.invoke(cli, ["predict", "--backbone", "qwen", "--reconstruct", "smacof", SEQ, "-o",
                              str(tmp_path / "a")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["predict", "--model", "default", SEQ, "-o", str(tmp_path / "b")],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["predict", SEQ, "-o", str(tmp_path / "c")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    mats = [np.load(tmp_path / d / "query.distmat.npy") for d in "abc"]
    assert np.array_equal(mats[0], mats[2]) and np.array_equal(mats[1], mats[2])
    model = json.loads((tmp_path / "a" / "query.scores.json").read_text())["model"]
    assert Path(model["path"]).resolve() == DEFAULT_DIR.resolve()


def test_predict_options_fail_clearly(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["predict", "--model", "default", "--head", "distogram", SEQ, "-o", str(tmp_path)])
    assert res.exit_code == 2 and "--head distogram does not match model 'default'" in res.output
    res = runner.invoke(cli, ["predict", "--head", "distogram", SEQ, "-o", str(tmp_path)])
    assert res.exit_code == 2 and "no installed model is built from that" in res.output and "default (" in res.output
    res = runner.invoke(cli, ["predict", "--backbone", "nope", SEQ, "-o", str(tmp_path)])
    assert res.exit_code == 2 and "unknown backbone 'nope'" in res.output


def test_a_third_party_model_through_entry_points(fake_plugin, tmp_path):
    """An installed distribution (a fake .dist-info) ships a model: listed, used by name."""
    model_dir = _fake_model(tmp_path / "weights", head="distogram", val={"lddt": 0.61, "mae": 2.5})
    (model_dir / "DATA_CARD.md").write_text("# third-party card\n")
    site = fake_plugin("thirdparty-models", "thirdparty", "thirdparty_hooks",
                       "from distfold import ModelSpec, hookimpl\n"
                       "@hookimpl\n"
                       "def distfold_models():\n"
                       f"    return [ModelSpec('tp-dist', 'Third-party distogram model.', backbone='qwen',\n"
                       f"                      distance_head='distogram', normaliser='log1p', path={str(model_dir)!r})]\n")
    res = run_distfold("models", "--json", pythonpath=site)
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["tp-dist"]["distribution"] == "thirdparty-models" and rows["tp-dist"]["val"]["lddt"] == 0.61
    assert rows["tp-dist"]["data_card"].endswith("DATA_CARD.md")
    res = run_distfold("models", "tp-dist", pythonpath=site)
    assert "# third-party card" in res.stdout
    res = run_distfold("predict", "--model", "tp-dist", "--head", "regression", "MKV", "-o", str(tmp_path / "o"),
                       pythonpath=site)
    assert res.returncode == 2 and "does not match model 'tp-dist'" in res.stderr


def test_plugins_command_lists_models_beside_components():
    data = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    assert {"name": "default", "plugin": "default_model", "backbone": "qwen"}.items() <= \
        next(m for m in data["models"] if m["name"] == "default").items()
    text = CliRunner().invoke(cli, ["plugins"]).output
    assert any(line.split()[:3] == ["model", "default", "default_model"] for line in text.splitlines())


def test_evaluate_takes_a_model_name():
    from distfold.cli.evaluate import evaluate

    assert next(p for p in evaluate.params if p.name == "model_dir").metavar == "NAME|DIR"
