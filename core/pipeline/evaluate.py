"""``distfold evaluate``: score a model on one split of a dataset, beside the separation prior.

For every chain of the split (optionally only those up to ``max_length``
residues) the model predicts the full sequence's distance matrix through the same
:class:`~distfold.pipeline.predictor.Predictor` as
``distfold predict`` does (windowed beyond the crop, weights 1/variance,
same reconstructor). Masked (unobserved) residues are excluded from every
metric. Two stages are scored separately (SCIENCE.md section 3):

- before reconstruction, the predicted matrix against the true one
  (:mod:`distfold.structure.metrics`): distance MAE, RMSE, Pearson r (pairs i < j; also by
  separation short 6-11, medium 12-23, long >= 24), C-alpha lDDT, and C-alpha
  contact precision (top L/5 pairs with |i - j| >= 24 by ascending predicted
  distance; contact = true C-alpha distance < 8 Å, *not* CASP's C-beta);
- after reconstruction, the coordinates against the true ones
  (:func:`distfold.structure.metrics.score_coordinates`, the scorer of ``distfold compare``; residue-matched): RMSD,
  TM-score, GDT-TS, and handedness: ``hand_right`` is ``tm_score >
  tm_score_mirror`` (the reconstruction scores better than its mirror image).

Contacts (:mod:`distfold.pipeline.contacts`): precision of the top L/5, L/2 and L pairs
in each separation range, short 6-11, medium 12-23, long >= 24 (``contact_<range>_<k>``),
the model's pairs ranked by contact probability, the prior's by ascending distance.

Secondary structure, for chains whose dataset record carries ``ss`` (3-state DSSP of
the reference, ``-`` unlabelled; :mod:`distfold.structure.secondary`): Q3, per-class
precision and recall, and SOV'99 of the model (when it predicts SS) and of two
baselines fitted on the train split here (:mod:`distfold.pipeline.ss_baselines`: the
majority class, and a ridge classifier on one-hot windows of +-7 residues). Per chain
(``row["ss"]``: the scores, and the ``reference`` and ``model`` strings the report pages
draw) and pooled over all residues and segments of the split
(``metrics["secondary_structure"]``).

The separation prior (:class:`distfold.pipeline.prior.SeparationPrior`, fitted on the
dataset's train split) is scored the same way, its matrix reconstructed by the
same reconstructor without weights. The confidence (predicted lDDT) is
compared with the observed per-residue lDDT (calibration).

The work of each chain after the model's forward pass (reconstructions, scores, the
structure files), and fitting the prior and the SS baselines, runs in ``workers``
processes (:mod:`distfold.pipeline.evaluate_jobs`); results are taken in chain order, so
the report does not depend on their number.

REPORT_DIR gets ``metrics.json`` (summaries: mean and median per metric, overall
and by length bin), ``per_chain.tsv``, PNG plots (drawn by the report layer from
the :class:`EvaluationFigures` this module computes, when the caller passes
``plot``, as ``distfold evaluate`` does), and ``structures/``:
``<id>.pdb`` (the model's structure, confidence in the B-factor column) and
``<id>.ref.pdb`` (the observed reference C-alphas, numbered by their position
in the full sequence), so that ``distfold compare structures/<id>.pdb
structures/<id>.ref.pdb`` reproduces the coordinate scores. Coordinates are
scored as written (rounded to the files' 0.001 Å).
"""

from __future__ import annotations

import collections
import csv
import gc
import io
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distfold.errors import DistfoldError, InputError, UsageError, message
from distfold.fileio import atomic_write
from distfold.pipeline.chain_scores import as_written, contact_scores, score_coords, score_matrix  # noqa: F401
from distfold.pipeline.evaluate_jobs import ChainJobs, write_reference_trace  # noqa: F401
from distfold.pipeline.predictor import Predictor
from distfold.serialise import dump

#: Length bins (inclusive lower edge, exclusive upper edge) of the summaries.
LENGTH_BINS = ((0, 64), (64, 128), (128, 256), (256, 512), (512, None))
#: TM-score above which a fold is roughly right, so that its hand is meaningful.
HAND_TM_THRESHOLD = 0.25
METHODS = ("model", "prior")
#: Per-chain metrics summarised, per method.
#: Contact precision by separation range and top-k: ``contact_long_L5`` is the top L/5 long-range pairs.
CONTACT_METRICS = tuple(f"contact_{r}_{k.replace('/', '')}" for r in ("short", "medium", "long")
                        for k in ("L/5", "L/2", "L"))
METRICS = ("mae", "rmse", "pearson", "lddt", "contact_precision", "mae_short", "mae_medium", "mae_long",
           "rmsd", "tm_score", "tm_score_mirror", "gdt_ts", "gdt_ha", "lddt_coords", "hand_right",
           "stress1") + CONTACT_METRICS
#: Secondary-structure predictors scored against the reference DSSP: the model and two baselines.
SS_METHODS = ("model", "majority", "window")
#: Matrix entries (sum of L^2) of the chains whose model output waits for a worker, at most:
#: the model runs ahead of the workers up to this (about 22 bytes an entry).
IN_FLIGHT_PAIRS = 1 << 23
#: Matrix entries (sum of L^2) of the chains whose predicted and true matrices are kept for the
#: distance maps drawn at the end (8 bytes an entry), at most; past it a map's chain is predicted again.
KEPT_MAP_PAIRS = 1 << 23


def length_bin(n: int) -> str:
    for lo, hi in LENGTH_BINS:
        if n >= lo and (hi is None or n < hi):
            return f"{lo}-{hi - 1}" if hi is not None else f"{lo}+"
    return "?"  # pragma: no cover


def reference_ss(record: dict[str, Any], where: str) -> str | None:
    """The record's ``ss`` (None when absent or without any label); a malformed one is an
    :class:`InputError` naming ``where``."""
    from distfold.structure.secondary import SS_UNLABELLED, check_ss

    ss = record.get("ss")
    if ss is None:
        return None
    ss = check_ss(ss, name=f"{where}: ss")
    if len(ss) != len(record["sequence"]):
        raise InputError(f"{where}: ss has {len(ss)} characters for {len(record['sequence'])} residues")
    return None if set(ss) <= {SS_UNLABELLED} else ss


class _SSPool:
    """Reference and predicted SS strings of all labelled chains. The pooled scores join
    them with an unlabelled residue between chains, so that Q3, per-class scores and SOV'99
    count every residue and segment of the split once and no segment runs from one chain
    into the next. A method is pooled only when it predicted every labelled chain."""

    def __init__(self) -> None:
        self.chains: list[tuple[str, dict[str, str]]] = []

    def add(self, ref: str, preds: dict[str, str], scores: dict[str, dict[str, Any]]) -> None:
        """One chain's reference, predictions and their :func:`~distfold.structure.secondary.ss_scores`
        (per predictor), computed with the chain's other scores."""
        self.chains.append((ref, preds, scores))

    def summary(self) -> dict[str, Any] | None:
        from distfold.structure.secondary import SS_UNLABELLED, ss_scores

        if not self.chains:
            return None
        ref = SS_UNLABELLED.join(r for r, _, _ in self.chains)
        out: dict[str, Any] = {"n_chains": len(self.chains), "n_residues": sum(c != SS_UNLABELLED for c in ref)}
        for m in SS_METHODS:
            if not all(m in preds for _, preds, _ in self.chains):
                continue
            pooled = ss_scores(ref, "C".join(preds[m] for _, preds, _ in self.chains))
            per_chain = [scores[m] for _, _, scores in self.chains]
            pooled["q3_chain"] = _nan_stats([c["q3"] for c in per_chain])
            pooled["sov_chain"] = _nan_stats([c["sov"] for c in per_chain])
            out[m] = pooled
        return out


def _nan_stats(values: list[float]) -> dict[str, Any]:
    a = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    a = a[np.isfinite(a)]
    if not len(a):
        return {"mean": None, "median": None, "n": 0}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "n": int(len(a))}


def summarise(chains: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and median of every metric per method, overall and by length bin,
    and the hand statistics (all chains; chains with TM-score >= 0.25)."""
    def block(rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"n_chains": len(rows)}
        for m in METHODS:
            if not any(m in r for r in rows):
                continue
            res: dict[str, Any] = {}
            for key in METRICS + ("confidence",):
                vals = [r[m].get(key) for r in rows if m in r]
                if key == "hand_right":
                    vals = [None if v is None else float(v) for v in vals]
                if any(v is not None for v in vals):
                    res[key] = _nan_stats(vals)
            good = [r[m] for r in rows if m in r and r[m].get("tm_score") is not None
                    and r[m]["tm_score"] >= HAND_TM_THRESHOLD]
            res["hand_right_where_tm_ge_0.25"] = {
                "fraction": float(np.mean([g["hand_right"] for g in good])) if good else None, "n": len(good)}
            out[m] = res
        return out

    by_bin: dict[str, Any] = {}
    for lo, hi in LENGTH_BINS:
        name = length_bin(lo)
        rows = [c for c in chains if length_bin(c["length"]) == name]
        if rows:
            by_bin[name] = block(rows)
    return {"all": block(chains), "by_length": by_bin}


def calibration_table(predicted: np.ndarray, observed: np.ndarray, edges=tuple(range(0, 101, 10))) -> list[dict]:
    """Mean observed lDDT (0-100) per bin of predicted confidence (0-100)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (predicted >= lo) & ((predicted < hi) if hi < edges[-1] else (predicted <= hi))
        n = int(sel.sum())
        rows.append({"bin": f"{lo}-{hi}", "n": n,
                     "mean_predicted": float(predicted[sel].mean()) if n else None,
                     "mean_observed": float(observed[sel].mean()) if n else None})
    return rows


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


class _SeparationAccumulator:
    """Sum of |error| and pair counts per sequence separation, over chains."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.counts = np.zeros(1)

    def add(self, name: str, pred_d: np.ndarray, true_d: np.ndarray, mask: np.ndarray, count: bool) -> None:
        n = len(true_d)
        i, j = np.triu_indices(n, 1)
        ok = mask[i] & mask[j] & np.isfinite(true_d[i, j])
        sep = (j - i)[ok]
        err = np.abs(pred_d[i, j] - true_d[i, j])[ok]
        size = max(len(self.counts), n)
        for key in list(self.sums):
            self.sums[key] = np.pad(self.sums[key], (0, size - len(self.sums[key])))
        self.counts = np.pad(self.counts, (0, size - len(self.counts)))
        s = self.sums.setdefault(name, np.zeros(size))
        s += np.bincount(sep, weights=err, minlength=size)
        if count:
            self.counts += np.bincount(sep, minlength=size)


@dataclass
class EvaluationFigures:
    """What the plots of an evaluation show (drawn by the report layer,
    :func:`distfold.report.plots.evaluation_plots`).

    maps: the distance maps of the chains with the best, median and worst lDDT,
        each ``{"title", "pred": (L, L) Å, "true": (L, L) Å, NaN where unobserved}``.
    error_edges: (B + 1,) bin edges of the signed errors, Å; error_counts: method ->
        (B,) pair counts; error_mae: method -> exact MAE, Å; error_n: method -> pairs.
    separation_sums: method -> (S,) sum of |error| per sequence separation;
        separation_counts: (S,) pairs per separation.
    calibration_predicted, calibration_observed: (N,) per-residue confidence and
        observed lDDT, 0-100, or None without a confidence; calibration_table: their
        binned means (:func:`calibration_table`).
    model_path: the checkpoint folder (its training log is plotted), or None.
    """

    maps: list[dict[str, Any]]
    error_edges: np.ndarray
    error_counts: dict[str, np.ndarray]
    error_mae: dict[str, float]
    error_n: dict[str, int]
    separation_sums: dict[str, np.ndarray]
    separation_counts: np.ndarray
    calibration_predicted: np.ndarray | None = None
    calibration_observed: np.ndarray | None = None
    calibration_table: list[dict[str, Any]] | None = None
    model_path: str | None = None


def evaluate(dataset_dir: str | os.PathLike, report_dir: str | os.PathLike, *, model_dir=None, split: str = "val",
             reconstruct: str = "smacof", max_length: int | None = None, device: str = "auto",
             log: Callable[[str], None] | None = None, model: Any = None, with_prior: bool = True,
             predictor: Predictor | None = None,
             plot: Callable[..., dict[str, str | None]] | None = None,
             workers: int = 1, worker_threads: int = 1) -> dict[str, Any]:
    """Evaluate, write the report, return the metrics dict (as in metrics.json).

    predictor: a built :class:`~distfold.pipeline.predictor.Predictor` (``model_dir``,
    ``reconstruct``, ``device`` and ``model`` are then ignored); ``model``: an already
    loaded model; otherwise ``model_dir`` (or the shipped default) is loaded.
    plot: ``plot(report_dir, figures, run=run)`` draws the :class:`EvaluationFigures` into the
    report folder and returns ``{plot: file name or None}`` for ``metrics["plots"]``
    (``distfold evaluate`` passes :func:`distfold.report.plots.evaluation_plots`); ``run(fn,
    *args)`` returns the :class:`~concurrent.futures.Future` of ``fn(*args)`` run in the worker
    processes (:meth:`~distfold.pipeline.evaluate_jobs.ChainJobs.call`), for the plots to be
    drawn there at the same time. It is called in a thread while this one writes the rest of
    the report. Without it no plot is drawn and ``metrics["plots"]`` is empty.
    workers: processes for the per-chain work other than the model's forward pass
    (reconstructions and scores, :mod:`distfold.pipeline.evaluate_jobs`), each with
    ``worker_threads`` BLAS threads; 1 does it all in this process. The report is the
    same for any number (results are taken in chain order); only timings differ.
    """
    from distfold import __version__
    from distfold.data.dataset import Dataset
    from distfold.pipeline.predict import resolve_device
    from distfold.pipeline.windows import check_length
    from distfold.structure.sequence import safe_id

    t_start = time.perf_counter()
    log = log or (lambda _m: None)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a whole number >= 1, got {workers!r}")
    ds = Dataset(dataset_dir)
    idx = ds.indices(split)
    if not idx:
        splits = sorted({r.get("split") for r in ds.records})
        raise InputError(f"{dataset_dir}: no chains in split {split!r}; splits: {', '.join(map(str, splits))}")
    if max_length is not None:
        idx = [i for i in idx if ds.records[i]["length"] <= max_length]
        if not idx:
            raise InputError(f"{dataset_dir}: no {split!r} chain has at most {max_length} residues")
    idx.sort(key=lambda i: (ds.records[i]["length"], i))
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise InputError(f"{report_dir}: exists and is not a directory")
    struct_dir = report_dir / "structures"
    struct_dir.mkdir(parents=True, exist_ok=True)

    ss_refs = {i: reference_ss(ds.records[i], f"{dataset_dir}: chain {ds.records[i].get('id', i)!r}")
               for i in idx}
    train_ss = []
    if any(v is not None for v in ss_refs.values()):
        train_ss = [(ds.records[i]["sequence"], ref) for i in ds.indices("train")
                    if (ref := reference_ss(ds.records[i], f"{dataset_dir}: chain {ds.records[i].get('id', i)!r}"))]
    ss_pool = _SSPool()

    # ids, length checks and the jobs' order: chains in length order, the prior's one per length
    todo: list[tuple[int, str, str, Exception | None]] = []  # (dataset row, id, sequence, length error)
    used_ids: set[str] = set()
    by_length: dict[int, list[int]] = {}
    for i in idx:
        seq = ds.records[i]["sequence"]
        cid = safe_id(str(ds.records[i].get("id", i)))
        while cid.lower() in used_ids:
            cid += "_"
        used_ids.add(cid.lower())
        try:
            check_length(f"chain {cid!r}", len(seq))
            too_long = None
            by_length.setdefault(len(seq), []).append(i)
        except Exception as exc:  # noqa: BLE001 - reported as that chain's failure
            too_long = exc
        todo.append((i, cid, seq, too_long))

    if predictor is None:
        from distfold.pipeline.predictor import create_reconstructor

        recon = create_reconstructor(reconstruct)  # the prior's jobs start before the model is loaded
    else:
        recon = predictor.reconstructor
    # what is loaded by now (and the model, below) lives to the end: the garbage collector's passes
    # need not walk it, here nor in the workers forked from here (gc.freeze; undone at the end)
    frozen = gc.get_freeze_count() == 0
    if frozen:
        gc.freeze()
    jobs = ChainJobs(workers, dataset_dir, recon, struct_dir, threads=worker_threads)
    drawing: Future | None = None  # the plots, drawn by a thread of this process through the jobs
    try:
        # the prior and the SS baselines are fitted by jobs, the model loads beside them (a thread:
        # mostly imports), and the prior's jobs need no model: with workers, all of it at once
        n_train = len(ds.indices("train"))
        prior_fit = jobs.fit_prior() if with_prior and n_train else None
        baselines_fit = jobs.fit_baselines(train_ss) if train_ss else None

        def load() -> tuple[Predictor, float]:
            t = time.perf_counter()
            built = (Predictor.load(model_dir, reconstruct, resolve_device(device)) if model is None
                     else Predictor(model, reconstruct))
            return built, time.perf_counter() - t

        load_s = 0.0
        with ThreadPoolExecutor(1) as loader:
            loading = loader.submit(load) if predictor is None else None
            prior = None
            if prior_fit is not None:
                prior, seconds = prior_fit.result()
                log(f"separation prior fitted on {n_train} train chains in {seconds:.1f} s")
            elif with_prior:
                log("no train split: the separation prior is left out")
            # the prior needs no model: its jobs run while the model loads
            prior_jobs = {n: jobs.prior(prior, n, rows) for n, rows in by_length.items()} if prior is not None else {}
            baselines: dict[str, Any] = {}
            if baselines_fit is not None:
                baselines, seconds = baselines_fit.result()
                log(f"secondary-structure baselines fitted on {len(train_ss)} labelled train chains "
                    f"({baselines['window'].n_residues} residues) in {seconds:.1f} s")
            elif any(v is not None for v in ss_refs.values()):
                log("no labelled train chain: the secondary-structure baselines are left out")
            if loading is not None:
                predictor, load_s = loading.result()
        if frozen:
            gc.freeze()
        model_info = predictor.identity
        log(f"model {model_info['name']} loaded in {load_s:.1f} s; "
            f"{len(idx)} {split} chains; reconstructor {predictor.reconstructor_name}"
            + (f"; {jobs.workers} worker processes" if jobs.workers > 1 else ""))

        chains: list[dict[str, Any]] = []
        hist = _ErrorHistogram()
        sep_acc = _SeparationAccumulator()
        calib_pred: list[np.ndarray] = []
        calib_obs: list[np.ndarray] = []
        failed: list[dict[str, Any]] = []
        where: dict[str, int] = {}  # chain id -> dataset row, for the maps of three chains at the end
        kept = _KeptMaps()  # the chains' matrices for those maps, while they fit
        prior_d: np.ndarray | None = None  # the prior's matrix at the current length

        def finish(k: int, i: int, cid: str, seq: str, job: Future, forward_s: float) -> None:
            """Take chain k's results (in chain order), write its structures, add it to the pooled statistics."""
            nonlocal prior_d
            t0 = time.perf_counter()
            try:
                run = job.result()
                pred, m_scores, true_d, mask = run.pred, run.scores, run.true_d, run.mask
                row: dict[str, Any] = {"id": cid, "length": len(seq), "n_observed": int(mask.sum()),
                                       "family": ds.records[i].get("family"), "model": m_scores}
                if prior is not None:
                    p_scores = prior_jobs[len(seq)].result()[i]
                    if isinstance(p_scores, Exception):
                        raise p_scores
                    row["prior"] = p_scores
                    if prior_d is None or len(prior_d) != len(seq):
                        prior_d = prior.matrix(len(seq)).astype(np.float32)
                if run.ss is not None:
                    row["ss"] = run.ss
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - one chain must not stop the evaluation
                for f in (struct_dir / f"{cid}.pdb", struct_dir / f"{cid}.ref.pdb"):  # written by its job
                    f.unlink(missing_ok=True)
                msg = message(exc)
                failed.append({"id": cid, "length": len(seq), "error": msg})
                log(f"[{k}/{len(idx)}] {cid}  L={len(seq)}  FAILED: {msg}")
                return
            # only a chain that was scored completely enters the pooled statistics
            if pred.confidence is not None:
                ok = mask & np.isfinite(run.per_residue_lddt)
                calib_pred.append(pred.confidence[ok])
                calib_obs.append(100.0 * run.per_residue_lddt[ok])
            if run.ss_predictions:
                ss_pool.add(ss_refs[i], run.ss_predictions, run.ss_scores)
            hist.add("model", pred.distance, true_d, mask)
            sep_acc.add("model", pred.distance, true_d, mask, count=True)
            if prior is not None:
                hist.add("prior", prior_d, true_d, mask)
                sep_acc.add("prior", prior_d, true_d, mask, count=False)
            where[cid] = i
            kept.add(cid, pred.distance, true_d)
            # the model's forward, the job (in a worker or here) and this
            row["seconds"] = round(forward_s + run.seconds + time.perf_counter() - t0, 3)
            row["model_timings"] = {k_: round(v_, 4) for k_, v_ in pred.timings.items()}
            chains.append(row)
            pr = row.get("prior", {})
            log(f"[{k}/{len(idx)}] {cid}  L={len(seq)}  lDDT {m_scores['lddt']:.3f} (prior "
                f"{_fmt(pr.get('lddt'))})  TM {m_scores['tm_score']:.3f} (prior {_fmt(pr.get('tm_score'))})  "
                f"{row['seconds']:.1f} s")

        # the model runs here, chain by chain; the rest of each chain goes to the jobs, and the
        # results are taken in chain order, with at most IN_FLIGHT_PAIRS matrix entries waiting
        pending: collections.deque = collections.deque()
        in_flight = 0
        for k, (i, cid, seq, too_long) in enumerate(todo, start=1):
            t0 = time.perf_counter()
            try:
                if too_long is not None:
                    raise too_long
                p = predictor.distances(seq)
                model_s = time.perf_counter() - t0
                job = jobs.model(i, predictor, seq, p, model_s, cid, ss_refs[i], baselines)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - reported by finish as that chain's failure
                job = Future()
                job.set_exception(exc)
            pending.append((k, i, cid, seq, job, time.perf_counter() - t0))
            in_flight += len(seq) ** 2
            while pending and (jobs.workers == 1 or in_flight > IN_FLIGHT_PAIRS):
                in_flight -= len(pending[0][3]) ** 2
                finish(*pending.popleft())
        while pending:
            finish(*pending.popleft())

        if not chains:
            raise DistfoldError(f"no chain could be evaluated; first failure: {failed[0]['id']}: {failed[0]['error']}")
        summary = summarise(chains)
        calib: dict[str, Any] | None = None
        if calib_pred:
            cp, co = np.concatenate(calib_pred), np.concatenate(calib_obs)
            chain_conf = np.array([c["model"]["confidence"] for c in chains], dtype=float)
            chain_lddt = np.array([100.0 * c["model"]["lddt"] for c in chains], dtype=float)
            ok = np.isfinite(chain_conf) & np.isfinite(chain_lddt)
            calib = {"n_residues": int(len(cp)), "pearson_residue": _pearson(cp, co),
                     "pearson_chain": _pearson(chain_conf[ok], chain_lddt[ok]),
                     "mean_abs_error": float(np.abs(cp - co).mean()) if len(cp) else None,
                     "mean_predicted": float(cp.mean()) if len(cp) else None,
                     "mean_observed": float(co.mean()) if len(co) else None,
                     "table": calibration_table(cp, co)}

        plots: dict[str, str | None] = {}
        if plot is not None:
            figures = EvaluationFigures(
                maps=_distance_maps(predictor, ds, chains, where, kept), error_edges=hist.edges,
                error_counts=hist.counts,
                error_mae={m: hist.abs_sum[m] / max(hist.n[m], 1) for m in hist.n}, error_n=hist.n,
                separation_sums=sep_acc.sums, separation_counts=sep_acc.counts,
                calibration_predicted=np.concatenate(calib_pred) if calib is not None else None,
                calibration_observed=np.concatenate(calib_obs) if calib is not None else None,
                calibration_table=calib["table"] if calib is not None else None, model_path=model_info.get("path"))
            # drawn by the jobs (in the workers, at the same time) while this thread writes the rest
            drawer = ThreadPoolExecutor(1)
            drawing = drawer.submit(plot, report_dir, figures, run=jobs.call)
            drawer.shutdown(wait=False)
        metrics = {
            "format": "distfold-evaluation", "version": 1, "distfold_version": __version__,
            "dataset": {"path": str(dataset_dir), "fingerprint": ds.fingerprint, "split": split,
                        "max_length": max_length, "n_chains": len(chains), "n_failed": len(failed)},
            "model": model_info, "reconstructor": predictor.reconstructor_info,
            "prior": None if prior is None else {"fitted_on": "train", "n_chains": len(ds.indices("train")),
                                                 "statistic": prior.statistic, "buckets": list(prior.buckets)},
            "definitions": {
                "distance_errors": "pairs i < j of observed residues; short 6-11, medium 12-23, long >= 24",
                "lddt": "C-alpha lDDT of the predicted matrix: pairs with true distance < 15 A, thresholds 0.5/1/2/4 A",
                "contact_precision": "top L/5 pairs with |i-j| >= 24 by ascending predicted distance; contact = "
                                     "true C-alpha distance < 8 A (not CASP's C-beta definition)",
                "contact_<range>_<k>": "precision of the top k = L/5, L/2, L pairs (L the chain length) in the range "
                                       "short 6-11, medium 12-23, long >= 24 (|i-j|), observed pairs only; the model's "
                                       "ranked by P(C-alpha distance < 8 A) (distfold.pipeline.contacts), the prior's by "
                                       "ascending distance (ties by i, j); contact = true C-alpha distance < 8 A",
                "secondary_structure": "against the record's ss (3-state DSSP, '-' unlabelled and left out): q3, "
                                       "per_class precision/recall, sov = SOV'99 (Zemla et al. 1999) as a fraction; "
                                       "pooled over the split's residues and segments, q3_chain/sov_chain over chains; "
                                       "majority = the train split's most frequent state, window = ridge least squares "
                                       "on one-hot windows of +-7 residues fitted on the train split "
                                       "(distfold.pipeline.ss_baselines)",
                "coordinates": "distfold.structure.metrics.score_coordinates on the observed residues, residue-matched, "
                               "coordinates as written (0.001 A)",
                "hand_right": "tm_score > tm_score_mirror",
                "confidence": "mean per-residue predicted lDDT, 0-100 (distfold.pipeline.confidence)",
            },
            "summary": summary, "calibration": calib, "secondary_structure": ss_pool.summary(), "plots": plots, "failed": failed,
            "total_s": round(time.perf_counter() - t_start, 2),
            "chains": chains,
        }
        _write_tsv(report_dir / "per_chain.tsv", chains)
        if drawing is not None:
            plots = drawing.result()
            if plots.get("training_curves") is None:
                log("no training log (metrics.jsonl) in the checkpoint folder or the run folder above it: "
                    "no training curves plot")
        metrics["plots"] = plots
        metrics["total_s"] = round(time.perf_counter() - t_start, 2)
    finally:
        if drawing is not None:  # after a failure too: no plot is written once this returns
            wait([drawing])
        jobs.close()
        if frozen:
            gc.unfreeze()

    with atomic_write(report_dir / "metrics.json", "w") as fh:
        dump(metrics, fh)  # NaN and inf become null: strict JSON
    return metrics


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


class _ErrorHistogram:
    """Histogram of signed errors (predicted - true, Å) over pairs i < j of observed
    residues, clipped to +-limit, with the exact MAE, per method."""

    def __init__(self, limit: float = 30.0, width: float = 0.5) -> None:
        self.edges = np.arange(-limit, limit + width / 2, width)
        self.counts: dict[str, np.ndarray] = {}
        self.abs_sum: dict[str, float] = {}
        self.n: dict[str, int] = {}

    def add(self, name: str, pred_d: np.ndarray, true_d: np.ndarray, mask: np.ndarray) -> None:
        i, j = np.triu_indices(len(true_d), 1)
        ok = mask[i] & mask[j] & np.isfinite(true_d[i, j])
        e = (np.asarray(pred_d, dtype=np.float64)[i, j] - true_d[i, j])[ok]
        c = np.histogram(np.clip(e, self.edges[0], self.edges[-1]), self.edges)[0]
        self.counts[name] = self.counts.get(name, 0) + c
        self.abs_sum[name] = self.abs_sum.get(name, 0.0) + float(np.abs(e).sum())
        self.n[name] = self.n.get(name, 0) + int(len(e))


TSV_METRICS = ("mae", "rmse", "pearson", "lddt", "contact_precision", "mae_short", "mae_medium", "mae_long",
               "rmsd", "tm_score", "tm_score_mirror", "gdt_ts", "gdt_ha", "lddt_coords", "hand_right", "mirrored",
               "handedness_margin", "stress1") + CONTACT_METRICS


def _write_tsv(path: Path, chains: list[dict[str, Any]]) -> None:
    cols = ["id", "length", "n_observed", "family", "seconds", "model_confidence"]
    for m in METHODS:
        if any(m in c for c in chains):
            cols += [f"{m}_{k}" for k in TSV_METRICS]
    for m in SS_METHODS:
        if any(f"{m}_q3" in c.get("ss", {}) for c in chains):
            cols += [f"ss_{m}_q3", f"ss_{m}_sov"]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(cols)
    for c in chains:
        vals = []
        for col in cols:
            if col in c:
                v = c[col]
            elif col == "model_confidence":
                v = c["model"].get("confidence")
            else:
                m, _, k = col.partition("_")
                v = c.get(m, {}).get(k)
            vals.append(_cell(v))
        w.writerow(vals)
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


class _KeptMaps:
    """The chains' predicted and true matrices (float32, as :meth:`Predictor.distances` and
    :meth:`~distfold.data.dataset.Sample.distances` give them), kept for the distance maps
    while they hold at most :data:`KEPT_MAP_PAIRS` entries in all; a chain past that is
    predicted again if its map is drawn."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = KEPT_MAP_PAIRS if limit is None else limit
        self.maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.pairs = 0

    def add(self, cid: str, pred_d: np.ndarray, true_d: np.ndarray) -> None:
        if self.pairs + true_d.size <= self.limit:
            # the true distances came as float64 from float32: the float32 round trip is exact
            self.maps[cid] = (np.asarray(pred_d, dtype=np.float32), true_d.astype(np.float32))
            self.pairs += true_d.size


def _distance_maps(predictor: Predictor, ds: Any, chains: list[dict[str, Any]], where: dict[str, int],
                   kept: _KeptMaps | None = None) -> list[dict[str, Any]]:
    """The predicted and true maps of the chains with the best, median and worst lDDT
    (those ``kept``, or predicted again)."""
    ranked = sorted(chains, key=lambda c: (np.nan_to_num(c["model"]["lddt"], nan=-1.0), c["id"]))
    picks: list[tuple[str, dict]] = []
    for which, c in (("best", ranked[-1]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[0])):
        if all(c is not other for _, other in picks):
            picks.append((which, c))
    panels = []
    for which, c in picks:
        sample = ds[where[c["id"]]]
        m = sample.mask
        if kept is not None and c["id"] in kept.maps:
            pred_d, true_d = kept.maps[c["id"]]
        else:
            pred_d, true_d = predictor.distances(sample.sequence).distance, sample.distances()
        panels.append({"title": f"{which} lDDT: {c['id']} (L={c['length']}, lDDT {_fmt(c['model']['lddt'])}, "
                                f"TM {_fmt(c['model']['tm_score'])})",
                       "pred": pred_d, "true": np.where(m[:, None] & m[None, :], true_d, np.nan)})
    return panels
