"""Hook module of the built-in ``backbone_esm`` plugin (imports no torch)."""

from distfold import ComponentSpec, hookimpl


@hookimpl
def distfold_backbones():
    return [
        ComponentSpec(
            "esm",
            "distfold.plugins.backbone_esm.backbone:EsmBackbone",
            "ESM-2 protein language model (transformers EsmModel) from local weights: LoRA, or frozen with a "
            "trainable layer mix + projection.",
        )
    ]
