"""Reference C-alpha lDDT values for tests/test_reference_scores.py, computed by two
implementations that are not distfold's: biotite's ``biotite.structure.lddt`` and a
numpy transcription of AlphaFold2's ``lddt`` (alphafold/model/lddt.py, Apache-2.0).

Run from the repository root (biotite is in the ``test`` extra):

    python tests/data/reference_scores/make_lddt_reference.py

It writes ``lddt_cases.npz`` (the reference and model C-alpha coordinates of every case,
Å, NaN rows where the model lacks a residue) and ``lddt_reference.json`` (global and
per-residue lDDT of each case by both implementations, with the versions used). The
cases are real chains of tests/data: two NMR models of one protein, a homologue and an
unrelated protein paired by sequence alignment, noisy copies with 90 / 70 / 50 / 30 %
of the residues kept (the case of issue 15), a fragment model and a mirror image.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DATA = ROOT / "tests" / "data"


def af2_lddt(predicted_points, true_points, true_points_mask, cutoff=15.0, per_residue=False):
    """AlphaFold2's lddt (alphafold/model/lddt.py) transcribed from jax.numpy to numpy.

    predicted_points, true_points: (batch, n, 3); true_points_mask: (batch, n, 1).
    """
    dmat_true = np.sqrt(1e-10 + np.sum((true_points[:, :, None] - true_points[:, None, :]) ** 2, axis=-1))
    dmat_predicted = np.sqrt(1e-10 + np.sum((predicted_points[:, :, None] - predicted_points[:, None, :]) ** 2,
                                            axis=-1))
    dists_to_score = ((dmat_true < cutoff).astype(np.float32) * true_points_mask
                      * np.transpose(true_points_mask, [0, 2, 1]) * (1.0 - np.eye(dmat_true.shape[1])))
    dist_l1 = np.abs(dmat_true - dmat_predicted)
    with np.errstate(invalid="ignore"):
        score = 0.25 * ((dist_l1 < 0.5).astype(np.float32) + (dist_l1 < 1.0).astype(np.float32)
                        + (dist_l1 < 2.0).astype(np.float32) + (dist_l1 < 4.0).astype(np.float32))
    reduce_axes = (-1,) if per_residue else (-2, -1)
    norm = 1.0 / (1e-10 + np.sum(dists_to_score, axis=reduce_axes))
    return norm * (1e-10 + np.sum(dists_to_score * score, axis=reduce_axes))


def biotite_lddt(ref_xyz, model_xyz):
    import biotite.structure as struc

    n = len(ref_xyz)
    atoms = struc.AtomArray(n)
    atoms.coord = ref_xyz.astype(np.float32)
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    atoms.res_name[:] = "ALA"
    atoms.res_id = np.arange(1, n + 1)
    atoms.chain_id[:] = "A"
    sub = model_xyz.astype(np.float32)
    return float(struc.lddt(atoms, sub)), struc.lddt(atoms, sub, aggregation="residue").astype(np.float64)


def cases():
    sys.path.insert(0, str(ROOT))
    from distfold.structure.alignment import align_sequences
    from distfold.structure.io import read_chain

    def paired(model, ref):
        c = align_sequences(model.sequence, ref.sequence)
        x = np.full_like(ref.ca, np.nan)
        x[c.ref_index] = model.ca[c.model_index]
        return x

    nmr1 = read_chain(DATA / "compare" / "1adz_nmr_models_1_2.pdb.gz")
    nmr2 = read_chain(DATA / "compare" / "1adz_model_2.pdb.gz")
    cih = read_chain(DATA / "compare" / "d1cih.pdb.gz")
    lfm = read_chain(DATA / "compare" / "d1lfma.pdb.gz")
    barnase = read_chain(DATA / "chains" / "c51d4cae83570.pdb.gz")
    beta = read_chain(DATA / "chains" / "cb98f573e0d35.pdb.gz")
    rng = np.random.default_rng(15)
    out = {
        "nmr_model2_vs_model1": (nmr1.ca, nmr2.ca.copy()),
        "homologue_lfm_vs_cih": (cih.ca, paired(lfm, cih)),
        "unrelated_nmr2_vs_cih": (cih.ca, paired(nmr2, cih)),
    }
    for name, ch in (("barnase", barnase), ("beta", beta)):
        noisy = ch.ca + rng.normal(scale=1.0, size=ch.ca.shape)
        out[f"{name}_noise1A_full"] = (ch.ca, noisy)
        for keep in (0.9, 0.7, 0.5, 0.3):
            x = noisy.copy()
            drop = rng.permutation(len(x))[: len(x) - int(round(keep * len(x)))]
            x[drop] = np.nan
            out[f"{name}_noise1A_coverage{int(keep * 100)}"] = (ch.ca, x)
    frag = np.full_like(cih.ca, np.nan)
    frag[20:60] = cih.ca[20:60] + rng.normal(scale=0.5, size=(40, 3))
    out["fragment_40_of_cih"] = (cih.ca, frag)
    mir = beta.ca.copy()
    mir[:, 2] *= -1
    out["mirror_beta"] = (beta.ca, mir)
    return out


def main():
    import biotite

    arrays, ref = {}, {"cases": {}}
    for name, (y, x) in cases().items():
        y = np.round(np.asarray(y, dtype=np.float64), 3)
        x = np.round(np.asarray(x, dtype=np.float64), 3)
        arrays[f"{name}__ref"] = y
        arrays[f"{name}__model"] = x
        b_glob, b_res = biotite_lddt(y, x)
        mask = np.ones((1, len(y), 1))
        a_glob = float(af2_lddt(x[None], y[None], mask)[0])
        a_res = af2_lddt(x[None], y[None], mask, per_residue=True)[0]
        ref["cases"][name] = {
            "length": len(y), "coverage": float(np.isfinite(x).all(1).mean()),
            "biotite": b_glob, "alphafold2": a_glob,
            "biotite_per_residue": [None if not np.isfinite(v) else float(v) for v in b_res],
            "alphafold2_per_residue": [float(v) for v in a_res],
        }
        print(f"{name:32s} L={len(y):4d} coverage {ref['cases'][name]['coverage']:.2f}  "
              f"biotite {b_glob:.4f}  AF2 {a_glob:.4f}")
    ref["made_by"] = "python tests/data/reference_scores/make_lddt_reference.py"
    ref["versions"] = {"biotite": biotite.__version__, "numpy": np.__version__}
    ref["notes"] = ("biotite.structure.lddt(reference CA AtomArray, model coordinates) with defaults "
                    "(15 A inclusion radius, bins 0.5/1/2/4 A, deviation <= bin); AlphaFold2 lddt transcribed "
                    "to numpy (cutoff 15 A, deviation < threshold). NaN model rows = residues the model lacks.")
    np.savez_compressed(HERE / "lddt_cases.npz", **arrays)
    (HERE / "lddt_reference.json").write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
