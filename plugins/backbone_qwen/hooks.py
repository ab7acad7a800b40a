"""Hook module of the built-in ``backbone_qwen`` plugin (imports no torch)."""

from distfold import ComponentSpec, hookimpl


@hookimpl
def distfold_backbones():
    return [
        ComponentSpec(
            "qwen",
            "distfold.plugins.backbone_qwen.backbone:QwenBackbone",
            "Qwen2/Qwen2.5: local pretrained weights + LoRA, or a from-scratch residue-vocabulary preset.",
        )
    ]
