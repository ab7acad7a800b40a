"""Hook module of the built-in ``distance_heads`` plugin (imports no torch)."""

from distfold import ComponentSpec, hookimpl


@hookimpl
def distfold_distance_heads():
    return [
        ComponentSpec(
            "distogram",
            "distfold.plugins.distance_heads.distogram:DistogramHead",
            "Pair features -> distribution over distance bins; expected distance and variance.",
        ),
        ComponentSpec(
            "regression",
            "distfold.plugins.distance_heads.regression:RegressionHead",
            "Pair features -> normalised distance with a learned Laplace uncertainty.",
        ),
    ]
