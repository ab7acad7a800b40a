"""Time the contact output of one record beside the confidence computation it sits next to.

For chains of L residues (a random-walk C-alpha chain, variance growing with separation, the
log1p normaliser of the shipped model), times side by side in one process:
``contact_probability`` (the (L, L) P(C-alpha distance < 8 Å)), ``contacts_tsv`` (the rows of
``<id>.contacts.tsv``) and ``predicted_lddt`` (the per-residue confidence predict already
computes). Prints min / median / max seconds of ``--repeats`` runs and the file's size.

    python benchmarks/bench_contacts.py --lengths 140 512 1024 2048 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


class Log1p:
    def __init__(self, scale: float):
        self.scale = scale

    def encode(self, d):
        return np.log1p(d) / self.scale

    def decode(self, y):
        return np.expm1(y * self.scale)


def chain(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(n, 3)) * 2.2, 0)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).astype(np.float32)
    sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None])
    v = ((0.05 + 0.01 * np.minimum(sep, 100)) * (1 + d)) ** 2
    np.fill_diagonal(v, 0)
    return d, v.astype(np.float32), "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n))


def stats(ts):
    return f"{min(ts):.4f} / {statistics.median(ts):.4f} / {max(ts):.4f}"


def main() -> None:
    from distfold.pipeline.confidence import predicted_lddt
    from distfold.pipeline.contacts import contact_probability, contacts_tsv

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[140, 512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    norm = Log1p(np.log1p(60.0))
    print("L\tcontact_probability_s (min/median/max)\tcontacts_tsv_s\tpredicted_lddt_s\trows\tbytes")
    for n in args.lengths:
        d, v, seq = chain(n)
        tp, tt, tc = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            p = contact_probability(d, v, "laplace", norm)
            tp.append(time.perf_counter() - t)
            t = time.perf_counter()
            text = contacts_tsv(p, d, seq)
            tt.append(time.perf_counter() - t)
            t = time.perf_counter()
            predicted_lddt(d, v, "laplace")
            tc.append(time.perf_counter() - t)
        print(f"{n}\t{stats(tp)}\t{stats(tt)}\t{stats(tc)}\t{text.count(chr(10)) - 1}\t{len(text.encode())}")


if __name__ == "__main__":
    main()
