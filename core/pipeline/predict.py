"""``distfold predict``: sequences -> distance matrix -> C-alpha structure.

Per record, in the output folder (``<id>`` from :func:`distfold.structure.sequence.safe_id`):

- ``<id>.distmat.npy``: the predicted (L, L) float32 distance matrix, Å,
  symmetric, zero diagonal;
- ``<id>.pdb`` (or ``.cif``): the reconstructed C-alpha trace, with the
  per-residue confidence (predicted lDDT, 0-100, :mod:`distfold.pipeline.confidence`)
  in the B-factor column (0 when the model has no uncertainty);
- ``<id>.scores.json``: length, mean confidence, reconstruction diagnostics,
  handedness decision, timings, model id. Written last: its presence marks a
  complete record.

Every file is written atomically. Records run shortest first; a record that
fails (bad letters, out of memory, ...) is reported and the rest continue.
Complete records are skipped unless ``overwrite``, so an interrupted batch
resumes where it stopped. Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set)
each process takes ``records[rank::world_size]`` of the length-sorted list;
each record is predicted on its own, so the files do not depend on how the
records were shared out.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from distfold.errors import DistfoldError, InputError
from distfold.fileio import atomic_write, save_npy_atomic
from distfold.structure.sequence import SequenceRecord

FORMATS = ("pdb", "cif")
DEFAULT_RECONSTRUCTOR = "smacof"
SCORES_SUFFIX = ".scores.json"
DISTMAT_SUFFIX = ".distmat.npy"


# -- records and files --------------------------------------------------------

def output_paths(outdir: str | os.PathLike, record_id: str, fmt: str = "pdb") -> dict[str, Path]:
    """The files of one record: ``structure``, ``distmat`` and ``scores``."""
    outdir = Path(outdir)
    return {"structure": outdir / f"{record_id}.{fmt}", "distmat": outdir / f"{record_id}{DISTMAT_SUFFIX}",
            "scores": outdir / f"{record_id}{SCORES_SUFFIX}"}


def is_complete(paths: dict[str, Path]) -> bool:
    """True when every file of a record exists (the scores file is written last)."""
    return all(p.is_file() for p in paths.values())


def sort_records(records: Sequence[SequenceRecord]) -> list[SequenceRecord]:
    """Shortest first; input order breaks ties."""
    return sorted(records, key=lambda r: (r.length, r.index))


def shard(records: Sequence[SequenceRecord], rank: int, world_size: int) -> list[SequenceRecord]:
    """This process's share of the length-sorted records: ``sorted[rank::world_size]``."""
    return sort_records(records)[rank::world_size]


def distributed_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    def get(name: str, default: int) -> int:
        raw = os.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise InputError(f"environment variable {name}={raw!r} is not an integer") from None

    world = get("WORLD_SIZE", 1)
    rank = get("RANK", 0)
    local = get("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent (need 0 <= RANK < WORLD_SIZE)")
    return rank, world, local


def resolve_device(device: str, local_rank: int = 0) -> str:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    device = (device or "auto").lower()
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}"
    if device == "cuda":
        raise InputError("--device cuda requested but CUDA is not available")
    return "cpu"


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Limit torch's intra-op threads and the BLAS/OpenMP pools to ``n`` for the
    block (no limit when None). The thread count changes how reductions are split,
    and so the last bits of float results: the CLI's default of 1 makes a
    single-process run write the same files as any torchrun split (torchrun
    processes get 1 too). On this project's busy 2-core machine one thread was
    also faster than two (measured; see the README)."""
    if not n:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        torch.set_num_threads(before)


# -- model --------------------------------------------------------------------

def model_identity(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Name and content digest of a checkpoint directory: ``name`` (folder name)
    and ``sha256`` (over its config and weight files, first 16 hex digits)."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for f in sorted(model_dir.rglob("*")) if model_dir.is_dir() else []:
        if f.is_file() and f.suffix in (".safetensors", ".json") and f.name != "metrics.jsonl":
            h.update(f.relative_to(model_dir).as_posix().encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return {"name": model_dir.name, "path": str(model_dir), "sha256": h.hexdigest()[:16]}


def load_model(model_dir: str | os.PathLike | None, device: str = "cpu"):
    """(model, model_dir) for ``model_dir`` (the shipped default when None), in eval mode on ``device``."""
    if model_dir is not None:  # check the path before importing torch: a typo fails fast
        path = Path(model_dir)
        _check_model_dir(path, "model")
    from distfold.pipeline.model import DistanceModel, default_model_path

    if model_dir is None:
        path = Path(default_model_path())
        _check_model_dir(path, "default model")
    load = DistanceModel.load
    if "device" in inspect.signature(load).parameters:
        model = load(path, device=device)
    else:
        model = load(path)
        if device != "cpu" and hasattr(model, "to"):
            model = model.to(device)
    return model, path


def _check_model_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} not found (a checkpoint directory written by `distfold train`)")
    if not path.is_dir():
        raise InputError(f"{path}: a model is a checkpoint directory, not a file")


def confidence_distribution(model_config: dict[str, Any] | None) -> str:
    """``gaussian`` for a distogram head (its variance is that of a binned
    distribution), ``laplace`` otherwise (heads trained with a Laplace loss)."""
    head = ((model_config or {}).get("components") or {}).get("distance_head") or {}
    return "gaussian" if isinstance(head, dict) and head.get("name") == "distogram" else "laplace"


def confidence_calibration(model_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The model's confidence calibration (:mod:`distfold.pipeline.calibration`), or None."""
    from distfold.pipeline.calibration import from_config

    try:
        return from_config(model_config)
    except ValueError as exc:
        raise DistfoldError(str(exc)) from None


def create_reconstructor(name: str):
    from distfold.registry import get_registry

    return get_registry().create("reconstructor", name)


def takes_weights(reconstructor: Any) -> bool:
    try:
        return "weights" in inspect.signature(reconstructor.reconstruct).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return False


# -- one sequence ---------------------------------------------------------------

@dataclass
class Prediction:
    """Everything predicted for one sequence.

    distance: (L, L) float32 Å. variance: (L, L) float32 Å^2 or None.
    coords: (L, 3) float64 Å. confidence: (L,) predicted lDDT 0-100 or None.
    """

    sequence: str
    distance: np.ndarray
    variance: np.ndarray | None
    coords: np.ndarray
    confidence: np.ndarray | None
    diagnostics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mean_confidence(self) -> float | None:
        return None if self.confidence is None or not len(self.confidence) else float(np.mean(self.confidence))


def check_distance_output(out: dict[str, Any], n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's (distance, variance) as float32 numpy, checked for shape and finiteness."""
    d = np.asarray(_to_numpy(out["distance"]), dtype=np.float32)
    v = out.get("variance")
    v = None if v is None else np.asarray(_to_numpy(v), dtype=np.float32)
    if d.shape != (n, n) or (v is not None and v.shape != (n, n)):
        raise DistfoldError(f"model returned a {d.shape} distance matrix for a sequence of length {n}")
    if not np.all(np.isfinite(d)):
        raise DistfoldError("model returned non-finite distances")
    if v is not None and np.any(np.isnan(v)):
        raise DistfoldError("model returned NaN variances")
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    d = np.maximum(d, 0.0)
    return d.astype(np.float32), v


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def reconstruct_and_score(sequence: str, distance: np.ndarray, variance: np.ndarray | None, reconstructor: Any,
                          distribution: str = "laplace", coverage: np.ndarray | None = None,
                          weight_variance: np.ndarray | None = None,
                          calibration: dict[str, Any] | None = None) -> Prediction:
    """Coordinates (weights 1/variance where the reconstructor takes them) and confidence
    (mapped through the model's ``calibration``, :mod:`distfold.pipeline.calibration`, when it has one).

    coverage: (L, L) windows that saw each pair (:mod:`distfold.pipeline.windows`); without a
    variance, pairs no window saw get weight 0 and the others 1. weight_variance:
    the variance to weight by when it differs from ``variance`` (pairs no window saw
    take the prior's uncertainty, :func:`distfold.pipeline.windows.reconstruction_variance`); the
    confidence uses it too."""
    from distfold.pipeline.calibration import apply as calibrate
    from distfold.pipeline.confidence import predicted_lddt, weights_from_variance

    timings: dict[str, float] = {}
    t = time.perf_counter()
    wv = variance if weight_variance is None else weight_variance
    weights = weights_from_variance(wv) if takes_weights(reconstructor) else None
    if weights is None and coverage is not None and takes_weights(reconstructor) and not (coverage > 0).all():
        weights = (coverage > 0).astype(np.float64)
        np.fill_diagonal(weights, 0.0)
    if weights is not None:
        rec = reconstructor.reconstruct(distance.astype(np.float64), weights=weights)
    else:
        rec = reconstructor.reconstruct(distance.astype(np.float64))
    timings["reconstruct_s"] = time.perf_counter() - t
    t = time.perf_counter()
    # pairs no window saw count with the prior's uncertainty: they may be contacts the model
    # never looked at, so they lower the confidence instead of being skipped
    conf = calibrate(predicted_lddt(distance, wv, distribution), calibration)
    timings["confidence_s"] = time.perf_counter() - t
    coords = np.asarray(rec.coords, dtype=np.float64)
    if coords.shape != (len(sequence), 3) or not np.all(np.isfinite(coords)):
        raise DistfoldError(f"reconstructor returned coordinates of shape {coords.shape} with "
                            f"{'non-finite' if coords.size and not np.all(np.isfinite(coords)) else 'finite'} values")
    diag = dict(rec.diagnostics)
    diag["weighted"] = weights is not None
    return Prediction(sequence, distance, variance, coords, conf, diag, timings)


def predict_distances(model: Any, sequence: str, window: int | None = None,
                      stride: int | None = None) -> dict[str, Any]:
    """The model's checked (L, L) prediction of one sequence, window by window when it
    is longer than ``window`` (default the model's crop, :func:`distfold.pipeline.windows.predict_windowed`):
    ``distance``; ``variance`` (None without one); ``weight_variance``, the variance that
    reconstruction weights and confidence use (pairs no window saw at the prior's
    uncertainty, :func:`distfold.pipeline.windows.reconstruction_variance`); ``coverage`` (None for
    a model without windows) and ``windows`` (how many)."""
    from distfold.pipeline.windows import predict_windowed, reconstruction_variance

    out = predict_windowed(model, sequence, window, stride)
    d, v = check_distance_output(out, len(sequence))
    coverage = out.get("coverage")
    wv = reconstruction_variance({**out, "distance": d, "variance": v}) if v is not None and coverage is not None \
        else v
    return {"distance": d, "variance": v, "weight_variance": wv, "coverage": coverage,
            "windows": len(out.get("windows", [])) or 1}


def predict_sequence(model: Any, sequence: str, reconstructor: Any, distribution: str = "laplace",
                     window: int | None = None, stride: int | None = None,
                     calibration: dict[str, Any] | None = None) -> Prediction:
    """Predict the distances of one sequence (:func:`predict_distances`), rebuild
    coordinates, compute confidence."""
    t = time.perf_counter()
    p = predict_distances(model, sequence, window, stride)
    model_s = time.perf_counter() - t
    coverage = p["coverage"]
    pred = reconstruct_and_score(sequence, p["distance"], p["variance"], reconstructor, distribution, coverage,
                                 p["weight_variance"], calibration)
    pred.timings = {"model_s": model_s, **pred.timings}
    pred.diagnostics["windows"] = p["windows"]
    if coverage is not None and len(sequence) > 1:  # share of pairs i < j that no window saw
        pred.diagnostics["uncovered_pair_fraction"] = round(
            float((coverage == 0).sum() / (len(sequence) * (len(sequence) - 1))), 6)
    return pred


def write_prediction(pred: Prediction, paths: dict[str, Path], fmt: str, scores: dict[str, Any]) -> None:
    """The three files, atomically, scores last."""
    from distfold.structure.io import write_ca_trace

    save_npy_atomic(paths["distmat"], pred.distance.astype(np.float32))
    bf = np.zeros(len(pred.sequence)) if pred.confidence is None else np.round(pred.confidence, 2)
    write_ca_trace(paths["structure"], pred.coords, pred.sequence, bf, fmt)
    with atomic_write(paths["scores"], "w") as fh:
        json.dump(scores, fh, indent=2, sort_keys=True, default=_json_default)
        fh.write("\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def handedness_of(diagnostics: dict[str, Any]) -> dict[str, Any]:
    return {"mirrored": diagnostics.get("mirrored"), "margin": diagnostics.get("handedness_margin"),
            "rule": "C-alpha pseudo-torsions: mirror when more fall in -80..-30 deg than in +30..+80 deg"}


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return f"out of memory ({type(exc).__name__}); try a shorter sequence, or --device cpu for more memory"
    if isinstance(exc, DistfoldError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the batch -----------------------------------------------------------------

def run_predict(records: Sequence[SequenceRecord], outdir: str | os.PathLike, *, model_dir=None,
                reconstruct: str = DEFAULT_RECONSTRUCTOR, fmt: str = "pdb", device: str = "auto",
                overwrite: bool = False, max_length: int | None = None, log: Callable[[str], None] | None = None,
                model: Any = None, rank: int | None = None, world_size: int | None = None,
                window: int | None = None, stride: int | None = None) -> dict[str, Any]:
    """Predict ``records`` into ``outdir``; returns a summary dict (``failed`` > 0 means exit code 1).

    ``model``: an already loaded model (tests, embedding); otherwise ``model_dir``
    (or the shipped default) is loaded, but only if some record needs predicting.
    ``rank``/``world_size`` default to torchrun's environment. ``max_length``:
    records longer than this fail; None refuses only what the available memory
    cannot hold (:func:`distfold.pipeline.windows.check_length`). ``window``/``stride``:
    residues per prediction window and between window starts for chains longer
    than the window (default the model's crop and half of it).
    """
    from distfold.pipeline.windows import check_length, resolve_window

    from distfold import __version__

    t_start = time.perf_counter()
    log = log or (lambda _msg: None)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use pdb or cif")
    env_rank, env_world, local_rank = distributed_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a directory")
    outdir.mkdir(parents=True, exist_ok=True)
    mine = shard(records, rank, world_size)
    prefix = f"[rank {rank}/{world_size}] " if world_size > 1 else ""
    reconstructor = create_reconstructor(reconstruct)
    rec_info = {"name": reconstruct, "config": _config_of(reconstructor)}

    model_info: dict[str, Any] | None = None
    distribution = "laplace"
    load_s = 0.0
    todo = [r for r in mine if r.error is None and (overwrite or not is_complete(output_paths(outdir, r.id, fmt)))]
    if todo:  # load the model only when something needs predicting (a finished batch resumes instantly)
        t = time.perf_counter()
        if model is None:
            if model_dir is not None:
                _check_model_dir(Path(model_dir), "model")  # before torch is imported
            dev = resolve_device(device, local_rank)
            try:
                model, path = load_model(model_dir, dev)
            except DistfoldError:
                raise
            except Exception as exc:  # noqa: BLE001 - a corrupt checkpoint is a user-facing error
                raise DistfoldError(f"{model_dir or 'default model'}: cannot load model "
                                    f"({_failure_message(exc)})") from None
            model_info = model_identity(path)
            model_info["device"] = dev
        else:
            model_info = {"name": type(model).__name__, "path": None, "sha256": None, "device": None}
        distribution = confidence_distribution(getattr(model, "config", None))
        calibration = confidence_calibration(getattr(model, "config", None))
        window, stride = resolve_window(model, window, stride)
        load_s = time.perf_counter() - t
        log(f"{prefix}model {model_info['name']} loaded in {load_s:.1f} s; reconstructor {reconstruct}; "
            f"{len(todo)} to predict of {len(mine)} records in this process ({len(records)} in all)")

    results: list[dict[str, Any]] = []
    width = len(str(len(mine)))
    for k, rec in enumerate(mine, start=1):
        tag = f"{prefix}[{k:>{width}}/{len(mine)}] {rec.id}  L={rec.length}"
        paths = output_paths(outdir, rec.id, fmt)
        entry: dict[str, Any] = {"id": rec.id, "length": rec.length, "status": None, "confidence": None,
                                 "seconds": None, "error": None, "files": {k_: p.name for k_, p in paths.items()}}
        if rec.error is not None:
            entry.update(status="failed", error=rec.error)
            log(f"{tag}  FAILED: {rec.error}")
            results.append(entry)
            continue
        if not overwrite and is_complete(paths):
            entry["status"] = "skipped"
            try:
                entry["confidence"] = json.loads(paths["scores"].read_text()).get("mean_confidence")
            except (OSError, ValueError):
                pass
            log(f"{tag}  skipped (outputs exist; --overwrite to redo)")
            results.append(entry)
            continue
        t0 = time.perf_counter()
        try:
            check_length(f"record {rec.id!r}", len(rec.sequence), max_length)
            paths["scores"].unlink(missing_ok=True)  # the record is incomplete until rewritten
            pred = predict_sequence(model, rec.sequence, reconstructor, distribution, window, stride, calibration)
            total = time.perf_counter() - t0
            scores = {
                "id": rec.id, "raw_id": rec.raw_id, "description": rec.description, "length": len(rec.sequence),
                "sequence": rec.sequence, "mean_confidence": pred.mean_confidence,
                "confidence": None if pred.confidence is None else [round(float(c), 2) for c in pred.confidence],
                "confidence_method": None if pred.confidence is None else
                f"predicted C-alpha lDDT (0-100) under a {distribution} per-pair error model" + (
                    f", calibrated on {calibration.get('n_chains')} {calibration.get('split')} chains"
                    if calibration else ", uncalibrated"),
                "reconstructor": rec_info, "reconstruction": pred.diagnostics,
                "handedness": handedness_of(pred.diagnostics), "model": model_info,
                "timings": {**{k_: round(v_, 4) for k_, v_ in pred.timings.items()}, "total_s": round(total, 4)},
                "format": fmt, "files": entry["files"], "distfold_version": __version__, "status": "ok",
            }
            write_prediction(pred, paths, fmt, scores)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the batch
            entry.update(status="failed", error=_failure_message(exc), seconds=round(time.perf_counter() - t0, 3))
            log(f"{tag}  FAILED: {entry['error']}")
            results.append(entry)
            continue
        entry.update(status="ok", confidence=pred.mean_confidence, seconds=round(time.perf_counter() - t0, 3))
        conf = "n/a" if pred.mean_confidence is None else f"{pred.mean_confidence:.1f}"
        log(f"{tag}  confidence={conf}  {entry['seconds']:.2f} s")
        results.append(entry)

    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "skipped", "failed")}
    return {"outdir": str(outdir), "format": fmt, "reconstructor": rec_info, "model": model_info,
            "rank": rank, "world_size": world_size, "records": results, "counts": counts,
            "n_records_total": len(records), "model_load_s": round(load_s, 3),
            "total_s": round(time.perf_counter() - t_start, 3)}


def _config_of(component: Any) -> dict[str, Any] | None:
    get = getattr(component, "get_config", None)
    try:
        return get() if get is not None else None
    except Exception:  # noqa: BLE001 - diagnostics only
        return None
