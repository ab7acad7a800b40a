"""Base classes shared by components of every kind (numpy only, no torch).

Constructors store keyword parameters and do no work (the scikit-learn
estimator contract); :meth:`Configurable.get_config` reads them back from the
``__init__`` signature so that every default is written out explicitly. The
protocol each kind follows is in :mod:`distfold.protocols`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from distfold.serialise import jsonable

_C = TypeVar("_C", bound="Configurable")


class Configurable:
    """Mixin: ``get_config()`` returns every ``__init__`` parameter by name.

    Each parameter is read back from the attribute of the same name, or from the
    one :attr:`_config_attrs` maps it to when the name is taken (a head's ``loss``
    parameter next to its ``loss()`` method), and converted by
    :func:`distfold.serialise.jsonable`.
    """

    #: parameter name -> the attribute that stores it, where the two differ.
    _config_attrs: dict[str, str] = {}

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]

    def get_config(self) -> dict[str, Any]:
        return {name: jsonable(getattr(self, self._config_attrs.get(name, name))) for name in self._param_names()}

    @classmethod
    def from_config(cls: type[_C], config: dict[str, Any]) -> _C:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@dataclass
class Reconstruction:
    """Result of a reconstructor.

    coords: (L, 3) float64, Å.
    diagnostics: JSON-serialisable dict (stress, stress1, iterations, converged,
        negative_eigenvalue_share, mirrored, handedness_margin, ...).
    """

    coords: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)
