"""``distfold predict``: sequences -> distance matrix -> C-alpha structure.

Per record, in the output folder (``<id>`` from :func:`distfold.structure.sequence.safe_id`):

- ``<id>.distmat.npy``: the predicted (L, L) float32 distance matrix, Å,
  symmetric, zero diagonal;
- ``<id>.pdb`` (or ``.cif``): the reconstructed C-alpha trace, with the
  per-residue confidence (predicted lDDT, 0-100, :mod:`distfold.pipeline.confidence`)
  in the B-factor column (0 when the model has no uncertainty);
- ``<id>.contacts.tsv``: C-alpha contacts, pairs with |i - j| >= 6 and P(C-alpha
  distance < 8 Å) >= 0.05 under the head's error distribution, at most 5 L of them,
  most probable first (:mod:`distfold.pipeline.contacts`, which documents the columns);
- ``<id>.scores.json``: length, mean confidence, reconstruction diagnostics,
  handedness decision, timings, model id, the contacts' settings and count, and,
  when the model predicts secondary structure, ``ss`` (H/E/C per residue) and
  ``ss_probs`` (per residue [P(H), P(E), P(C)]); the structure file then also
  carries the predicted helices and strands (PDB HELIX/SHEET, mmCIF
  ``struct_conf``/``struct_sheet_range``). Written last: its presence marks a
  complete record.

Every file is written atomically. Records run shortest first; a record that
fails (bad letters, out of memory, ...) is reported and the rest continue.

Resuming: a record is done, and skipped unless ``overwrite``, when its four
files exist and its ``<id>.scores.json`` says it was computed from the same
request: the same sequence, model (content digest, ``sha256`` of
:func:`~distfold.pipeline.predictor.model_identity`), reconstructor (name and
settings), format, and the same windows for its length (``window``/``stride``;
``<id>.scores.json`` records them when they are not the model's defaults).
Anything else is recomputed, with the reason in the log line ("recomputing:
sequence changed"). So an interrupted batch resumes where it stopped, and a
rerun with another input, model or option never hands back stale files. The
device and the thread count are not compared: they change only the last bits of
floats. Deciding needs no model loaded (the digest is read from its files).

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) each process takes
``records[rank::world_size]`` of the length-sorted list; each record is
predicted on its own, so the files do not depend on how the records were shared
out. A process whose share is done waits for the others
(:func:`wait_for_other_ranks`) before it exits, so a failed record in one share
(exit code 1) never stops the other processes.

This module is the batch: records, their files, sharding, resuming, devices
and thread limits. What happens to one sequence is the
:class:`~distfold.pipeline.predictor.Predictor`'s, built once per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from distfold.errors import InputError, UsageError, message
from distfold.fileio import atomic_write, save_npy_atomic
from distfold.pipeline.predictor import (DEFAULT_RECONSTRUCTOR, Prediction, Predictor, check_model_dir, config_of,
                                         create_reconstructor, model_identity)
from distfold.serialise import dump, jsonable
from distfold.structure.sequence import SequenceRecord

FORMATS = ("pdb", "cif")
SCORES_SUFFIX = ".scores.json"
DISTMAT_SUFFIX = ".distmat.npy"
CONTACTS_SUFFIX = ".contacts.tsv"


# -- records and files --------------------------------------------------------

def output_paths(outdir: str | os.PathLike, record_id: str, fmt: str = "pdb") -> dict[str, Path]:
    """The files of one record: ``structure``, ``distmat``, ``contacts`` and ``scores``."""
    outdir = Path(outdir)
    return {"structure": outdir / f"{record_id}.{fmt}", "distmat": outdir / f"{record_id}{DISTMAT_SUFFIX}",
            "contacts": outdir / f"{record_id}{CONTACTS_SUFFIX}", "scores": outdir / f"{record_id}{SCORES_SUFFIX}"}


def is_complete(paths: dict[str, Path]) -> bool:
    """True when every file of a record exists (the scores file is written last)."""
    return all(p.is_file() for p in paths.values())


def default_model_dir() -> Path:
    """The shipped model's folder, as :func:`distfold.pipeline.model.default_model_path`
    gives it, without importing that module (and torch)."""
    import distfold

    return Path(distfold.__file__).resolve().parent / "default_model"


def read_model_config(model_dir: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, or {} when it cannot be read (loading the
    model then says why)."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


class Request:
    """What the files of a record depend on besides its sequence: the model's identity,
    the reconstructor (name and settings), the format and the window plan. Built
    without loading the model: from a :class:`Predictor` when there is one, otherwise
    from the checkpoint folder's files (digest and ``config.json``)."""

    def __init__(self, model: dict[str, Any], reconstructor: dict[str, Any], fmt: str,
                 window: tuple[int, int], default_window: tuple[int, int]):
        self.model = model
        self.reconstructor = jsonable(reconstructor)
        self.fmt = fmt
        self.window = window
        self.default_window = default_window

    @property
    def window_fields(self) -> dict[str, int]:
        """``{"window", "stride"}`` for ``<id>.scores.json`` when they are not the model's
        defaults ({} otherwise, so default outputs stay as they were)."""
        return {} if self.window == self.default_window else {"window": self.window[0], "stride": self.window[1]}

    def stale(self, scores: Any, sequence: str) -> str | None:
        """Why a record whose ``<id>.scores.json`` holds ``scores`` must be recomputed for
        ``sequence`` under this request, or None when its files are what it would write."""
        from distfold.pipeline.windows import plan_windows

        if not isinstance(scores, dict) or scores.get("status") != "ok":
            return "the scores file does not describe a finished record"
        if scores.get("sequence") != sequence:
            return "sequence changed"
        stored = scores.get("model") if isinstance(scores.get("model"), dict) else {}
        key = "sha256" if self.model.get("sha256") else "name"
        if stored.get(key) != self.model.get(key):
            return (f"model changed ({stored.get('name')} {stored.get('sha256')} -> "
                    f"{self.model.get('name')} {self.model.get('sha256')})")
        rec = scores.get("reconstructor") if isinstance(scores.get("reconstructor"), dict) else {}
        if rec.get("name") != self.reconstructor.get("name"):
            return f"reconstructor changed ({rec.get('name')} -> {self.reconstructor.get('name')})"
        if rec.get("config") != self.reconstructor.get("config"):
            return f"{self.reconstructor.get('name')} settings changed ({rec.get('config')} -> " \
                   f"{self.reconstructor.get('config')})"
        if scores.get("format") != self.fmt:
            return f"format changed ({scores.get('format')} -> {self.fmt})"
        was = (scores["window"], scores["stride"]) if "window" in scores and "stride" in scores \
            else self.default_window
        try:
            same = plan_windows(len(sequence), *was) == plan_windows(len(sequence), *self.window)
        except (TypeError, ValueError, InputError, UsageError):
            same = False
        if not same:
            return f"windows changed (window/stride {was[0]}/{was[1]} -> {self.window[0]}/{self.window[1]})"
        return None


def request_of(predictor: Predictor | None, model_dir: str | os.PathLike | None, reconstructor: dict[str, Any],
               fmt: str, window: int | None, stride: int | None) -> Request:
    """The :class:`Request` of a run: from ``predictor`` when given, else from the checkpoint
    folder ``model_dir`` (the shipped model when None) without loading it."""
    from types import SimpleNamespace

    from distfold.pipeline.windows import resolve_window

    if predictor is not None:
        return Request(predictor.identity, reconstructor, fmt, (predictor.window, predictor.stride),
                       resolve_window(predictor.model))
    path = Path(model_dir) if model_dir is not None else default_model_dir()
    check_model_dir(path, "model" if model_dir is not None else "default model")
    stand_in = SimpleNamespace(config=read_model_config(path))
    return Request(model_identity(path), reconstructor, fmt, resolve_window(stand_in, window, stride),
                   resolve_window(stand_in))


def stale_reason(paths: dict[str, Path], sequence: str, request: Request) -> str | None:
    """None when the record's files are complete and match ``request``; otherwise why it
    must be (re)computed: ``"incomplete"`` when a file is missing, else the mismatch."""
    if not is_complete(paths):
        return "incomplete"
    try:
        scores = json.loads(paths["scores"].read_text())
    except (OSError, ValueError) as exc:
        return f"the scores file cannot be read ({message(exc)})"
    return request.stale(scores, sequence)


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


#: How long a process that finished its share waits for the others (gloo's timeout, in ms,
#: must stay below 2**31).
WAIT_FOR_RANKS = 7 * 24 * 3600


def wait_for_other_ranks(world_size: int, log: Callable[[str], None] | None = None, prefix: str = "") -> bool:
    """Under torchrun, wait until every process has finished its share; True when it did.

    torchrun stops all processes (SIGTERM) as soon as one exits non-zero, so a process
    whose share had a failed record must not exit before the others are done: every
    process calls this after its last file and before it exits, whatever its exit code
    will be. It is a ``torch.distributed`` barrier over gloo (CPU, any device), the
    process group set up here from torchrun's ``MASTER_ADDR``/``MASTER_PORT`` and
    taken down again. Without those variables (``RANK``/``WORLD_SIZE`` set by hand,
    independent processes) or with one process there is nothing to wait for. A
    barrier that cannot be set up is logged, and the process exits as before.
    """
    log = log or (lambda _msg: None)
    if world_size <= 1 or not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        return False
    import datetime

    import torch.distributed as dist

    created = False
    log(f"{prefix}share done; waiting for the other {world_size - 1} process(es)")
    try:
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=WAIT_FOR_RANKS))
            created = True
        dist.barrier()
    except Exception as exc:  # noqa: BLE001 - the files are written; only the wait failed
        log(f"{prefix}could not wait for the other processes ({message(exc)}); exiting now")
        return False
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
    log(f"{prefix}all {world_size} processes done")
    return True


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


#: The variables thread pools read when their library is loaded (OpenMP, OpenBLAS, MKL, BLIS,
#: Accelerate, numexpr). Set for the block too: a library loaded inside it takes the limit
#: from them, since threadpoolctl only reaches libraries loaded before the block began.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Limit every CPU thread pool to ``n`` threads for the block (no limit when None):
    torch's intra-op threads, the BLAS and OpenMP pools already loaded (threadpoolctl),
    and, through :data:`THREAD_ENV`, those loaded inside the block. The last matters:
    scipy carries its own OpenBLAS, separate from numpy's, loaded on first use of
    ``scipy.linalg`` (SMACOF's Cholesky inverse, classical MDS's eigensolver); uncapped,
    it ran with one thread per core in a single process but one thread under torchrun
    (which sets ``OMP_NUM_THREADS=1``), and the stress in ``<id>.scores.json`` differed
    in its last digits. The thread count changes how reductions are split, and so the
    last bits of float results: the CLI's default of 1 makes a single-process run write
    the same files as any torchrun split. A library loaded inside the block (torch
    too: it is not imported here) keeps the limit afterwards; the variables and the
    other pools are restored. On this project's busy 2-core machine one thread was
    also faster than two (measured; see the README)."""
    if not n:
        yield
        return
    import sys

    from threadpoolctl import threadpool_limits

    n = int(n)
    saved_env = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(n) for k in THREAD_ENV})
    torch = sys.modules.get("torch")  # not imported here: a finished batch never needs torch;
    before = torch.get_num_threads() if torch is not None else None  # imported later, it reads OMP_NUM_THREADS
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- files -------------------------------------------------------------------------

def write_prediction(pred: Prediction, paths: dict[str, Path], fmt: str, scores: dict[str, Any],
                     contacts_text: str | None = None) -> None:
    """The four files, atomically, scores last (``contacts_text``: :func:`contacts_of`'s text;
    computed here when None)."""
    from distfold.structure.io import write_ca_trace

    save_npy_atomic(paths["distmat"], pred.distance.astype(np.float32))
    bf = np.zeros(len(pred.sequence)) if pred.confidence is None else np.round(pred.confidence, 2)
    write_ca_trace(paths["structure"], pred.coords, pred.sequence, bf, fmt, ss=pred.ss)
    if contacts_text is None:
        contacts_text = contacts_of(pred)[0]
    with atomic_write(paths["contacts"], "w") as fh:
        fh.write(contacts_text)
    with atomic_write(paths["scores"], "w") as fh:
        dump(scores, fh)


def contacts_of(pred: Prediction) -> tuple[str, dict[str, Any]]:
    """The text of ``<id>.contacts.tsv`` and its description for ``<id>.scores.json``
    (``{"threshold", "min_separation", "min_probability", "max_pairs", "n_pairs", "columns"}``)."""
    from distfold.pipeline import contacts as c

    n = len(pred.sequence)
    prob = pred.contact_prob if pred.contact_prob is not None else c.contact_probability(pred.distance, None)
    text = c.contacts_tsv(prob, pred.distance, pred.sequence)
    return text, {"threshold": c.CONTACT_THRESHOLD, "min_separation": c.MIN_SEPARATION,
                  "min_probability": c.MIN_PROBABILITY, "max_pairs": c.MAX_PAIRS_PER_RESIDUE * n,
                  "n_pairs": text.count("\n") - 1, "columns": list(c.CONTACT_COLUMNS)}


def ss_fields(pred: Prediction) -> dict[str, Any]:
    """``{"ss", "ss_states", "ss_probs"}`` for ``<id>.scores.json`` when the model predicts
    secondary structure ({} otherwise): the most probable state per residue, the column
    order, and per residue the three probabilities rounded to 3 decimals."""
    if pred.ss_probs is None:
        return {}
    from distfold.structure.secondary import SS_STATES

    return {"ss": pred.ss, "ss_states": SS_STATES,
            "ss_probs": [[round(float(v), 3) for v in row] for row in pred.ss_probs]}


def handedness_of(diagnostics: dict[str, Any]) -> dict[str, Any]:
    """scores.json's ``handedness``: what the core decided for this structure
    (:func:`distfold.geometry.reconstruct.reconstruct`, ``diagnostics["handedness"]``):
    ``decision`` "right", "mirrored" (the reconstructor's coordinates were mirrored) or
    "uncertain" (the likelier hand was kept, with probability below ``uncertain_below``),
    ``mirrored``, ``margin`` (the log-likelihood ratio, right hand vs mirror, of the
    reconstructor's coordinates), ``probability`` and the ``rule``."""
    hand = diagnostics.get("handedness") or {}
    return {"decision": hand.get("decision"), "mirrored": diagnostics.get("mirrored"),
            "margin": diagnostics.get("handedness_margin"), "probability": hand.get("probability"),
            "uncertain_below": hand.get("uncertain_below"), "rule": hand.get("rule")}


def convergence_note(diagnostics: dict[str, Any]) -> str:
    """'' or, when the reconstruction did not converge, a tab and 'NOT CONVERGED: <why>'
    (the reconstructor's ``warnings``), as ``distfold reconstruct``'s summary line says it."""
    if diagnostics.get("converged") is not False:
        return ""
    why = "; ".join(str(w) for w in diagnostics.get("warnings") or []) or "the reconstructor stopped before converging"
    return f"\tNOT CONVERGED: {why}"


# -- the batch -----------------------------------------------------------------

def run_predict(records: Sequence[SequenceRecord], outdir: str | os.PathLike, *, model_dir=None,
                reconstruct: str = DEFAULT_RECONSTRUCTOR, fmt: str = "pdb", device: str = "auto",
                overwrite: bool = False, max_length: int | None = None, log: Callable[[str], None] | None = None,
                model: Any = None, rank: int | None = None, world_size: int | None = None,
                window: int | None = None, stride: int | None = None,
                predictor: Predictor | None = None) -> dict[str, Any]:
    """Predict ``records`` into ``outdir``; returns a summary dict (``failed`` > 0 means exit code 1).

    ``predictor``: an already built :class:`~distfold.pipeline.predictor.Predictor`
    (``model_dir``, ``reconstruct``, ``device``, ``window``, ``stride`` and ``model``
    are then ignored); ``model``: an already loaded model (tests, embedding);
    otherwise ``model_dir`` (or the shipped default) is loaded, but only if some
    record needs predicting. ``rank``/``world_size`` default to torchrun's
    environment. ``max_length``: records longer than this fail; None refuses only
    what the available memory cannot hold (:func:`distfold.pipeline.windows.check_length`).
    ``window``/``stride``: residues per prediction window and between window starts
    for chains longer than the window (default the model's crop and half of it).
    """
    from distfold.pipeline.windows import check_length

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
    if predictor is None:  # the reconstructor now: an unknown name fails before any model is loaded
        reconstructor = create_reconstructor(reconstruct)
        rec_info = {"name": reconstruct, "config": config_of(reconstructor)}
    else:
        rec_info = predictor.reconstructor_info

    if predictor is None and model is not None:  # an object in memory: nothing to load
        predictor = Predictor(model, reconstructor, window=window, stride=stride)
    # What each record's files would be computed from; decided from files, no model loaded.
    request = request_of(predictor, model_dir, rec_info, fmt, window, stride)
    reasons = {r.id: "overwrite" if overwrite else stale_reason(output_paths(outdir, r.id, fmt), r.sequence, request)
               for r in mine if r.error is None}
    model_info: dict[str, Any] | None = None
    load_s = 0.0
    todo = [r for r in mine if reasons.get(r.id) is not None]
    if todo:  # load the model only when something needs predicting (a finished batch resumes instantly)
        t = time.perf_counter()
        if predictor is None:
            predictor = Predictor.load(model_dir, reconstructor, resolve_device(device, local_rank), window, stride)
        model_info = predictor.identity
        load_s = time.perf_counter() - t
        log(f"{prefix}model {model_info['name']} loaded in {load_s:.1f} s; reconstructor {rec_info['name']}; "
            f"{len(todo)} to predict of {len(mine)} records in this process ({len(records)} in all)")

    results: list[dict[str, Any]] = []
    width = len(str(len(mine)))
    for k, rec in enumerate(mine, start=1):
        tag = f"{prefix}[{k:>{width}}/{len(mine)}] {rec.id}  L={rec.length}"
        paths = output_paths(outdir, rec.id, fmt)
        names = {k_: p.name for k_, p in paths.items()}
        # files: what this record has in OUTDIR now (a failed record: none; its old files, if any,
        # no longer form a complete record)
        entry: dict[str, Any] = {"id": rec.id, "length": rec.length, "status": None, "confidence": None,
                                 "seconds": None, "error": None, "files": {}}
        if rec.error is not None:
            entry.update(status="failed", error=rec.error)
            log(f"{tag}  FAILED: {rec.error}")
            results.append(entry)
            continue
        reason = reasons[rec.id]
        if reason is None:
            entry.update(status="skipped", files={k_: p.name for k_, p in paths.items() if p.is_file()})
            try:
                entry["confidence"] = json.loads(paths["scores"].read_text()).get("mean_confidence")
            except (OSError, ValueError, AttributeError):
                pass
            log(f"{tag}  skipped (done with the same sequence, model and options; --overwrite to redo)")
            results.append(entry)
            continue
        if reason not in ("incomplete", "overwrite"):
            entry["recomputed"] = reason
            log(f"{tag}  recomputing: {reason}")
        t0 = time.perf_counter()
        try:
            check_length(f"record {rec.id!r}", len(rec.sequence), max_length)
            paths["scores"].unlink(missing_ok=True)  # the record is incomplete until rewritten
            pred = predictor.predict(rec.sequence)
            contacts_text, contacts_info = contacts_of(pred)
            total = time.perf_counter() - t0
            scores = {
                "id": rec.id, "raw_id": rec.raw_id, "description": rec.description, "length": len(rec.sequence),
                "sequence": rec.sequence, "mean_confidence": pred.mean_confidence,
                "confidence": None if pred.confidence is None else [round(float(c), 2) for c in pred.confidence],
                "confidence_method": None if pred.confidence is None else predictor.confidence_method,
                "reconstructor": rec_info, "reconstruction": pred.diagnostics,
                "handedness": handedness_of(pred.diagnostics), **ss_fields(pred), "contacts": contacts_info,
                "model": model_info, **request.window_fields,
                "timings": {**{k_: round(v_, 4) for k_, v_ in pred.timings.items()}, "total_s": round(total, 4)},
                "format": fmt, "files": names, "distfold_version": __version__, "status": "ok",
            }
            write_prediction(pred, paths, fmt, scores, contacts_text)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the batch
            entry.update(status="failed", error=message(exc), seconds=round(time.perf_counter() - t0, 3))
            log(f"{tag}  FAILED: {entry['error']}")
            results.append(entry)
            continue
        entry.update(status="ok", confidence=pred.mean_confidence, seconds=round(time.perf_counter() - t0, 3),
                     files=names)
        conf = "n/a" if pred.mean_confidence is None else f"{pred.mean_confidence:.1f}"
        log(f"{tag}  confidence={conf}  {entry['seconds']:.2f} s{convergence_note(pred.diagnostics)}")
        results.append(entry)

    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "skipped", "failed")}
    return {"outdir": str(outdir), "format": fmt, "reconstructor": rec_info, "model": model_info,
            "rank": rank, "world_size": world_size, "records": results, "counts": counts,
            "n_records_total": len(records), "model_load_s": round(load_s, 3),
            "total_s": round(time.perf_counter() - t_start, 3)}
