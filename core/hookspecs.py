"""Every hook distfold defines, in one place.

There is one zero-argument hook per component kind. Each returns a list of
:class:`ComponentSpec` -- a name, a factory that is imported only when the
component is used, and a one-line summary -- never an instance, so that
listing components (``distfold plugins``, ``--help``) imports nothing heavy.
A plugin module must not import torch, transformers or peft at module level.

A complete third-party plugin is one module plus an entry point::

    # my_plugin/hooks.py
    from distfold import ComponentSpec, hookimpl

    @hookimpl
    def distfold_reconstructors():
        return [ComponentSpec("spectral", "my_plugin.spectral:Spectral",
                              "Spectral embedding of the distance matrix.")]

    # pyproject.toml
    [project.entry-points."distfold.plugins"]
    my_plugin = "my_plugin.hooks"

Every component class follows the same construction contract: ``__init__``
takes keyword parameters only, stores them, and does no work; ``get_config()``
returns a JSON-serialisable dict of every parameter (defaults written out) such
that ``cls(**cls(**p).get_config())`` is equivalent. :mod:`distfold.testing`
checks each kind's contract below; run it on your own components. The same
contracts are :class:`typing.Protocol` classes in :mod:`distfold.protocols`
(``Backbone``, ``DistanceHead``, ``Normaliser``, ``Reconstructor``), which
type checkers read and :meth:`distfold.registry.Registry.create` checks. Optional
capabilities are declared attributes (``accepts_weights``, ``error_distribution``,
``is_pretrained``), never guessed from signatures or names.

Besides the four component kinds, one hook provides **trained models**
(:func:`distfold_models`, returning :class:`ModelSpec`): a name users type
(``distfold predict --model NAME``), the components the model is built from, and
where its checkpoint directory is. ``distfold models`` lists them.

Only functions marked ``@hookimpl`` are hooks, and their names must match a
spec below: the registry reports a marked function that matches none (a typo,
``distfold_reconstructorz``) as a failure of that plugin, and ignores, with a
warning, an unmarked function named like a hook.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Any, Callable, Union, cast

import pluggy

PROJECT = "distfold"
ENTRY_POINT_GROUP = "distfold.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The component kinds, in the order they run, mapped to their hook names.
KINDS: dict[str, str] = {
    "backbone": "distfold_backbones",
    "distance_head": "distfold_distance_heads",
    "normaliser": "distfold_normalisers",
    "reconstructor": "distfold_reconstructors",
}

#: The hook that provides trained models (:class:`ModelSpec`), beside the component kinds.
MODEL_HOOK = "distfold_models"

#: Every hook name, component kinds first.
HOOK_NAMES: tuple[str, ...] = (*KINDS.values(), MODEL_HOOK)


@dataclass(frozen=True)
class ComponentSpec:
    """What a plugin says about one component.

    name: lower-case identifier users type (``--reconstruct smacof``).
    factory: a class/callable, or an import string ``"package.module:Attr"``
        resolved only when the component is used.
    summary: one line shown by ``distfold plugins``.
    """

    name: str
    factory: Union[str, Callable[..., Any]]
    summary: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.lower():
            raise ValueError(f"component name {self.name!r} must be a non-empty lower-case string")
        if not (isinstance(self.factory, str) or callable(self.factory)):
            raise ValueError(f"component {self.name!r}: factory must be an import string or callable")
        if isinstance(self.factory, str) and ":" not in self.factory:
            raise ValueError(f"component {self.name!r}: factory string must look like 'module:attr'")

    def load(self) -> Callable[..., Any]:
        """Import and return the factory."""
        if callable(self.factory):
            return self.factory
        return cast("Callable[..., Any]", _import_attr(self.factory))


def _import_attr(target: str) -> Any:
    """The object an import string ``"package.module:attr.sub"`` names (imported now)."""
    import importlib

    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ModelSpec:
    """What a plugin says about one trained model (hook :func:`distfold_models`).

    name: lower-case identifier users type (``distfold predict --model NAME``).
    summary: one line shown by ``distfold models``.
    backbone, distance_head, normaliser: the component names the model is built
        from, as its ``config.json`` records them (``components.<kind>.name``);
        ``distfold predict --backbone NAME`` chooses among models by these without
        opening any checkpoint, and the core checks them against the config.
    path: the checkpoint directory (``config.json`` + ``*.safetensors``, as
        ``distfold train`` writes it), a ``str`` or :class:`os.PathLike`; or
    loader: instead of ``path``, a zero-argument callable, or an import string
        ``"package.module:function"`` resolved only on use, that returns the
        directory (for weights that are unpacked or located when first needed; it
        must not download anything without the user asking). Exactly one of
        ``path`` and ``loader``.
    data_card: the model's data card (what it was trained on, how, and its
        numbers), a Markdown file; a relative path is read inside the checkpoint
        directory. None when there is none.
    default: True when this model is the one ``--backbone NAME`` picks among
        several installed models built on that backbone (see
        :func:`distfold.pipeline.models.select_model` for the rule).

    Constructing a spec imports nothing and reads no file.
    """

    name: str
    summary: str
    backbone: str
    distance_head: str
    normaliser: str
    path: Union[str, "os.PathLike[str]", None] = None
    loader: Union[str, Callable[[], Any], None] = None
    data_card: Union[str, None] = "DATA_CARD.md"
    default: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.lower():
            raise ValueError(f"model name {self.name!r} must be a non-empty lower-case string")
        for field_name in ("backbone", "distance_head", "normaliser"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value or value != value.lower():
                raise ValueError(f"model {self.name!r}: {field_name} must be a lower-case component name, "
                                 f"not {value!r}")
        if (self.path is None) == (self.loader is None):
            raise ValueError(f"model {self.name!r}: give exactly one of path and loader")
        if self.path is not None and not isinstance(self.path, (str, os.PathLike)):
            raise ValueError(f"model {self.name!r}: path must be a str or os.PathLike")
        if isinstance(self.loader, str) and ":" not in self.loader:
            raise ValueError(f"model {self.name!r}: loader string must look like 'module:function'")
        if self.loader is not None and not (isinstance(self.loader, str) or callable(self.loader)):
            raise ValueError(f"model {self.name!r}: loader must be an import string or callable")
        if not isinstance(self.default, bool):
            raise ValueError(f"model {self.name!r}: default must be a bool")

    def location(self) -> Path:
        """The checkpoint directory: ``path``, or what ``loader`` returns (called now)."""
        if self.path is not None:
            return Path(self.path)
        loader = _import_attr(self.loader) if isinstance(self.loader, str) else self.loader
        return Path(cast("Callable[[], Any]", loader)())

    def data_card_path(self, directory: Union[str, "os.PathLike[str]", None] = None) -> Union[Path, None]:
        """The data card's file (relative paths inside ``directory``, default :meth:`location`)."""
        if self.data_card is None:
            return None
        card = Path(self.data_card)
        if card.is_absolute():
            return card
        return Path(directory if directory is not None else self.location()) / card


@hookspec
def distfold_backbones() -> list[ComponentSpec]:
    """Sequence embedders (a ``torch.nn.Module``).

    Contract (:class:`distfold.protocols.Backbone`, checked by
    :func:`distfold.testing.check_backbone`):

    - ``hidden_size``: int, the feature width;
    - ``is_pretrained``: bool, True for pretrained weights with trainable adapters
      (checkpoints then hold only the adapters and reference the base model).
    - ``forward(sequences: list[str]) -> (features, mask)``: ``features`` is a
      float32 tensor (B, L_max, hidden_size), one position per residue (never
      BPE-merged), ``mask`` a bool tensor (B, L_max), True on real residues.
      L = 1, 2, 3 must work.
    - Deterministic in ``eval()`` mode after ``torch.manual_seed``.
    - ``get_config()`` round-trips through JSON; ``trainable_state_dict()`` holds
      only tensors that training changes (LoRA adapters, or everything for a
      model trained from scratch); ``load_trainable_state_dict(sd)`` restores them.
    """


@hookspec
def distfold_distance_heads() -> list[ComponentSpec]:
    """Pairwise distance predictors on top of a backbone (a ``torch.nn.Module``).

    Contract (:class:`distfold.protocols.DistanceHead`, checked by
    :func:`distfold.testing.check_distance_head`):

    - constructed with ``hidden_size`` plus its own parameters;
    - ``error_distribution``: ``"laplace"`` (a head trained with a Laplace loss; variance
      2 b^2), ``"gaussian"`` (a Gaussian or binned-distribution variance) or None (no
      uncertainty, and then no ``"variance"`` output); it says how the core turns the
      variance into confidence;
    - ``forward(features (B, L, H), mask (B, L), prior=None) -> dict`` with
      ``"distance"``: (B, L, L) float32 in the normaliser's space, symmetric, zero on
      the diagonal, non-negative, finite; and, where the head models uncertainty,
      ``"variance"``: (B, L, L) float32 >= 0 in the same space. ``prior`` is the
      separation prior (B, L, L) in the normaliser's space; a head may use it as an
      input feature (the built-ins do when ``use_prior`` is true) or ignore it;
    - optional ``set_normaliser(normaliser)``: called by the model before use, for
      heads that work in Å internally (e.g. distogram bins);
    - ``loss(output, target (B, L, L) normalised, pair_mask (B, L, L) bool) -> scalar``;
      pairs outside ``pair_mask`` (masked residues, padding, the diagonal) never
      contribute;
    - ``distance_angstrom(output, normaliser) -> (B, L, L)`` and
      ``variance_angstrom(output, normaliser)``, the point estimate and its
      uncertainty in Å (variance may be None).
    """


@hookspec
def distfold_normalisers() -> list[ComponentSpec]:
    """Maps between distances in Å and the space a head predicts in.

    Contract (:class:`distfold.protocols.Normaliser`, checked by
    :func:`distfold.testing.check_normaliser`):

    - ``fit(distances: np.ndarray)`` sets any global parameters (e.g. one global
      scale) from an array of training distances in Å; parameters live in
      ``get_config()`` and so in every checkpoint;
    - ``encode(d)`` and ``decode(y)`` work on numpy arrays and torch tensors,
      are strictly monotonic, and ``decode(encode(d)) == d`` to float tolerance;
      ``encode(0) == 0``.
    """


@hookspec
def distfold_reconstructors() -> list[ComponentSpec]:
    """Distance matrix -> 3D coordinates (numpy; no torch needed).

    Contract (:class:`distfold.protocols.Reconstructor`, checked by
    :func:`distfold.testing.check_reconstructor`):

    - ``accepts_weights``: bool; True when ``reconstruct`` uses per-pair weights. The
      core passes ``weights`` only when it is True and calls ``reconstruct(distances)``
      otherwise;
    - ``reconstruct(distances, weights=None) -> Reconstruction``, called only by
      :func:`distfold.geometry.reconstruct.reconstruct`, which first checks the input
      once (:func:`distfold.geometry.distmat.check_distances`). So the plugin receives,
      and need not check: ``distances`` (L, L) float64, Å, L >= 1, exactly symmetric,
      non-negative, finite, zero diagonal; ``weights`` (L, L) float64, exactly
      symmetric, >= 0, finite, zero diagonal, some pair > 0 (L > 1), or None (every
      pair weighs 1). The pairs that count are those with ``weights > 0`` (the
      "known" mask); an ignored pair holds distance 0, whatever the caller gave.
      :func:`distfold.geometry.distmat.as_checked` wraps the two arrays as a
      ``CheckedDistances`` (``known`` included) without copying them;
    - it returns ``Reconstruction(coords, diagnostics)``: coords (L, 3) finite, Å, in
      either hand and anywhere in space; ``diagnostics`` the method's own, with at
      least ``stress``, ``stress1``, ``iterations`` and ``converged`` (numpy scalars
      are fine). It does not centre the coordinates or choose the hand;
    - after it, the core checks the coordinates ((L, 3), finite; otherwise a one-line
      :class:`distfold.errors.DistfoldError` naming the reconstructor), centres them,
      chooses the hand once (:func:`distfold.geometry.handedness.fix_handedness`),
      adds ``max_asymmetry``, ``weighted``, ``mirrored`` and ``handedness_margin`` to
      the diagnostics and makes them plain JSON. Bad input never reaches the plugin:
      the core raises :class:`distfold.errors.InputError`, as it does for weights
      given to a reconstructor without ``accepts_weights``;
    - through the core, exact input is reproduced up to a proper rigid motion;
      L = 1, 2, 3 give sensible coordinates; deterministic for a fixed ``seed``
      parameter.
    """


@hookspec
def distfold_models() -> list[ModelSpec]:
    """Trained models: a checkpoint directory with the names of its components.

    A plugin that ships weights returns one :class:`ModelSpec` per model; the core
    lists them (``distfold models``: name, backbone, parameters, size and the
    validation numbers of the checkpoint's ``config.json``) and resolves
    ``distfold predict --model NAME`` and ``--backbone NAME`` to them. The
    components the model names must be installed too (from the same plugin or
    another); the checkpoint is an ordinary ``distfold train`` output directory.
    distfold's own shipped model arrives through this hook (plugin
    ``default_model``). A complete plugin with a model::

        # my_plugin/hooks.py
        from pathlib import Path
        from distfold import ModelSpec, hookimpl

        @hookimpl
        def distfold_models():
            return [ModelSpec("my-model", "My backbone + regression head, trained on X.",
                              backbone="my-backbone", distance_head="regression",
                              normaliser="log1p", path=Path(__file__).parent / "my_model")]

    Contract (checked when the model is listed or used):

    - ``name`` is unique among installed models (a name two plugins provide is
      listed as a conflict and using it is an error naming both);
    - ``path`` (or what ``loader`` returns) is a directory with a ``config.json``
      in distfold's model format whose components are ``backbone``,
      ``distance_head`` and ``normaliser``;
    - nothing heavy is imported and no file is read to build the spec; ``loader``
      runs only when the model is used or described (``distfold models``; ``distfold
      plugins`` lists the spec alone).
    """
