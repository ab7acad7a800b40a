"""Every installed component runs the public conformance suite of its kind."""

import pytest

from distfold.registry import Registry
from distfold.testing import CHECKS

REG = Registry.from_entry_points(warn=False)


def _instances(kind, **params):
    out = []
    for comp in REG.all_components():
        if comp.kind == kind:
            out.append(pytest.param(comp, id=f"{comp.plugin}:{comp.name}"))
    return out


@pytest.mark.parametrize("check", CHECKS["normaliser"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("normaliser"))
def test_normaliser_conformance(comp, check):
    check(comp.spec.load()())


@pytest.mark.parametrize("check", CHECKS["reconstructor"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("reconstructor"))
def test_reconstructor_conformance(comp, check):
    check(comp.spec.load()())


#: Small constructor parameters for built-in torch components (third-party ones use their defaults).
BACKBONE_PARAMS = {"qwen": {"preset": "tiny"}}


@pytest.mark.parametrize("check", CHECKS["backbone"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("backbone"))
def test_backbone_conformance(comp, check):
    check(comp.spec.load()(**BACKBONE_PARAMS.get(comp.name, {})))


@pytest.mark.parametrize("check", CHECKS["distance_head"], ids=lambda c: c.__name__)
@pytest.mark.parametrize("comp", _instances("distance_head"))
def test_distance_head_conformance(comp, check):
    check(comp.spec.load()(hidden_size=16))
