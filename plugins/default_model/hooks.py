"""Hook module of the built-in ``default_model`` plugin: distfold's shipped model.

The checkpoint itself is package data of the core (``distfold/default_model/``,
the folder ``core/default_model/`` of the source tree); this plugin only names
it, through the same hook a third-party package uses to ship its weights. It
imports nothing but the kernel and reads no file.
"""

from pathlib import Path

import distfold
from distfold import ModelSpec, hookimpl

#: The name of the shipped model (``distfold predict --model default``).
NAME = "default"


@hookimpl
def distfold_models():
    return [
        ModelSpec(
            NAME,
            "Shipped with distfold: Qwen2 from scratch (2.0 M parameters) + regression head with a "
            "secondary-structure read-out; local structure, not the global fold.",
            backbone="qwen",
            distance_head="regression",
            normaliser="log1p",
            path=Path(distfold.__file__).resolve().parent / "default_model",
            data_card="DATA_CARD.md",
            default=True,
        )
    ]
