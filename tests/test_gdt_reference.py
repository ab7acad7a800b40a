"""GDT against a slow independent search (every triple and every contiguous window of
residues as a seed, each iterated LGA-style), on real chains with noise and hinge
motions. Fixture made by ``python tests/data/reference_scores/make_gdt_reference.py``.

distfold's GDT is a lower bound of the true maximum (so is the reference: neither is
exhaustive); this pins down how far below the reference it may fall
(:data:`distfold.structure.metrics.GDT_TS_MEASURED_GAP`, issue 15 point 6)."""

import json

import numpy as np
import pytest

from distfold.structure import metrics as M

from conftest import DATA

REF = DATA / "reference_scores"
CASES = json.loads((REF / "gdt_reference.json").read_text())["cases"]


@pytest.fixture(scope="module")
def arrays():
    return np.load(REF / "gdt_cases.npz")


@pytest.fixture(scope="module")
def ours(arrays):
    out = {}
    for name in CASES:
        x, y = arrays[f"{name}__model"], arrays[f"{name}__ref"]
        out[name] = {c: round(f * len(y)) for c, f in M.gdt(x, y).items()}
    return out


def test_gdt_ts_within_the_documented_gap_of_the_reference(ours):
    gaps = []
    for name, c in CASES.items():
        n = c["length"]
        ts = 100 * np.mean([ours[name][cut] / n for cut in M.GDT_TS_CUTOFFS])
        gaps.append(c["gdt_ts"] - ts)
        assert ts >= c["gdt_ts"] - M.GDT_TS_MEASURED_GAP, name
        for cut in M.GDT_CUTOFFS:
            assert ours[name][cut] >= c["counts"][str(cut)] - 2, (name, cut)
    # measured: -0.35 to 1.39 GDT-TS below the reference, median 0.46
    assert np.median(gaps) <= 0.6


def test_gdt_scores_agree_with_gdt(arrays):
    name = "nmr_model2_vs_model1"
    x, y = arrays[f"{name}__model"], arrays[f"{name}__ref"]
    f = M.gdt(x, y)
    s = M.gdt_scores(x, y)
    assert s["gdt_ts"] == pytest.approx(100 * np.mean([f[c] for c in M.GDT_TS_CUTOFFS]))
