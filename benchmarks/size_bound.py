"""How much of a model's distance error is the chain's global size?

For every chain of a split (default val, <= 256 residues) this scores the model's
predicted matrix (``distfold predict``'s path, :meth:`distfold.pipeline.predictor.Predictor.distances`)
and the separation prior, and then an oracle: the model's prediction with every pair
at |i - j| >= ``--min-separation`` multiplied by the one factor (grid 0.6-2.0) that
minimises that chain's MAE against the truth. The oracle knows each chain's true size
and nothing else, so its MAE bounds what a perfect per-chain size predictor could add
to this model.

Chains are also split by compactness, Rg / (2.2 L^0.38) (Rg of the observed C-alphas;
2.2 L^0.38 Å is the radius of gyration of a typical globular chain of L residues):
below ``--extended`` compact, otherwise extended. Usage::

    python benchmarks/size_bound.py DATASET [--model DIR] [--split val] [--max-length 256]
"""

from __future__ import annotations

import argparse

import numpy as np


def radius_of_gyration(d: np.ndarray, mask: np.ndarray) -> float:
    """From the distance matrix: Rg^2 = sum_ij d_ij^2 / (2 n^2) over observed residues."""
    m = mask[:, None] & mask[None, :]
    n = int(mask.sum())
    return float(np.sqrt((np.where(m, d, 0.0) ** 2).sum() / (2 * n * n)))


def compactness(chain) -> float:
    n = len(chain.sequence)
    return radius_of_gyration(chain.distances(), chain.mask) / (2.2 * n ** 0.38)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--min-separation", type=int, default=12)
    ap.add_argument("--extended", type=float, default=1.3, help="compactness at or above which a chain is extended")
    args = ap.parse_args()

    import torch

    from distfold.data.dataset import Dataset
    from distfold.pipeline.predictor import Predictor
    from distfold.pipeline.prior import SeparationPrior

    torch.set_num_threads(1)
    ds = Dataset(args.dataset)
    predictor = Predictor.load(args.model, reconstructor=None)
    path = predictor.identity["path"]
    prior = SeparationPrior().fit(ds, "train")
    factors = np.linspace(0.6, 2.0, 71)
    rows = []
    for i in ds.indices(args.split):
        c = ds[i]
        n = len(c.sequence)
        if n > args.max_length or c.mask.sum() < 2:
            continue
        true = c.distances()
        iu = np.triu_indices(n, 1)
        ok = (c.mask[:, None] & c.mask[None, :])[iu]
        t = true[iu][ok]
        p = predictor.distances(c.sequence).distance[iu][ok]
        q = prior.matrix(n)[iu][ok]
        far = (iu[1] - iu[0])[ok] >= args.min_separation
        oracle = min(np.abs(np.where(far, p * f, p) - t).mean() for f in factors)
        rows.append((compactness(c), np.abs(p - t).mean(), np.abs(q - t).mean(), oracle))
    a = np.array(rows)
    ext = a[:, 0] >= args.extended
    print(f"model {path}; {args.split} chains <= {args.max_length} residues; mean distance MAE (A)")
    for split in ("train", args.split):
        chains = (ds[i] for i in ds.indices(split))
        r = [compactness(c) for c in chains if len(c.sequence) <= args.max_length and c.mask.sum() >= 2]
        q = np.quantile(r, [0.1, 0.5, 0.9])
        print(f"{split}: {len(r)} chains, Rg ratio 10/50/90 %: {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}, "
              f"extended: {np.mean(np.array(r) >= args.extended):.0%}")
    print(f"{'chains':<34} {'n':>3} {'model':>6} {'prior':>6} {'oracle size':>11}")
    for name, sel in (("all", np.ones(len(a), bool)), (f"compact (Rg ratio < {args.extended})", ~ext),
                      (f"extended (Rg ratio >= {args.extended})", ext)):
        if sel.any():
            m = a[sel].mean(0)
            print(f"{name:<34} {int(sel.sum()):>3} {m[1]:>6.2f} {m[2]:>6.2f} {m[3]:>11.2f}")


if __name__ == "__main__":
    main()
