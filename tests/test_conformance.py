"""Every installed component runs the public conformance suite of its kind."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from distfold.registry import Registry
from distfold.testing import CHECKS

REG = Registry.from_entry_points(warn=False)

_TMP: list = []


def _tiny_esm_params() -> dict:
    """The esm backbone needs weights: a tiny random ESM-2 saved once per session."""
    if not _TMP:
        import tempfile

        from trainkit import make_tiny_esm

        _TMP.append(tempfile.TemporaryDirectory(prefix="distfold-esm-"))
        make_tiny_esm(Path(_TMP[0].name) / "tiny-esm2")
    return {"base_model": str(Path(_TMP[0].name) / "tiny-esm2")}


#: Small constructor parameters for built-in components (third-party ones use their defaults);
#: a callable is called on use.
PARAMS = {("backbone", "qwen"): {"preset": "tiny"}, ("distance_head", "distogram"): {"hidden_size": 16},
          ("distance_head", "regression"): {"hidden_size": 16}, ("backbone", "esm"): _tiny_esm_params}


def _instances(kind):
    return [pytest.param(comp, id=f"{comp.plugin}:{comp.name}") for comp in REG.all_components() if comp.kind == kind]


def _create(comp):
    """Through the registry, which checks the protocol of the kind as it creates."""
    params = PARAMS.get((comp.kind, comp.name), {})
    return REG.create(comp.kind, comp.name, **(params() if callable(params) else params))


@pytest.mark.parametrize("check", CHECKS["normaliser"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("normaliser"))
def test_normaliser_conformance(comp, check):
    check(_create(comp))


@pytest.mark.parametrize("check", CHECKS["reconstructor"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("reconstructor"))
def test_reconstructor_conformance(comp, check):
    check(_create(comp))


@pytest.mark.parametrize("check", CHECKS["backbone"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("backbone"))
def test_backbone_conformance(comp, check):
    check(_create(comp))


@pytest.mark.parametrize("check", CHECKS["distance_head"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("distance_head"))
def test_distance_head_conformance(comp, check):
    check(_create(comp))


def test_every_kind_checks_its_protocol_first():
    for kind, checks in CHECKS.items():
        assert checks[0].__name__ == f"check_{kind}_protocol", kind


# -- declared capabilities of the built-ins ----------------------------------------------------------

def test_builtin_and_example_components_follow_their_protocols():
    from distfold.protocols import PROTOCOLS

    seen = set()
    for comp in REG.all_components():
        if comp.kind == "backbone":
            continue  # built by test_backbone_conformance (it needs transformers)
        obj = _create(comp)
        assert isinstance(obj, PROTOCOLS[comp.kind]), comp.name
        seen.add(comp.name)
    assert {"classical", "smacof", "refine", "example-spectral", "log1p", "identity", "example-sqrt",
            "distogram", "regression"} <= seen


def test_builtin_declared_capabilities():
    for name in ("classical", "smacof", "refine", "example-spectral"):
        assert REG.create("reconstructor", name).accepts_weights is True, name
    assert REG.load("distance_head", "regression").error_distribution == "laplace"
    assert REG.load("distance_head", "distogram").error_distribution == "gaussian"
    assert REG.create("distance_head", "regression", hidden_size=16).error_distribution == "laplace"
    # the regression head's variance is Gaussian when it is trained with the Gaussian NLL
    head = REG.create("distance_head", "regression", hidden_size=16, loss="gaussian")
    assert head.error_distribution == "gaussian" and head.get_config()["loss"] == "gaussian"


def test_backbone_declares_is_pretrained():
    bb = REG.create("backbone", "qwen", preset="tiny")
    assert bb.is_pretrained is False and bb.hidden_size == 32


def test_the_suite_catches_a_head_whose_declaration_is_false():
    from distfold.testing import check_distance_head_protocol

    head_cls = REG.load("distance_head", "regression")

    class Undeclared(head_cls):
        error_distribution = None  # but forward() still returns a "variance"

        def __init__(self, **kw):
            super().__init__(**kw)
            self.error_distribution = None

    with pytest.raises(AssertionError, match="error_distribution is None but the head returns a 'variance'"):
        check_distance_head_protocol(Undeclared(hidden_size=16))

    class Unknown(head_cls):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.error_distribution = "cauchy"

    with pytest.raises(AssertionError, match="error_distribution must be one of"):
        check_distance_head_protocol(Unknown(hidden_size=16))


# -- the suite stands alone ------------------------------------------------------------------------

def test_testing_module_imports_no_plugin():
    import distfold.testing

    tree = ast.parse(Path(distfold.testing.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):  # function bodies included
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module}.{a.name}" for a in node.names)
    assert not [m for m in imported if m.startswith("distfold.plugins")], imported
    # and, run for real, the head checks load nothing from distfold.plugins but the head itself
    code = ("import sys, distfold.testing as t\n"
            "from distfold.plugins.distance_heads.regression import RegressionHead\n"
            "t.check_distance_head(RegressionHead(hidden_size=8))\n"
            "print(sorted(m for m in sys.modules if m.startswith('distfold.plugins')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().replace("'", '"'))
    assert [m for m in loaded if not m.startswith("distfold.plugins.distance_heads")] == ["distfold.plugins"]
