"""Contact probabilities (the exact inverse of the regression head's delta method), the
contacts.tsv rows, and contact precision by separation range."""

from __future__ import annotations

import numpy as np
import pytest

from distfold.pipeline.contacts import (CONTACT_COLUMNS, contact_probability, contact_rows, contacts_tsv,
                                        range_precision)


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from distfold.pipeline.model import DistanceModel
    from distfold.pipeline.prior import SeparationPrior

    rng = np.random.default_rng(0)
    mats = []
    for n in (20, 50):
        x = np.cumsum(rng.normal(size=(n, 3)) * 2.2, 0)
        mats.append(np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)))
    prior = SeparationPrior(min_count=1).fit_distance_matrices(mats, max_separation=64)
    model = DistanceModel.build(("qwen", {"preset": "tiny"}), ("regression", {"pair_dim": 8, "n_blocks": 1}),
                                ("log1p", {}), prior=prior, crop=64)
    model.normaliser.fit(np.concatenate([m.ravel() for m in mats]))
    model.refresh_config()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.head.parameters():
            if p.dim() > 1 and not p.abs().sum():
                p.normal_(0.0, 0.3)
    return model


def test_regression_head_probability_is_the_laplace_in_normalised_space(tiny_model):
    import torch

    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
    out = tiny_model.predict([seq])[0]
    with torch.no_grad():
        raw = tiny_model.forward([seq])
    mu = raw["distance"][0].double().numpy()
    b = raw["scale"][0].double().numpy()
    y8 = float(tiny_model.normaliser.encode(np.float64(8.0)))
    z = (y8 - mu) / b
    direct = np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))
    got = contact_probability(out["distance"], out["variance"], "laplace", tiny_model.normaliser)
    off = ~np.eye(len(seq), dtype=bool)
    assert np.abs(got - direct)[off].max() < 1e-4  # measured 7.6e-6: float32 rounding of d and v
    assert 0.01 < got[off].mean() < 0.99  # a non-degenerate case


def test_probability_in_angstrom_space_and_without_variance():
    d = np.array([[0, 6.0, 10.0], [6.0, 0, 8.0], [10.0, 8.0, 0]])
    v = np.full((3, 3), 2.0)  # Laplace b = 1
    p = contact_probability(d, v, "laplace")
    assert p[0, 1] == pytest.approx(1 - 0.5 * np.exp(-2.0))
    assert p[0, 2] == pytest.approx(0.5 * np.exp(-2.0))
    assert p[1, 2] == pytest.approx(0.5)
    g = contact_probability(d, np.full((3, 3), 4.0), "gaussian")
    assert g[0, 1] == pytest.approx(0.841344746, rel=1e-6)
    hard = contact_probability(d, None, None)
    assert hard[0, 1] == 1.0 and hard[1, 2] == 0.0 and hard[0, 2] == 0.0


def test_contact_rows_filter_sort_and_cap():
    n = 20
    p = np.zeros((n, n))
    p[0, 10] = p[10, 0] = 0.9
    p[2, 15] = p[15, 2] = 0.9
    p[1, 4] = p[4, 1] = 0.99  # |i - j| < 6: never listed
    p[3, 19] = p[19, 3] = 0.04  # under 0.05
    p[5, 12] = p[12, 5] = 0.3
    assert contact_rows(p) == [(0, 10, 0.9), (2, 15, 0.9), (5, 12, 0.3)]
    assert contact_rows(p, max_pairs=1) == [(0, 10, 0.9)]
    text = contacts_tsv(p, np.full((n, n), 7.5), "A" * n)
    lines = text.splitlines()
    assert lines[0].split("\t") == list(CONTACT_COLUMNS)
    assert lines[1] == "1\t11\tA\tA\t10\t0.9000\t7.50"
    assert len(lines) == 4


def test_range_precision_by_hand():
    n = 40
    true_d = np.full((n, n), 20.0)
    score = np.zeros((n, n))
    # long range: two top pairs, one true contact
    score[0, 30] = score[30, 0] = 0.9
    true_d[0, 30] = true_d[30, 0] = 5.0
    score[1, 35] = score[35, 1] = 0.8
    # short range: top pair is a contact
    score[3, 9] = score[9, 3] = 0.7
    true_d[3, 9] = true_d[9, 3] = 6.0
    r = range_precision(score, true_d)
    # k = L // 5 = 8 for L/5: long has 8 ranked, one contact; L/2 = 20, L = 40
    assert r["long"]["L/5"] == pytest.approx(1 / 8)
    assert r["long"]["L"] == pytest.approx(1 / 40)
    assert r["short"]["L/5"] == pytest.approx(1 / 8)
    assert r["medium"]["L/5"] == 0.0
    # distances rank ascending
    r2 = range_precision(np.where(score > 0, 1.0, 30.0), true_d, higher_is_contact=False)
    assert r2["long"]["L/5"] == pytest.approx(1 / 8)
    # the masked residue 0 removes its pair
    mask = np.ones(n, bool)
    mask[0] = False
    assert range_precision(score, true_d, mask)["long"]["L/5"] == 0.0
    assert range_precision(score[:5, :5], true_d[:5, :5])["short"]["L/5"] is None
