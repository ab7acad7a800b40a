"""The per-chain work of ``distfold evaluate`` that needs no model, in worker processes.

After the model's forward pass, which stays in the calling process (it holds torch),
everything else of a chain is numpy and scipy and independent of the other chains:
the reconstruction of the predicted matrix with the model's confidence and contact
probabilities (:meth:`distfold.pipeline.predictor.Predictor.complete`), and the scores
of the model (:mod:`distfold.pipeline.chain_scores`). The separation prior's matrix
depends on the chain length alone, and so does its reconstruction: one job per length
reconstructs it and scores every chain of that length; these jobs need neither the
model nor its output, so they start before the model is loaded, as soon as the jobs
that fit the prior and the secondary-structure baselines on the train split are done.

:class:`ChainJobs` hands the jobs to ``workers`` processes
(:class:`concurrent.futures.ProcessPoolExecutor`; forked before the model is loaded,
fresh interpreters when torch is already loaded: a worker is never forked from a
process with torch's thread pools), or runs them in this
process at once when ``workers`` is 1. Each job gets only numbers and the dataset
row (every worker opens the dataset itself), and returns numbers; the caller takes
the results in chain order, so the report is the same whatever the number of
workers (the same functions on the same inputs, each worker with the same BLAS
thread count as the serial path: ``threads``, 1 by default as ``distfold evaluate``'s).
"""

from __future__ import annotations

import copy
import gc
import os
import time
import types
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distfold.fileio import atomic_write
from distfold.machine import usable_cores

#: Default worker processes: one per core, at most this many (the calling process
#: runs the model beside them, and each worker holds a chain's matrices).
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """Worker processes when none are asked for: the cores this process may use, capped
    at :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cores()))


def without_model(predictor: Any) -> Any:
    """A copy of ``predictor`` for :meth:`~distfold.pipeline.predictor.Predictor.complete`
    in a worker: the model is replaced by its normaliser (what the contact probabilities
    use), so the copy pickles small and unpickling it does not import torch."""
    light = copy.copy(predictor)
    light.model = types.SimpleNamespace(normaliser=getattr(predictor.model, "normaliser", None))
    return light


@dataclass
class ModelRun:
    """One chain's model results: the prediction (its ``variance`` and ``contact_prob``
    dropped: the caller does not use them), the coordinates as written, the scores,
    the per-residue lDDT of the predicted matrix, the job's seconds, the chain's true
    distances and mask (the job has read them; the caller's pooled statistics use them
    too); for a chain with reference secondary structure, the report's ``ss`` entry, the
    predicted strings per predictor and their :func:`~distfold.structure.secondary.ss_scores`."""

    pred: Any
    xyz: np.ndarray
    scores: dict[str, Any]
    per_residue_lddt: np.ndarray
    seconds: float
    true_d: np.ndarray
    mask: np.ndarray
    ss: dict[str, Any] | None = None
    ss_predictions: dict[str, str] | None = None
    ss_scores: dict[str, dict[str, Any]] | None = None


def write_reference_trace(path: Path, coords: np.ndarray, sequence: str, mask: np.ndarray) -> None:
    """The observed C-alphas of a reference chain, numbered by full-sequence position (1-based)."""
    from Bio.PDB import PDBIO
    from Bio.PDB.StructureBuilder import StructureBuilder

    from distfold.structure.io import AA1_TO_3

    sb = StructureBuilder()
    sb.init_structure("reference")
    sb.init_model(0)
    sb.init_chain("A")
    sb.init_seg("    ")
    for i in np.flatnonzero(mask):
        sb.init_residue(AA1_TO_3.get(sequence[i], "UNK"), " ", int(i) + 1, " ")
        sb.init_atom("CA", np.asarray(coords[i], dtype=np.float64), 0.0, 1.0, " ", " CA ", int(i) + 1, "C")
    io_ = PDBIO()
    io_.set_structure(sb.get_structure())
    with atomic_write(path, "w") as fh:
        io_.save(fh)


class ChainScorer:
    """The jobs themselves, on one opened dataset, the reconstructor and the folder the
    structures are written to."""

    def __init__(self, dataset_dir: str | os.PathLike, reconstructor: Any, struct_dir: str | os.PathLike,
                 score_threads: bool = True) -> None:
        from distfold.data.dataset import Dataset

        self.ds = Dataset(dataset_dir)
        self.reconstructor = reconstructor
        self.struct_dir = Path(struct_dir)
        # a worker process leaves the other cores to the other workers: no second scoring thread
        self.score_threads = score_threads

    def fit_prior(self) -> tuple[Any, float]:
        """The :class:`~distfold.pipeline.prior.SeparationPrior` fitted on the train split, and seconds."""
        from distfold.pipeline.prior import SeparationPrior

        t = time.perf_counter()
        return SeparationPrior().fit(self.ds, split="train"), time.perf_counter() - t

    @staticmethod
    def fit_baselines(train: list[tuple[str, str]]) -> tuple[dict[str, Any], float]:
        """The secondary-structure baselines (:mod:`distfold.pipeline.ss_baselines`) fitted on
        ``train`` (sequence, reference SS) pairs: ``{"majority", "window"}``, and seconds."""
        from distfold.pipeline.ss_baselines import MajorityClass, WindowClassifier

        t = time.perf_counter()
        return ({"majority": MajorityClass().fit(train), "window": WindowClassifier().fit(train)},
                time.perf_counter() - t)

    def truth(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true distances float64, mask, reference coordinates as written) of a dataset row."""
        from distfold.pipeline.chain_scores import as_written

        sample = self.ds[row]
        return sample.distances().astype(np.float64), sample.mask, as_written(sample.coords)

    def prior_run(self, prior: Any, length: int, rows: list[int]) -> dict[int, Any]:
        """The prior's scores of every row (chains of ``length`` residues): ``{row: scores}``,
        or ``{row: exception}`` for a row that could not be scored. The prior's matrix is
        reconstructed once, as :meth:`~distfold.pipeline.predictor.Predictor.reconstruct`
        does without a variance (no weights)."""
        from distfold.geometry.reconstruct import reconstruct
        from distfold.pipeline.chain_scores import as_written, contact_scores, score_coords, score_matrix

        prior_d = prior.matrix(length).astype(np.float32)
        try:
            rec = reconstruct(self.reconstructor, prior_d.astype(np.float64), None)
        except Exception as exc:  # noqa: BLE001 - every chain of this length fails with it
            return {row: exc for row in rows}
        coords = as_written(np.asarray(rec.coords, dtype=np.float64))
        diag = rec.diagnostics
        out: dict[int, Any] = {}
        for row in rows:
            try:
                true_d, mask, ref = self.truth(row)
                scores, _ = score_matrix(prior_d, true_d, mask)
                scores.update(contact_scores(prior_d, true_d, mask, higher_is_contact=False))
                scores.update(score_coords(coords, ref, threads=self.score_threads))
                scores.update({"stress1": diag.get("stress1"), "mirrored": diag.get("mirrored"),
                               "handedness_margin": diag.get("handedness_margin")})
                out[row] = scores
            except Exception as exc:  # noqa: BLE001 - that chain fails, not the others
                out[row] = exc
        return out

    def model_run(self, row: int, predictor: Any, sequence: str, distances: Any, model_s: float, cid: str,
                  ss_ref: str | None, baselines: dict[str, Any]) -> ModelRun:
        """Reconstruct and score the model's :class:`~distfold.pipeline.predictor.PredictedDistances`
        of a dataset row, score its secondary structure and the ``baselines``' against ``ss_ref``
        (when not None), and write ``<cid>.pdb`` (the model, confidence in the B-factor column)
        and ``<cid>.ref.pdb`` (the observed reference) into the structures folder, last."""
        from distfold.pipeline.chain_scores import as_written, contact_scores, score_coords, score_matrix
        from distfold.structure.io import write_ca_trace

        t = time.perf_counter()
        true_d, mask, ref = self.truth(row)
        pred = predictor.complete(sequence, distances, model_s)
        scores, per_res = score_matrix(pred.distance, true_d, mask)
        scores.update(contact_scores(pred.contact_prob if pred.contact_prob is not None else pred.distance,
                                     true_d, mask, higher_is_contact=pred.contact_prob is not None))
        xyz = as_written(pred.coords)
        scores.update(score_coords(xyz, ref, threads=self.score_threads))
        scores.update({"stress1": pred.diagnostics.get("stress1"), "mirrored": pred.diagnostics.get("mirrored"),
                       "handedness_margin": pred.diagnostics.get("handedness_margin"),
                       "confidence": pred.mean_confidence})
        ss_entry = ss_predictions = ss_chain_scores = None
        if ss_ref is not None:
            from distfold.structure.secondary import ss_scores

            ss_predictions = {} if pred.ss is None else {"model": pred.ss}
            ss_predictions.update({m: b.predict(sequence) for m, b in baselines.items()})
            ss_entry = {"n_labelled": sum(c != "-" for c in ss_ref), "reference": ss_ref}
            if pred.ss is not None:
                ss_entry["model"] = pred.ss
            ss_chain_scores = {}
            for m, p_ss in ss_predictions.items():
                sc = ss_chain_scores[m] = ss_scores(ss_ref, p_ss)
                ss_entry.update({f"{m}_q3": sc["q3"], f"{m}_sov": sc["sov"]})
        bf = np.zeros(len(sequence)) if pred.confidence is None else np.round(pred.confidence, 2)
        write_ca_trace(self.struct_dir / f"{cid}.pdb", xyz, sequence, bf, "pdb", ss=pred.ss)
        write_reference_trace(self.struct_dir / f"{cid}.ref.pdb", ref, sequence, mask)
        pred.variance = pred.contact_prob = None
        return ModelRun(pred, xyz, scores, per_res, time.perf_counter() - t, true_d, mask, ss_entry,
                        ss_predictions, ss_chain_scores)


def run_here(fn: Any, *args: Any) -> Future:
    """``fn(*args)`` run now, in this process, as a done :class:`~concurrent.futures.Future`
    (its exception raised by ``result()``, as from a worker)."""
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - raised by result(), as from a worker
        fut.set_exception(exc)
    return fut


_SCORER: ChainScorer | None = None  # a worker's, made by _init_worker
_LIMITS: Any = None  # a worker's thread limits, held for its lifetime


def _init_worker(threads: int, *scorer_args: Any) -> None:
    global _SCORER, _LIMITS
    from threadpoolctl import threadpool_limits

    from distfold.pipeline.predict import THREAD_ENV

    os.environ.update({k: str(threads) for k in THREAD_ENV})  # pools loaded later (scipy's OpenBLAS)
    _LIMITS = threadpool_limits(limits=threads)  # pools already loaded
    _SCORER = ChainScorer(*scorer_args, score_threads=False)
    gc.freeze()  # what the worker holds for its lifetime: no garbage collection pass walks it again


def _in_worker(method: str, *args: Any) -> Any:
    return getattr(_SCORER, method)(*args)


class ChainJobs:
    """Submit :meth:`prior` and :meth:`model` jobs; each returns a
    :class:`concurrent.futures.Future`. ``workers`` 1 runs each job in this process when it
    is submitted (the future is done at once), more run them in that many processes with
    ``threads`` BLAS/OpenMP threads each, started by ``start_method`` (by default fork
    while torch is not loaded, else spawn). Close with :meth:`close`."""

    def __init__(self, workers: int, dataset_dir: str | os.PathLike, reconstructor: Any,
                 struct_dir: str | os.PathLike, threads: int = 1, start_method: str | None = None) -> None:
        self.workers = int(workers)
        self.pool = None
        self.start_method: str | None = None
        self.scorer: ChainScorer | None = None
        if self.workers == 1:
            self.scorer = ChainScorer(dataset_dir, reconstructor, struct_dir)
            return
        import multiprocessing
        import sys
        from concurrent.futures import ProcessPoolExecutor

        # fork (the workers start at once, with every module this process has) while torch is
        # not loaded: ``distfold evaluate`` submits the prior's jobs before it loads the model.
        # Once torch is (a caller that passes a model), forking a process with its thread
        # pools is unsafe: fresh interpreters then.
        method = start_method or ("fork" if "torch" not in sys.modules
                                  and "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self.start_method = method
        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method),
                                        initializer=_init_worker,
                                        initargs=(int(threads), str(dataset_dir), reconstructor, str(struct_dir)))
        # a forking pool starts all its workers at its first job: make that now, before the
        # caller loads the model (a run without prior and SS labels submits nothing until then)
        self.pool.submit(os.getpid)

    def _submit(self, method: str, *args: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(_in_worker, method, *args)
        return run_here(getattr(self.scorer, method), *args)

    def call(self, fn: Any, *args: Any) -> Future:
        """``fn(*args)`` as a job: in a worker (``fn`` a module-level function, its arguments
        and result picklable), or here at once with one worker. ``distfold evaluate`` draws
        its plots with it, at the same time in the workers."""
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        return run_here(fn, *args)

    def fit_prior(self) -> Future:
        """(prior, seconds): :meth:`ChainScorer.fit_prior`."""
        return self._submit("fit_prior")

    def fit_baselines(self, train: list[tuple[str, str]]) -> Future:
        """(baselines, seconds): :meth:`ChainScorer.fit_baselines`."""
        return self._submit("fit_baselines", train)

    def prior(self, prior: Any, length: int, rows: list[int]) -> Future:
        """The fitted ``prior``'s scores of the dataset ``rows``, chains of ``length`` residues
        (:meth:`ChainScorer.prior_run`)."""
        return self._submit("prior_run", prior, length, rows)

    def model(self, row: int, predictor: Any, sequence: str, distances: Any, model_s: float, cid: str,
              ss_ref: str | None = None, baselines: dict[str, Any] | None = None) -> Future:
        """A :class:`ModelRun` of the model's ``distances`` of a dataset row, its structures
        written as ``cid`` (:meth:`ChainScorer.model_run`)."""
        return self._submit("model_run", row, predictor if self.pool is None else without_model(predictor),
                            sequence, distances, model_s, cid, ss_ref, baselines or {})

    def close(self) -> None:
        """Stop the workers (jobs not started are cancelled)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
