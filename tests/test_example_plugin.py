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
