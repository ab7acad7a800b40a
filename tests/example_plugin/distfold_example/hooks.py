from distfold import ComponentSpec, hookimpl


@hookimpl
def distfold_reconstructors():
    return [ComponentSpec("example-spectral", "distfold_example.spectral:Spectral",
                          "Example plugin: classical MDS by full eigendecomposition.")]


@hookimpl
def distfold_normalisers():
    return [ComponentSpec("example-sqrt", "distfold_example.spectral:SqrtNormaliser",
                          "Example plugin: sqrt(d) / scale.")]
