"""Reference GDT counts for tests/test_gdt_reference.py from a slow, independent search
(plain numpy, none of distfold's superposition code): for every cutoff separately, a
Kabsch fit on every triple of residues and on every contiguous window of 3 or more
residues, each followed by LGA-style iteration (refit on the residues within the
cutoff until the set repeats, at most 40 times); the most residues within the cutoff
under any superposition visited is the count.

Run from the repository root (about 5 CPU-minutes):

    python tests/data/reference_scores/make_gdt_reference.py

Writes ``gdt_cases.npz`` (model and reference C-alpha coordinates, corresponded row by
row, Å) and ``gdt_reference.json`` (the count per cutoff 0.5, 1, 2, 4, 8 Å, GDT-TS and
GDT-HA of each case). Cases are real chains of tests/data: two NMR models, a homologue,
noisy copies and hinge motions (one part of a chain rotated about a residue).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DATA = ROOT / "tests" / "data"
CUTOFFS = (0.5, 1.0, 2.0, 4.0, 8.0)
BATCH = 8192


def kabsch(xs, ys, w):
    """Batched weighted Kabsch (proper rotations): xs, ys (N, 3); w (B, N) 0/1."""
    sw = w.sum(1)
    cx = w @ xs / sw[:, None]
    cy = w @ ys / sw[:, None]
    cov = np.einsum("bn,ni,nj->bij", w, xs, ys) - sw[:, None, None] * cx[:, :, None] * cy[:, None, :]
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(vt.transpose(0, 2, 1) @ u.transpose(0, 2, 1)))
    d[d == 0] = 1
    vt[:, 2, :] *= d[:, None]
    r = vt.transpose(0, 2, 1) @ u.transpose(0, 2, 1)
    return r, cy - np.einsum("bij,bj->bi", r, cx)


def best_count(x, y, cutoff, seeds):
    """Most pairs within ``cutoff`` over the fits of ``seeds`` (B, N) and their iterations."""
    best = 0
    for a in range(0, len(seeds), BATCH):
        w = seeds[a:a + BATCH].astype(np.float64)
        for _ in range(40):
            r, t = kabsch(x, y, w)
            d = np.linalg.norm(np.einsum("bij,nj->bni", r, x) + t[:, None] - y, axis=2)
            within = d <= cutoff
            cnt = within.sum(1)
            best = max(best, int(cnt.max()))
            nxt = within & (cnt >= 3)[:, None]
            moved = (nxt != (w > 0)).any(1) & (cnt >= 3)
            if not moved.any():
                break
            w = nxt[moved].astype(np.float64)
    return best


def seeds_for(n):
    rows = [np.isin(np.arange(n), c) for c in itertools.combinations(range(n), 3)]
    for length in range(3, n + 1):
        for s in range(n - length + 1):
            m = np.zeros(n, bool)
            m[s:s + length] = True
            rows.append(m)
    return np.array(rows)


def hinge(ca, pivot, degrees, axis):
    """The residues after ``pivot`` rotated by ``degrees`` about ``axis`` through it."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k
    out = ca.copy()
    out[pivot:] = (ca[pivot:] - ca[pivot]) @ rot.T + ca[pivot]
    return out


def cases():
    sys.path.insert(0, str(ROOT))
    from distfold.structure.alignment import align_sequences
    from distfold.structure.io import read_chain

    rng = np.random.default_rng(6)
    nmr1 = read_chain(DATA / "compare" / "1adz_nmr_models_1_2.pdb.gz")
    nmr2 = read_chain(DATA / "compare" / "1adz_model_2.pdb.gz")
    cih = read_chain(DATA / "compare" / "d1cih.pdb.gz")
    lfm = read_chain(DATA / "compare" / "d1lfma.pdb.gz")
    ex = read_chain(ROOT / "examples" / "example.pdb")
    small = read_chain(DATA / "chains" / "c70b106ab8731.pdb.gz")
    beta = read_chain(DATA / "chains" / "cb98f573e0d35.pdb.gz")
    hel = read_chain(DATA / "chains" / "c55406f94174e.pdb.gz")
    c = align_sequences(lfm.sequence, cih.sequence)
    out = {
        "nmr_model2_vs_model1": (nmr2.ca, nmr1.ca),
        "homologue_lfm_vs_cih_first80": (lfm.ca[c.model_index][:80], cih.ca[c.ref_index][:80]),
        "example_81_hinge30": (hinge(ex.ca[30:111], 40, 30, [1, 0.3, 0]) + rng.normal(scale=0.4, size=(81, 3)),
                               ex.ca[30:111]),
        "small_hinge45": (hinge(small.ca[:90], 48, 45, [0, 1, 1]) + rng.normal(scale=0.6, size=(90, 3)),
                          small.ca[:90]),
        "beta_noise2A_75": (beta.ca[:75] + rng.normal(scale=2.0, size=(75, 3)), beta.ca[:75]),
        "helix_noise1p5A_70": (hel.ca[20:90] + rng.normal(scale=1.5, size=(70, 3)), hel.ca[20:90]),
        "helix_two_hinges_80": (hinge(hinge(hel.ca[:80], 27, 25, [1, 0, 0]), 55, -35, [0, 0, 1])
                                + rng.normal(scale=0.5, size=(80, 3)), hel.ca[:80]),
        "nmr_mirror": (nmr2.ca * np.array([1, 1, -1]), nmr1.ca),
    }
    return out


def main():
    arrays, ref = {}, {"cases": {}}
    for name, (x, y) in cases().items():
        x = np.round(np.asarray(x, dtype=np.float64), 3)
        y = np.round(np.asarray(y, dtype=np.float64), 3)
        arrays[f"{name}__model"], arrays[f"{name}__ref"] = x, y
        t = time.time()
        seeds = seeds_for(len(x))
        counts = {str(c): best_count(x, y, c, seeds) for c in CUTOFFS}
        n = len(y)
        ts = 100 * np.mean([counts[str(c)] / n for c in (1.0, 2.0, 4.0, 8.0)])
        ha = 100 * np.mean([counts[str(c)] / n for c in (0.5, 1.0, 2.0, 4.0)])
        ref["cases"][name] = {"length": n, "counts": counts, "gdt_ts": ts, "gdt_ha": ha, "n_seeds": len(seeds)}
        print(f"{name:30s} L={n:3d} counts {counts} GDT-TS {ts:.2f} GDT-HA {ha:.2f} ({time.time() - t:.0f} s)",
              flush=True)
    ref["made_by"] = "python tests/data/reference_scores/make_gdt_reference.py"
    ref["versions"] = {"numpy": np.__version__}
    np.savez_compressed(HERE / "gdt_cases.npz", **arrays)
    (HERE / "gdt_reference.json").write_text(json.dumps(ref, indent=1) + "\n")


if __name__ == "__main__":
    main()
