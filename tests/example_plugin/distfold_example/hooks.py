"""The example plugin's hooks: what it provides, by name, without importing any of it.

Everything here is cheap to import (no torch, no numpy, no file read): distfold calls
these functions to list components and models, and imports a factory only when a
component is used.
"""

from pathlib import Path

from distfold import ComponentSpec, ModelSpec, hookimpl


@hookimpl
def distfold_reconstructors():
    return [ComponentSpec("example-spectral", "distfold_example.spectral:Spectral",
                          "Example plugin: classical MDS by full eigendecomposition.")]


@hookimpl
def distfold_normalisers():
    return [ComponentSpec("example-sqrt", "distfold_example.spectral:SqrtNormaliser",
                          "Example plugin: sqrt(d) / scale.")]


@hookimpl
def distfold_backbones():
    return [ComponentSpec("example-conv", "distfold_example.backbone:ConvBackbone",
                          "Example plugin: residual 1D convolutions over residue embeddings, from scratch.")]


@hookimpl
def distfold_models():
    # The weights ship inside the package (package data, see pyproject.toml), as a checkpoint
    # directory written by `distfold train`; its DATA_CARD.md says how it was made.
    return [ModelSpec("example-conv-tiny",
                      "Example plugin: example-conv backbone + regression head on 3 test chains (a demo, not a predictor).",
                      backbone="example-conv", distance_head="regression", normaliser="example-sqrt",
                      path=Path(__file__).parent / "model", data_card="DATA_CARD.md")]
