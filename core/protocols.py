"""The contract of each component kind, written once as a :class:`typing.Protocol`.

:mod:`distfold.hookspecs` says in prose what each kind must do; the protocols
below say the same in a form type checkers read, the registry checks when it
creates a component (:meth:`distfold.registry.Registry.create`) and the
conformance suite (:mod:`distfold.testing`) checks for every built-in and any
third-party component. A component does not inherit from these classes; it only
has the members (structural typing), so ``isinstance(rec, Reconstructor)`` is the
test.

Optional capabilities are declared attributes, never guessed from method
signatures or component names:

- ``Reconstructor.accepts_weights`` (bool): True when ``reconstruct`` uses
  per-pair weights. The core passes ``weights`` only to reconstructors that
  declare True; one that declares False is called as ``reconstruct(distances)``
  and weights meant for it are refused with an InputError before it runs.
- ``DistanceHead.error_distribution`` (``"laplace"``, ``"gaussian"`` or None): how
  the head's ``"variance"`` is to be read when it becomes per-pair confidence. A
  head trained with a Laplace loss says ``"laplace"`` (variance 2 b^2), one whose
  variance is that of a Gaussian or of a binned distribution says ``"gaussian"``,
  and a head without uncertainty says None and returns no ``"variance"``. Read it
  from the instance: a head whose loss is a parameter may set it in ``__init__``.
- ``Backbone.is_pretrained`` (bool): True for pretrained weights with trainable
  adapters (checkpoints then hold only the adapters and name the base model).

Importing this module imports neither numpy nor torch; shapes and units are in
the docstrings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from distfold.components import Reconstruction

#: The values a distance head may declare as its ``error_distribution``.
ERROR_DISTRIBUTIONS: tuple[str | None, ...] = ("laplace", "gaussian", None)


@runtime_checkable
class Configurable(Protocol):
    """What every component has: keyword-only construction and its parameters back.

    ``__init__`` takes keyword parameters only, stores them and does no work;
    ``get_config()`` returns a JSON-serialisable dict of every parameter (defaults
    written out) such that ``type(c)(**c.get_config())`` is equivalent to ``c``.
    :class:`distfold.components.Configurable` implements it from the signature.
    """

    def get_config(self) -> dict[str, Any]: ...


@runtime_checkable
class Backbone(Configurable, Protocol):
    """Sequence embedder, a ``torch.nn.Module`` (hook ``distfold_backbones``).

    ``hidden_size``: the feature width H.
    ``is_pretrained``: True for pretrained weights with trainable adapters, False
    for a model trained from scratch.
    ``forward(sequences)`` (called as ``backbone(sequences)``): ``features`` float32
    (B, L_max, H), one position per residue (never BPE-merged), and ``mask`` bool
    (B, L_max), True on real residues. L = 1, 2, 3 work; deterministic in
    ``eval()`` mode after ``torch.manual_seed``.
    ``trainable_state_dict()``: only the tensors training changes (LoRA adapters,
    or every weight from scratch); ``load_trainable_state_dict(sd)`` restores them.
    """

    hidden_size: int
    is_pretrained: bool

    def __call__(self, sequences: list[str]) -> tuple[Any, Any]: ...

    def forward(self, sequences: list[str]) -> tuple[Any, Any]: ...

    def trainable_state_dict(self) -> dict[str, Any]: ...

    def load_trainable_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class DistanceHead(Configurable, Protocol):
    """Pairwise distance predictor, a ``torch.nn.Module`` (hook ``distfold_distance_heads``).

    Constructed with ``hidden_size`` (the backbone's H) plus its own parameters.
    ``error_distribution``: ``"laplace"``, ``"gaussian"`` or None (see the module
    docstring); None exactly when ``forward`` returns no ``"variance"``.
    ``forward(features (B, L, H), mask (B, L) bool, prior=None)`` (called as
    ``head(features, mask, prior=prior)``) returns a dict with ``"distance"``:
    (B, L, L) float32 in the normaliser's space, symmetric, zero diagonal,
    non-negative, finite; and, when ``error_distribution`` is not None,
    ``"variance"``: (B, L, L) float32 >= 0 in the same space. ``prior`` is the
    separation prior (B, L, L) in the normaliser's space, or None.
    ``loss(output, target (B, L, L) normalised, pair_mask (B, L, L) bool)``: a
    scalar; pairs outside ``pair_mask`` never contribute.
    ``distance_angstrom(output, normaliser)``: (B, L, L) Å;
    ``variance_angstrom(output, normaliser)``: (B, L, L) Å^2, or None.
    Optional (not part of the protocol): ``set_normaliser(normaliser)``, called by
    the model before use, for heads that work in Å internally.
    """

    hidden_size: int
    error_distribution: str | None

    def __call__(self, features: Any, mask: Any, prior: Any = None) -> dict[str, Any]: ...

    def forward(self, features: Any, mask: Any, prior: Any = None) -> dict[str, Any]: ...

    def loss(self, output: dict[str, Any], target: Any, pair_mask: Any) -> Any: ...

    def distance_angstrom(self, output: dict[str, Any], normaliser: Any) -> Any: ...

    def variance_angstrom(self, output: dict[str, Any], normaliser: Any) -> Any | None: ...


@runtime_checkable
class Normaliser(Configurable, Protocol):
    """Maps distances in Å to the space a head predicts in (hook ``distfold_normalisers``).

    ``fit(distances)``: sets global parameters (e.g. one scale) from training
    distances in Å (numpy, any shape; non-finite values ignored) and returns self;
    the parameters live in ``get_config()`` and so in every checkpoint.
    ``encode(d)`` / ``decode(y)``: numpy arrays and torch tensors alike, strictly
    monotonic, ``decode(encode(d)) == d`` to float tolerance, ``encode(0) == 0``.
    """

    def fit(self, distances: Any) -> Any: ...

    def encode(self, d: Any) -> Any: ...

    def decode(self, y: Any) -> Any: ...


@runtime_checkable
class Reconstructor(Configurable, Protocol):
    """Distance matrix -> 3D coordinates, numpy only (hook ``distfold_reconstructors``).

    ``accepts_weights``: True when ``reconstruct`` uses ``weights``. The core then
    passes the per-pair weights (None when it has none); when False it calls
    ``reconstruct(distances)`` only.
    ``reconstruct(distances, weights=None)`` is called by
    :func:`distfold.geometry.reconstruct.reconstruct`, which has already checked the
    input: ``distances`` (L, L) float64, Å, symmetric, non-negative, finite, zero
    diagonal; ``weights`` (L, L) float64 >= 0 or None (0 = ignore the pair, whose
    distance then holds 0). It returns a :class:`distfold.components.Reconstruction`:
    ``coords`` (L, 3) finite, Å, in either hand, and ``diagnostics`` with at least
    ``stress``, ``stress1``, ``iterations`` and ``converged``; the core centres the
    coordinates, chooses the hand and adds ``mirrored`` and ``handedness_margin``.
    Deterministic for a fixed ``seed`` parameter. The full contract is the
    docstring of :func:`distfold.hookspecs.distfold_reconstructors`.
    """

    accepts_weights: bool

    def reconstruct(self, distances: Any, weights: Any = None) -> Reconstruction: ...


#: Component kind (the keys of :data:`distfold.hookspecs.KINDS`) -> its protocol.
PROTOCOLS: dict[str, type] = {
    "backbone": Backbone,
    "distance_head": DistanceHead,
    "normaliser": Normaliser,
    "reconstructor": Reconstructor,
}

_NOT_MEMBERS = {"_is_protocol", "_is_runtime_protocol", "__init__", "__subclasshook__", "__abstractmethods__",
                "__protocol_attrs__", "__non_callable_proto_members__"}


def members(protocol: type) -> list[str]:
    """The attribute and method names ``protocol`` requires, sorted."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base is Protocol or base is object or not getattr(base, "_is_protocol", False):
            continue
        names.update(getattr(base, "__annotations__", {}))
        names.update(k for k, v in vars(base).items() if callable(v) and (not k.startswith("_") or k == "__call__"))
    return sorted(names - _NOT_MEMBERS)


def contract_problems(component: Any, kind: str) -> list[str]:
    """What keeps ``component`` from following the protocol of ``kind`` (empty if nothing).

    Cheap: it reads attributes and calls nothing. Missing members are listed by
    name; declared capabilities must have the declared type and values
    (``accepts_weights`` and ``is_pretrained`` a bool, ``hidden_size`` a positive
    int, ``error_distribution`` one of :data:`ERROR_DISTRIBUTIONS`).
    """
    protocol = PROTOCOLS[kind]
    missing = [name for name in members(protocol) if not hasattr(component, name)]
    if missing:
        return [f"missing {', '.join(missing)} (see distfold.protocols.{protocol.__name__})"]
    problems: list[str] = []
    if kind == "reconstructor" and not isinstance(component.accepts_weights, bool):
        problems.append(f"accepts_weights must be a bool, not {component.accepts_weights!r}")
    if kind == "backbone" and not isinstance(component.is_pretrained, bool):
        problems.append(f"is_pretrained must be a bool, not {component.is_pretrained!r}")
    if kind == "distance_head" and component.error_distribution not in ERROR_DISTRIBUTIONS:
        problems.append(f"error_distribution must be one of {', '.join(map(repr, ERROR_DISTRIBUTIONS))}, "
                        f"not {component.error_distribution!r}")
    if kind in ("backbone", "distance_head"):
        size = component.hidden_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            problems.append(f"hidden_size must be a positive int, not {size!r}")
    if not problems and not isinstance(component, protocol):  # pragma: no cover - members() should agree
        problems.append(f"not a {protocol.__name__}")
    return problems
