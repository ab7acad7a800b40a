"""Hook module of the built-in ``mds_smacof`` plugin (imports nothing heavy)."""

from distfold import ComponentSpec, hookimpl


@hookimpl
def distfold_reconstructors():
    return [
        ComponentSpec(
            "smacof",
            "distfold.plugins.mds_smacof.smacof:SMACOF",
            "Weighted stress majorisation (SMACOF) started from classical MDS.",
        ),
        ComponentSpec(
            "refine",
            "distfold.plugins.mds_smacof.refine:Refine",
            "SMACOF, then L-BFGS on stress + 3.8 A virtual bonds + clashes.",
        ),
    ]
