"""Calibrating the per-residue confidence (predicted lDDT) on held-out chains.

The raw confidence (:func:`distfold.pipeline.confidence.predicted_lddt`) is the lDDT the
head's own per-pair error distributions expect; it is only as right as those
distributions (the shipped model's, on val chains <= 256: mean 29.4 against an
observed 30.0, see that module). A model whose uncertainty is off can be given a
calibration: a monotone map raw -> observed, fitted by
isotonic regression (``scipy.optimize.isotonic_regression``) on the residues of
a held-out split (the validation split, which selected the model; never the
BioEmu benchmark chains), stored in the model's ``config.json`` under
``confidence_calibration`` as knots:

    {"raw": [...], "calibrated": [...], "split": "val", "n_chains": .., "n_residues": ..,
     "dataset_fingerprint": ..}

and applied by linear interpolation between the knots (constant beyond the end
knots). A monotone map keeps the ranking of residues; it changes what the
numbers mean, so that "70" means an observed lDDT of about 70 on chains like
the calibration ones.

The observed target is the per-residue C-alpha lDDT of the *predicted distance
matrix* (what ``distfold evaluate`` compares confidence with), so calibration
does not depend on the reconstructor.

:func:`fit_model_calibration` also reports an honest estimate of how well the
map transfers: the validation families are split into two halves, a map fitted
on each half scores the other, and the mean absolute error of those
cross-fitted confidences is returned beside the raw one.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np

CONFIG_KEY = "confidence_calibration"
N_KNOTS = 41


def fit_isotonic(raw: np.ndarray, observed: np.ndarray, n_knots: int = N_KNOTS) -> dict[str, list[float]]:
    """Monotone (non-decreasing) map raw -> observed as knots, both 0-100.

    raw, observed: (N,) per-residue raw confidence and observed lDDT (0-100).
    """
    from scipy.optimize import isotonic_regression

    raw = np.asarray(raw, dtype=np.float64).ravel()
    observed = np.asarray(observed, dtype=np.float64).ravel()
    ok = np.isfinite(raw) & np.isfinite(observed)
    raw, observed = raw[ok], observed[ok]
    if raw.size < 2:
        raise ValueError("calibration needs at least two residues with a confidence and an observed lDDT")
    order = np.argsort(raw, kind="stable")
    xs, fit = raw[order], isotonic_regression(observed[order]).x
    ux, inv = np.unique(xs, return_inverse=True)  # ties: one value (their mean keeps the fit monotone)
    uy = np.bincount(inv, weights=fit) / np.bincount(inv)
    knots = np.unique(np.quantile(ux, np.linspace(0.0, 1.0, max(2, int(n_knots)))))
    values = np.clip(np.interp(knots, ux, uy), 0.0, 100.0)
    return {"raw": [float(v) for v in knots], "calibrated": [float(v) for v in np.maximum.accumulate(values)]}


def apply(confidence: np.ndarray | None, calibration: dict[str, Any] | None) -> np.ndarray | None:
    """Calibrated confidence (same shape), or the input unchanged without a calibration."""
    if confidence is None or not calibration:
        return confidence
    x = np.asarray(calibration["raw"], dtype=np.float64)
    y = np.asarray(calibration["calibrated"], dtype=np.float64)
    return np.clip(np.interp(np.asarray(confidence, dtype=np.float64), x, y), 0.0, 100.0)


def from_config(model_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The calibration stored in a model config, validated, or None."""
    cal = (model_config or {}).get(CONFIG_KEY)
    if not cal:
        return None
    x, y = cal.get("raw"), cal.get("calibrated")
    if not (isinstance(x, list) and isinstance(y, list) and len(x) == len(y) >= 2
            and np.all(np.diff(np.asarray(x, float)) > 0) and np.all(np.diff(np.asarray(y, float)) >= 0)):
        raise ValueError(f"model config: {CONFIG_KEY} must hold increasing 'raw' and non-decreasing "
                         f"'calibrated' knot lists of equal length >= 2")
    return cal


def _fold(family: str) -> int:
    return hashlib.sha256(str(family).encode()).digest()[0] % 2


def collect(predictor: Any, dataset: Any, split: str = "val", max_length: int | None = 256,
            log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Per chain of ``split`` (<= max_length residues): the raw per-residue
    confidence and the observed per-residue lDDT (0-100) of the predicted
    distances, on observed residues; predicted exactly as ``distfold predict``
    does (windows beyond the model's crop) by ``predictor``, a
    :class:`distfold.pipeline.predictor.Predictor` (its own calibration, if any,
    is not applied)."""
    from distfold.structure.metrics import lddt

    rows = []
    idx = [i for i in dataset.indices(split) if max_length is None or len(dataset[i].sequence) <= max_length]
    for k, i in enumerate(idx, 1):
        s = dataset[i]
        p = predictor.distances(s.sequence)
        if p.variance is None:
            raise ValueError("this model's head gives no uncertainty, so it has no confidence to calibrate")
        raw = predictor.confidence(p.distance, p.weight_variance, calibrated=False)
        _, per_res = lddt(p.distance, s.distances(), s.mask)
        ok = s.mask & np.isfinite(per_res)
        cid = s.record.get("id")
        rows.append({"id": cid, "family": s.record.get("family", cid), "raw": raw[ok],
                     "observed": 100.0 * per_res[ok]})
        if log:
            log(f"[{k}/{len(idx)}] {cid}  L={len(s.sequence)}  raw {raw[ok].mean():.1f}  "
                f"observed {100.0 * per_res[ok].mean():.1f}")
    return rows


def fit_model_calibration(predictor: Any, dataset: Any, split: str = "val", max_length: int | None = 256,
                          log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(calibration to store, report) of ``predictor``'s model (a
    :class:`distfold.pipeline.predictor.Predictor`). The report: chains, residues, mean raw /
    observed / calibrated confidence, per-residue mean absolute error raw vs
    cross-fitted (two family halves, each scored by the map fitted on the other),
    the per-chain Pearson r of mean confidence vs mean observed lDDT, and
    ``warnings`` (a fit on one chain, or on chains that cannot be cross-checked)."""
    rows = collect(predictor, dataset, split, max_length, log)
    if not rows:
        raise ValueError(f"no {split} chains" + (f" of <= {max_length} residues" if max_length else ""))
    raw = np.concatenate([r["raw"] for r in rows])
    obs = np.concatenate([r["observed"] for r in rows])
    cal = fit_isotonic(raw, obs)
    folds = [_fold(r["family"]) for r in rows]
    cross = []
    for f in (0, 1):
        train = [r for r, g in zip(rows, folds) if g != f]
        test = [r for r, g in zip(rows, folds) if g == f]
        if not train or not test:
            continue
        fmap = fit_isotonic(np.concatenate([r["raw"] for r in train]), np.concatenate([r["observed"] for r in train]))
        cross.extend((apply(r["raw"], fmap), r["observed"]) for r in test)
    chain_obs = np.array([r["observed"].mean() for r in rows])

    def chain_r(values):
        return float(np.corrcoef(values, chain_obs)[0, 1]) if len(rows) > 2 else None

    report = {
        "split": split, "max_length": max_length, "n_chains": len(rows), "n_residues": int(raw.size),
        "mean_raw": float(raw.mean()), "mean_observed": float(obs.mean()),
        "mean_calibrated": float(apply(raw, cal).mean()),
        "mae_raw": float(np.abs(raw - obs).mean()),
        "mae_cross_fitted": (float(np.abs(np.concatenate([c for c, _ in cross]) - np.concatenate([o for _, o in cross])).mean())
                             if cross else None),
        "pearson_chain_raw": chain_r(np.array([r["raw"].mean() for r in rows])),
        "pearson_residue": float(np.corrcoef(raw, obs)[0, 1]) if raw.size > 2 else None,
        "warnings": [],
    }
    if len(rows) == 1:
        report["warnings"].append(f"fitted on one chain ({rows[0]['id']}): the map describes that protein, "
                                  "not the model, and cannot be cross-checked; calibrate on a split with chains "
                                  "from many families")
    elif not cross:
        report["warnings"].append(f"the {len(rows)} chains fall in one half of the families, so the map cannot be "
                                  "cross-checked; calibrate on a split with chains from more families")
    stored = {**cal, "split": split, "max_length": max_length, "n_chains": len(rows), "n_residues": int(raw.size),
              "dataset_fingerprint": getattr(dataset, "fingerprint", None)}
    return stored, report
