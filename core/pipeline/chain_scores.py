"""The scores of one chain in ``distfold evaluate`` (:mod:`distfold.pipeline.evaluate`).

Before reconstruction, a predicted (L, L) matrix against the true one
(:func:`score_matrix`, :func:`contact_scores`); after it, residue-matched coordinates
(:func:`score_coords`, the scorer of ``distfold compare``), as written to a file
(:func:`as_written`). Used by the evaluation's per-chain jobs
(:mod:`distfold.pipeline.evaluate_jobs`) and the benchmarks.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_written(x: np.ndarray) -> np.ndarray:
    """Coordinates as a PDB/mmCIF file stores them and biopython reads them back
    (3 decimals, float32), so that scores equal those of the written files."""
    return np.round(np.asarray(x, dtype=np.float64), 3).astype(np.float32).astype(np.float64)


def score_matrix(pred_d: np.ndarray, true_d: np.ndarray, mask: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Before-reconstruction metrics of a predicted (L, L) matrix, and per-residue lDDT (L,)."""
    from distfold.structure.metrics import contact_precision, distance_errors, distance_errors_by_separation, lddt

    err = distance_errors(pred_d, true_d, mask)
    out = {"mae": err["mae"], "rmse": err["rmse"], "pearson": err["pearson"], "n_pairs": err["n_pairs"]}
    for name, e in distance_errors_by_separation(pred_d, true_d, mask).items():
        out[f"mae_{name}"] = e["mae"]
    score, per_res = lddt(pred_d, true_d, mask)
    out["lddt"] = score
    out["contact_precision"] = contact_precision(pred_d, true_d, mask)
    return out, per_res


def contact_scores(score: np.ndarray, true_d: np.ndarray, mask: np.ndarray, higher_is_contact: bool
                   ) -> dict[str, float | None]:
    """The :data:`~distfold.pipeline.evaluate.CONTACT_METRICS` of one chain (:func:`distfold.pipeline.contacts.range_precision`)."""
    from distfold.pipeline.contacts import range_precision

    prec = range_precision(score, true_d, mask, higher_is_contact=higher_is_contact)
    return {f"contact_{r}_{k.replace('/', '')}": v for r, ks in prec.items() for k, v in ks.items()}


def score_coords(model_xyz: np.ndarray, ref_xyz: np.ndarray, threads: bool = True) -> dict[str, Any]:
    """After-reconstruction metrics of residue-matched (L, 3) coordinates (reference
    rows NaN where unobserved), by the scorer of ``distfold compare``
    (:func:`distfold.structure.metrics.score_coordinates`; ``threads`` as there): rmsd,
    tm_score, tm_score_mirror, gdt_ts, gdt_ha, lddt_coords (lDDT of the rebuilt
    coordinates) and hand_right."""
    from distfold.structure.metrics import score_coordinates

    s = score_coordinates(model_xyz, ref_xyz, threads=threads)
    out = {k: s[k] for k in ("rmsd", "tm_score", "tm_score_mirror", "gdt_ts", "gdt_ha")}
    out["lddt_coords"] = s["lddt"]
    out["hand_right"] = bool(out["tm_score"] > out["tm_score_mirror"])
    return out
