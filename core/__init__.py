"""distfold: protein structure from sequence by way of a residue-residue distance matrix.

The package is a small core (this folder) plus plugins. Components of four
kinds -- backbones, distance heads, normalisers and reconstructors -- and
trained models (:class:`ModelSpec`) arrive through the ``distfold.plugins``
entry-point group, built-in ones included. A plugin marks its hook functions
with :data:`hookimpl`::

    from distfold import hookimpl, ComponentSpec

    @hookimpl
    def distfold_reconstructors():
        return [ComponentSpec("mine", "my_pkg.recon:MyReconstructor", "My method.")]

Importing this module is cheap: it imports neither torch nor numpy.
"""

from distfold._version import __version__
from distfold.hookspecs import ComponentSpec, ModelSpec, hookimpl

__all__ = ["__version__", "hookimpl", "ComponentSpec", "ModelSpec"]
