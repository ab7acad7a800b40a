"""Hook module of the built-in ``mds_classical`` plugin (imports nothing heavy)."""

from distfold import ComponentSpec, hookimpl


@hookimpl
def distfold_reconstructors():
    return [
        ComponentSpec(
            "classical",
            "distfold.plugins.mds_classical.classical:ClassicalMDS",
            "Classical (Torgerson) MDS from the top-3 eigenpairs; exact for Euclidean input.",
        )
    ]
