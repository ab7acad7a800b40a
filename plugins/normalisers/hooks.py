"""Hook module of the built-in ``normalisers`` plugin (imports nothing heavy)."""

from distfold import ComponentSpec, hookimpl


@hookimpl
def distfold_normalisers():
    return [
        ComponentSpec(
            "log1p",
            "distfold.plugins.normalisers.log1p:Log1pNormaliser",
            "log(1 + d) divided by one global scale fitted on training distances.",
        ),
        ComponentSpec(
            "identity",
            "distfold.plugins.normalisers.log1p:IdentityNormaliser",
            "Distances in angstrom, unchanged.",
        ),
    ]
