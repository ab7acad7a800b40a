"""The separation prior's vectorised fit gives, bit for bit, the table of the plain
per-chain, per-diagonal collection it replaced (issue 19): medians and means over the
same values in the same order."""

import numpy as np
import pytest

from distfold.data.dataset import Sample
from distfold.pipeline.prior import SeparationPrior


def plain_table(prior: SeparationPrior, matrices, max_separation: int) -> np.ndarray:
    nb = len(prior.buckets) + 1
    values = [[[] for _ in range(max_separation + 1)] for _ in range(nb)]
    for d in matrices:
        d = np.asarray(d, dtype=np.float64)
        b = prior.bucket(len(d))
        for s in range(1, min(len(d), max_separation + 1)):
            v = np.diagonal(d, s)
            if np.isfinite(v).any():
                values[b][s].append(v[np.isfinite(v)])
    stat = np.median if prior.statistic == "median" else np.mean
    table = np.full((nb, max_separation + 1), np.nan)
    pooled = np.full(max_separation + 1, np.nan)
    for s in range(1, max_separation + 1):
        allv = [np.concatenate(values[b][s]) for b in range(nb) if values[b][s]]
        if allv and sum(map(len, allv)) >= prior.min_count:
            pooled[s] = stat(np.concatenate(allv))
        for b in range(nb):
            if values[b][s] and sum(map(len, values[b][s])) >= prior.min_count:
                table[b, s] = stat(np.concatenate(values[b][s]))
    last = pooled[1] if np.isfinite(pooled[1]) else np.nanmin(pooled[1:])
    for s in range(1, max_separation + 1):
        last = pooled[s] = pooled[s] if np.isfinite(pooled[s]) else last
    table = np.where(np.isfinite(table), table, pooled[None, :])
    table[:, 0] = 0.0
    return np.round(table, 4)


def chains(seed: int = 3):
    rng = np.random.default_rng(seed)
    out = []
    for n in (1, 2, 5, 40, 63, 64, 90, 130, 130, 300):
        x = np.cumsum(rng.normal(scale=2.2, size=(n, 3)), axis=0).astype(np.float32)
        x[rng.random(n) < 0.1] = np.nan  # unobserved residues
        out.append(x)
    return out


def distances(x):
    x = x.astype(np.float64)  # as Sample.distances()
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)).astype(np.float32)


@pytest.mark.parametrize("statistic", ["median", "mean"])
@pytest.mark.parametrize("max_separation", [20, 1024])
def test_fit_equals_the_plain_collection(statistic, max_separation):
    coords = chains()
    ds = type("DS", (), {"indices": lambda self, split: list(range(len(coords))),
                         "__getitem__": lambda self, i: Sample({}, coords[i]), "path": "fake"})()
    prior = SeparationPrior(statistic=statistic, min_count=5)
    want = plain_table(prior, [distances(x) for x in coords], max_separation)
    got = prior.fit(ds, "train", max_separation=max_separation).table
    assert np.array_equal(got, want)
    from_matrices = SeparationPrior(statistic=statistic, min_count=5).fit_distance_matrices(
        [distances(x).astype(np.float64) for x in coords], max_separation)
    assert np.array_equal(from_matrices.table, want)
