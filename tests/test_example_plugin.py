"""The example third-party plugin runs the public conformance suite the way a
third party would, through ``distfold.testing.parametrize_with_checks``."""

from distfold_example.spectral import SqrtNormaliser, Spectral

from distfold.testing import check_normaliser, check_reconstructor, parametrize_with_checks


@parametrize_with_checks("reconstructor", [Spectral()])
def test_example_reconstructor_conformance(component, check):
    check(component)


@parametrize_with_checks("normaliser", [SqrtNormaliser()])
def test_example_normaliser_conformance(component, check):
    check(component)


def test_check_functions_run_every_check():
    check_reconstructor(Spectral())
    check_normaliser(SqrtNormaliser())


def test_suite_catches_a_broken_reconstructor():
    """The suite must be able to fail: a reconstructor whose coordinates are wrong.
    The hand is not the plugin's business: the core chooses it, so a reconstructor
    that returns the mirror image passes."""
    import numpy as np
    import pytest

    from distfold.components import Reconstruction

    class Mirroring(Spectral):
        def reconstruct(self, distances, weights=None):
            out = super().reconstruct(distances, weights)
            x = out.coords.copy()
            x[:, 0] = -x[:, 0]
            return Reconstruction(x, out.diagnostics)

    class Stretching(Spectral):
        def reconstruct(self, distances, weights=None):
            out = super().reconstruct(distances, weights)
            return Reconstruction(out.coords * [1.0, 1.0, 1.2], out.diagnostics)

    check_reconstructor(Mirroring())
    with pytest.raises(AssertionError, match="not reproduced"):
        check_reconstructor(Stretching())
    assert np.isfinite(Spectral().reconstruct(np.zeros((1, 1))).coords).all()


def test_suite_checks_the_protocol_and_declared_capabilities():
    """A third party learns from the suite, before any geometry, what its class lacks."""
    import pytest

    from distfold.protocols import Reconstructor
    from distfold.testing import check_reconstructor_protocol

    assert isinstance(Spectral(), Reconstructor) and Spectral.accepts_weights is True

    class Undeclared:  # reconstructs, but says nothing about weights
        def get_config(self):
            return {}

        def reconstruct(self, distances, weights=None):
            return Spectral().reconstruct(distances, weights)

    with pytest.raises(AssertionError, match="check_reconstructor_protocol: .*missing accepts_weights"):
        check_reconstructor(Undeclared())

    class Vague(Spectral):
        accepts_weights = "sometimes"

    with pytest.raises(AssertionError, match="accepts_weights must be a bool"):
        check_reconstructor_protocol(Vague())


# -- the backbone and the trained model an outside author ships ---------------------------------

def test_example_backbone_conformance():
    from distfold_example.backbone import ConvBackbone

    from distfold.testing import check_backbone

    check_backbone(ConvBackbone())
    check_backbone(ConvBackbone(hidden_size=8, layers=1, kernel=3))


def test_example_model_is_installed_listed_and_predicts(tmp_path):
    """The plugin's model arrives through ``distfold_models``: ``distfold models`` lists it with
    its validation numbers, ``--model NAME`` and ``--backbone example-conv`` both use it."""
    import json

    import numpy as np

    from conftest import run_distfold

    rows = {r["name"]: r for r in json.loads(run_distfold("models", "--json").stdout)}
    row = rows["example-conv-tiny"]
    assert (row["plugin"], row["distribution"], row["backbone"], row["normaliser"]) == \
        ("example", "distfold-example", "example-conv", "example-sqrt")
    assert row["problems"] == [] and row["val"]["lddt"] > row["val"]["prior_lddt"]
    assert row["data_card"].endswith("DATA_CARD.md") and row["parameters"] == 23_290
    res = run_distfold("predict", "--backbone", "example-conv", "--reconstruct", "example-spectral",
                       "MKTAYIAKQRQISFVKSHFSRQ", "-o", str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr
    res = run_distfold("predict", "--model", "example-conv-tiny", "--reconstruct", "example-spectral",
                       "MKTAYIAKQRQISFVKSHFSRQ", "-o", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    a, b = (np.load(tmp_path / d / "query.distmat.npy") for d in "ab")
    assert a.shape == (22, 22) and np.array_equal(a, b)


def test_train_a_plugin_backbone_without_precision(tmp_path):
    """`distfold train --backbone example-conv`: a third-party backbone need not take
    distfold's `precision` parameter (it is passed only when --precision is given)."""
    import json

    from click.testing import CliRunner
    from trainkit import make_dataset

    from distfold.cli.main import cli

    ds = make_dataset(tmp_path / "ds")
    res = CliRunner().invoke(cli, ["train", str(ds), "-o", str(tmp_path / "m"), "--backbone", "example-conv",
                                   "--normaliser", "example-sqrt", "--crop", "32", "--batch-size", "1",
                                   "--max-steps", "1", "--warmup", "0", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["components"]["backbone"]["distribution"] == "distfold-example"
