"""One loaded model and its prediction settings: sequence -> distances -> structure.

A :class:`Predictor` holds what every prediction of one run shares, decided
once when it is built: the model, the window and stride for chains longer
than the model's crop (:mod:`distfold.pipeline.windows`), the error
distribution of the head's variance (:mod:`distfold.pipeline.confidence`), the
model's confidence calibration (:mod:`distfold.pipeline.calibration`) and the
reconstructor. ``distfold predict`` (a batch of records,
:mod:`distfold.pipeline.predict`), ``evaluate``, ``calibrate`` and the
benchmarks all predict through it, one sequence at a time::

    predictor = Predictor.load(reconstructor="smacof")   # the shipped model
    pred = predictor.predict("MKTAYIAKQR...")              # a Prediction
    pred.coords, pred.confidence, pred.distance

The path of one sequence:

1. :meth:`Predictor.distances`: the model, window by window when the chain is
   longer than the window, merged into one symmetric (L, L) matrix
   (:func:`distfold.pipeline.windows.predict_windowed`), checked for shape and
   finiteness here; the variance reconstruction and confidence use gives the
   pairs no window saw the prior's uncertainty.
2. :meth:`Predictor.reconstruct`: weights ``1 / variance`` for a reconstructor
   that declares ``accepts_weights``, then the core's
   :func:`distfold.geometry.reconstruct.reconstruct` (checks the matrix once,
   calls the plugin, checks the coordinates, centres them and fixes the hand
   once); the per-residue confidence, calibrated when the model has a
   calibration.
3. :meth:`Predictor.predict` adds the secondary-structure probabilities when the
   model returns ``ss_probs`` (merged over windows like the distances) and the
   contact probabilities (:meth:`Predictor.contact_probability`,
   :mod:`distfold.pipeline.contacts`).

Nothing here knows about files, records, devices of several processes or
thread limits: those are the batch's (:mod:`distfold.pipeline.predict`).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distfold.errors import DistfoldError, InputError, UsageError, message

DEFAULT_RECONSTRUCTOR = "smacof"


# -- results ----------------------------------------------------------------------

@dataclass
class PredictedDistances:
    """The model's checked prediction of one sequence of L residues.

    distance: (L, L) float32, Å, symmetric, zero diagonal.
    variance: (L, L) float32, Å^2 (inf where no window saw the pair), or None for a
        head without uncertainty.
    weight_variance: (L, L) float32, Å^2, the variance reconstruction weights and
        confidence use: ``variance`` with the pairs no window saw at the prior's
        uncertainty (:func:`distfold.pipeline.windows.reconstruction_variance`); None
        without a variance.
    coverage: (L, L) uint16, windows that saw each pair, or None.
    windows: how many windows the model ran on (1 for a chain within one window).
    ss_probs: (L, 3) float32 secondary-structure probabilities, columns in
        :data:`distfold.structure.secondary.SS_STATES` order (H, E, C), rows summing
        to 1, merged over windows; None for a model without an SS head.
    """

    distance: np.ndarray
    variance: np.ndarray | None
    weight_variance: np.ndarray | None
    coverage: np.ndarray | None
    windows: int = 1
    ss_probs: np.ndarray | None = None


@dataclass
class Prediction:
    """Everything predicted for one sequence.

    distance: (L, L) float32 Å. variance: (L, L) float32 Å^2 or None.
    coords: (L, 3) float64 Å. confidence: (L,) predicted lDDT 0-100 or None.
    diagnostics: the reconstruction's (stress, iterations, handedness, ...), with
    ``weighted`` and, for a model prediction, ``windows`` and
    ``uncovered_pair_fraction``. timings: seconds per stage (``model_s``,
    ``reconstruct_s``, ``confidence_s``).
    ss_probs: (L, 3) float32 secondary-structure probabilities (H, E, C), or None for a
    model without an SS head; :attr:`ss` is their most probable state per residue.
    contact_prob: (L, L) float32 P(C-alpha distance < 8 Å) under the head's error
    distribution (:mod:`distfold.pipeline.contacts`), or None when not computed.
    """

    sequence: str
    distance: np.ndarray
    variance: np.ndarray | None
    coords: np.ndarray
    confidence: np.ndarray | None
    diagnostics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    ss_probs: np.ndarray | None = None
    contact_prob: np.ndarray | None = None

    @property
    def ss(self) -> str | None:
        """Predicted 3-state secondary structure (H/E/C per residue), or None without ``ss_probs``."""
        if self.ss_probs is None:
            return None
        from distfold.structure.secondary import ss_from_probs

        return ss_from_probs(self.ss_probs)

    @property
    def mean_confidence(self) -> float | None:
        return None if self.confidence is None or not len(self.confidence) else float(np.mean(self.confidence))


# -- loading -----------------------------------------------------------------------

def load_model(model_dir: str | os.PathLike | None, device: str = "cpu"):
    """(model, model_dir) for ``model_dir`` (the shipped default when None), in eval mode on
    ``device``. A missing or unreadable checkpoint is a :class:`DistfoldError` naming it."""
    if model_dir is not None:  # check the path before importing torch: a typo fails fast
        path = Path(model_dir)
        check_model_dir(path, "model")
    from distfold.pipeline.model import DistanceModel, default_model_path

    if model_dir is None:
        path = Path(default_model_path())
        check_model_dir(path, "default model")
    try:
        model = DistanceModel.load(path, device=device)
    except DistfoldError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt checkpoint is a user-facing error
        raise DistfoldError(f"{model_dir or 'default model'}: cannot load model ({message(exc)})") from None
    return model, path


def check_model_dir(path: Path, what: str = "model") -> None:
    """Raise :class:`InputError` unless ``path`` is a directory."""
    if not path.exists():
        raise InputError(f"{path}: {what} not found (a checkpoint directory written by `distfold train`)")
    if not path.is_dir():
        raise InputError(f"{path}: a model is a checkpoint directory, not a file")


def model_identity(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Name and content digest of a checkpoint directory: ``name`` (folder name),
    ``path`` and ``sha256`` (over its config and weight files, first 16 hex digits)."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for f in sorted(model_dir.rglob("*")) if model_dir.is_dir() else []:
        if f.is_file() and f.suffix in (".safetensors", ".json") and f.name != "metrics.jsonl":
            h.update(f.relative_to(model_dir).as_posix().encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return {"name": model_dir.name, "path": str(model_dir), "sha256": h.hexdigest()[:16]}


def error_distribution(model: Any) -> str | None:
    """The distribution the model's head declares for its variance (``"laplace"``,
    ``"gaussian"``, or None for a head without uncertainty; :mod:`distfold.protocols`).

    Read from the model's head instance (``model.head``); for a model that has none
    (a stand-in with only a config), from the class of the head its config names;
    ``"laplace"`` when neither says.
    """
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "error_distribution"):
        return head.error_distribution
    entry = (((getattr(model, "config", None) or {}).get("components") or {}).get("distance_head") or {})
    name = entry.get("name") if isinstance(entry, dict) else None
    if name:
        from distfold.registry import get_registry

        declared = getattr(get_registry().load("distance_head", name), "error_distribution", "laplace")
        return declared
    return "laplace"


def confidence_calibration(model: Any) -> dict[str, Any] | None:
    """The model's confidence calibration (:mod:`distfold.pipeline.calibration`), or None."""
    from distfold.pipeline.calibration import from_config

    try:
        return from_config(getattr(model, "config", None))
    except ValueError as exc:
        raise DistfoldError(str(exc)) from None


def create_reconstructor(name: str) -> Any:
    """A reconstructor by registry name (an unknown name is a :class:`UsageError`)."""
    from distfold.registry import get_registry

    return get_registry().create("reconstructor", name)


def check_distance_output(out: dict[str, Any], n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's (distance, variance) as float32 numpy, checked for shape and finiteness.

    Nothing is symmetrised here: the window merge returns a symmetric matrix with
    a zero diagonal, and the core checks the matrix before any reconstructor
    (:func:`distfold.geometry.reconstruct.reconstruct`)."""
    d = np.asarray(_to_numpy(out["distance"]), dtype=np.float32)
    v = out.get("variance")
    v = None if v is None else np.asarray(_to_numpy(v), dtype=np.float32)
    if d.shape != (n, n) or (v is not None and v.shape != (n, n)):
        raise DistfoldError(f"model returned a {d.shape} distance matrix for a sequence of length {n}")
    if not np.all(np.isfinite(d)):
        raise DistfoldError("model returned non-finite distances")
    if v is not None and np.any(np.isnan(v)):
        raise DistfoldError("model returned NaN variances")
    return d, v


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def config_of(component: Any) -> dict[str, Any] | None:
    """``component.get_config()``, or None when it has none or it fails (diagnostics only)."""
    get = getattr(component, "get_config", None)
    try:
        return get() if get is not None else None
    except Exception:  # noqa: BLE001 - diagnostics only
        return None


# -- the predictor ---------------------------------------------------------------------

class Predictor:
    """A loaded model with its window, stride, error distribution, calibration and reconstructor.

    model: has ``predict(list[str], lengths=list[int])`` and ``config`` (a
        :class:`distfold.pipeline.model.DistanceModel`, or a stand-in in tests).
    reconstructor: a registry name, a reconstructor instance, or None for a
        predictor of distances and confidence only (``distfold calibrate``).
    window, stride: residues per window and between window starts for longer
        chains; default the model's crop and half of it (a bad value is a
        :class:`distfold.errors.UsageError`).
    identity: what to report as the model (``name``, ``path``, ``sha256``,
        ``device``); :meth:`load` fills it from the checkpoint.

    Built once per run; :meth:`predict` then handles one sequence at a time and
    keeps no state between sequences.
    """

    def __init__(self, model: Any, reconstructor: Any = DEFAULT_RECONSTRUCTOR, *, window: int | None = None,
                 stride: int | None = None, identity: dict[str, Any] | None = None):
        from distfold.pipeline.windows import resolve_window

        if isinstance(reconstructor, str):
            self.reconstructor_name = reconstructor
            reconstructor = create_reconstructor(reconstructor)
        elif reconstructor is None:  # distances and confidence only
            self.reconstructor_name = None
        else:
            self.reconstructor_name = getattr(reconstructor, "name", None) or type(reconstructor).__name__
        self.model = model
        self.reconstructor = reconstructor
        self.window, self.stride = resolve_window(model, window, stride)
        self.distribution = error_distribution(model)
        self.calibration = confidence_calibration(model)
        self.identity = dict(identity) if identity is not None else {
            "name": type(model).__name__, "path": None, "sha256": None, "device": None}

    @classmethod
    def load(cls, model_dir: str | os.PathLike | None = None, reconstructor: Any = DEFAULT_RECONSTRUCTOR,
             device: str = "cpu", window: int | None = None, stride: int | None = None) -> "Predictor":
        """The predictor of a checkpoint directory (the shipped model when None) on ``device``
        (``cpu`` or ``cuda[:k]``; the batch resolves ``auto``, :func:`distfold.pipeline.predict.resolve_device`)."""
        model, path = load_model(model_dir, device)
        identity = model_identity(path)
        identity["device"] = device
        return cls(model, reconstructor, window=window, stride=stride, identity=identity)

    # -- what the run reports --------------------------------------------------------------
    @property
    def reconstructor_info(self) -> dict[str, Any]:
        """``{"name", "config"}`` of the reconstructor, as the output files record it."""
        return {"name": self.reconstructor_name, "config": config_of(self.reconstructor)}

    @property
    def confidence_method(self) -> str:
        """One line saying what the confidence is (for a head with uncertainty)."""
        cal = self.calibration
        return (f"predicted C-alpha lDDT (0-100) under a {self.distribution} per-pair error model"
                + (f", calibrated on {cal.get('n_chains')} {cal.get('split')} chains" if cal else ", uncalibrated"))

    # -- one sequence --------------------------------------------------------------------
    def distances(self, sequence: str) -> PredictedDistances:
        """The model's checked (L, L) prediction of ``sequence``, window by window when it is
        longer than the window (:func:`distfold.pipeline.windows.predict_windowed`)."""
        from distfold.pipeline.windows import predict_windowed, reconstruction_variance

        out = predict_windowed(self.model, sequence, self.window, self.stride)
        d, v = check_distance_output(out, len(sequence))
        coverage = out.get("coverage")
        wv = reconstruction_variance({**out, "distance": d, "variance": v}) if v is not None and coverage is not None \
            else v
        ss = out.get("ss_probs")
        if ss is not None:
            ss = np.asarray(_to_numpy(ss), dtype=np.float32)
            if ss.shape != (len(sequence), 3) or not np.all(np.isfinite(ss)):
                raise DistfoldError(f"model returned ss_probs of shape {ss.shape} (or non-finite) for a sequence "
                                    f"of length {len(sequence)}; expected ({len(sequence)}, 3)")
        return PredictedDistances(d, v, wv, coverage, len(out.get("windows", [])) or 1, ss)

    def contact_probability(self, distance: np.ndarray, variance: np.ndarray | None) -> np.ndarray:
        """(L, L) float32 P(C-alpha distance < 8 Å) under the head's error distribution, in the
        space it lives in (the model's normaliser; :mod:`distfold.pipeline.contacts`).
        ``variance``: the reconstruction variance (pairs no window saw at the prior's
        uncertainty); None gives 1 below 8 Å and 0 above."""
        from distfold.pipeline.contacts import contact_probability

        return contact_probability(distance, variance, self.distribution, getattr(self.model, "normaliser", None))

    def confidence(self, distance: np.ndarray, variance: np.ndarray | None, calibrated: bool = True
                   ) -> np.ndarray | None:
        """(L,) per-residue predicted lDDT, 0-100, under the head's error distribution;
        mapped through the model's calibration unless ``calibrated`` is False; None
        without a variance."""
        from distfold.pipeline.calibration import apply
        from distfold.pipeline.confidence import predicted_lddt

        raw = predicted_lddt(distance, variance, self.distribution or "laplace")
        return apply(raw, self.calibration) if calibrated else raw

    def reconstruct(self, sequence: str, distance: np.ndarray, variance: np.ndarray | None = None, *,
                    coverage: np.ndarray | None = None, weight_variance: np.ndarray | None = None) -> Prediction:
        """Coordinates and confidence from a distance matrix of ``sequence``.

        distance: (L, L) Å. variance: (L, L) Å^2 or None. Weights ``1 / variance``
        (``weight_variance`` when given: pairs no window saw at the prior's
        uncertainty) go to a reconstructor that declares ``accepts_weights``; without a
        variance, pairs no window saw (``coverage`` 0) get weight 0 and the others 1.
        The confidence uses the same variance, so those pairs lower it instead of
        being skipped."""
        from distfold.geometry.reconstruct import reconstruct
        from distfold.pipeline.confidence import weights_from_variance

        if self.reconstructor is None:
            raise UsageError("this predictor has no reconstructor (built with reconstructor=None)")
        timings: dict[str, float] = {}
        t = time.perf_counter()
        wv = variance if weight_variance is None else weight_variance
        weights = None
        if self.reconstructor.accepts_weights:
            weights = weights_from_variance(wv)
            if weights is None and coverage is not None and not (coverage > 0).all():
                weights = (coverage > 0).astype(np.float64)
                np.fill_diagonal(weights, 0.0)
        rec = reconstruct(self.reconstructor, distance.astype(np.float64), weights)
        timings["reconstruct_s"] = time.perf_counter() - t
        t = time.perf_counter()
        conf = self.confidence(distance, wv)
        timings["confidence_s"] = time.perf_counter() - t
        diag = dict(rec.diagnostics)
        diag["weighted"] = weights is not None
        return Prediction(sequence, distance, variance, np.asarray(rec.coords, dtype=np.float64), conf, diag,
                          timings)

    def predict(self, sequence: str) -> Prediction:
        """Distances (:meth:`distances`), coordinates and confidence (:meth:`reconstruct`) of one
        sequence, with its secondary-structure probabilities (when the model predicts them) and
        contact probabilities (:meth:`contact_probability`)."""
        t = time.perf_counter()
        p = self.distances(sequence)
        return self.complete(sequence, p, time.perf_counter() - t)

    def complete(self, sequence: str, p: PredictedDistances, model_s: float = 0.0) -> Prediction:
        """The rest of :meth:`predict` after the model: coordinates, confidence, secondary-structure
        and contact probabilities from its :class:`PredictedDistances` ``p`` (``model_s``: the
        model's seconds, for the timings). Uses the model's normaliser but not the model itself,
        so ``distfold evaluate`` runs it in worker processes that do not load torch."""
        pred = self.reconstruct(sequence, p.distance, p.variance, coverage=p.coverage,
                                weight_variance=p.weight_variance)
        t = time.perf_counter()
        pred.ss_probs = p.ss_probs
        pred.contact_prob = self.contact_probability(p.distance, p.weight_variance)
        pred.timings = {"model_s": model_s, **pred.timings, "contacts_s": time.perf_counter() - t}
        pred.diagnostics["windows"] = p.windows
        n = len(sequence)
        if p.coverage is not None and n > 1:  # share of pairs i < j that no window saw
            pred.diagnostics["uncovered_pair_fraction"] = round(float((p.coverage == 0).sum() / (n * (n - 1))), 6)
        return pred
