"""Cross-validation that behaves like new families: k folds by homology super-cluster.

Why: the val split shares no *family* with train (identity >= 0.3 and local E <= 1e-5,
single linkage; ``distfold data build``), but remote homologs below that bar still cross
it, and an outside benchmark of new families found the model's long-range corrections
worse than the separation prior while val said the opposite (issue 17). Here whole
*super-clusters* are held out: the dataset's families merged by single linkage whenever
any chain of one and any chain of the other align locally (BLOSUM62, gaps 11/1) with
E-value <= ``--evalue`` (default 1e-3, 100x looser than the build's and with no identity
floor; pairs of families' representatives that pass the build's 3-mer diagonal prefilter),
so a held-out chain has no homolog in its fold's training part that the build's search
would find at that looser bar.
Super-clusters are dealt to ``--folds`` folds, largest first, each to the fold with the
fewest chains (deterministic).

Steps (each writes under CVDIR; run from the repository root)::

    python benchmarks/cv_new_family.py split DATASET -o CVDIR [--folds 4] [--evalue 1e-3]
    python benchmarks/cv_new_family.py train CVDIR --fold K -- <distfold train options>
    python benchmarks/cv_new_family.py predict CVDIR --fold K [--model best|final]
    python benchmarks/cv_new_family.py report CVDIR [--tm-chains 40] [--json OUT] [--variance-shrink]
    python benchmarks/cv_new_family.py holdout CVDIR --model MODEL --dataset DATASET -o OUT

- ``holdout``: a model already trained on the dataset's train split (the shipped one), its
  predictions of the ``val`` chains whose super-cluster has no training chain, in 2 folds by
  super-cluster, so that ``report OUT`` fits and checks the shrinkage for that model itself.

- ``split``: CVDIR/folds.json (super-cluster and fold of every chain) and, per fold,
  CVDIR/foldK/dataset: the whole dataset with the fold's chains in split ``test`` and the
  rest in ``train`` (no ``val``: nothing is selected on the held-out chains).
- ``train``: ``distfold train`` on that dataset into CVDIR/foldK/model (the trainer of
  ``distfold.pipeline.train``, unchanged: the separation prior and the normaliser are fitted
  on the fold's training part only). The final weights are used; no checkpoint selection.
- ``predict``: out-of-fold predictions of the fold's held-out chains of <= ``--max-length``
  residues, through the same :class:`~distfold.pipeline.predictor.Predictor` windows as
  ``distfold predict``, without any shrinkage: CVDIR/foldK/oof/<id>.npz (distance,
  variance, weight_variance, coverage, prior, C-alpha coordinates, ss_probs, ss labels).
- ``report``: pooled over folds: distance MAE by separation band (1-5, 6-11, 12-23, 24+)
  of the model and of the fold's prior; C-alpha lDDT; TM-score after SMACOF (of
  ``--tm-chains`` chains per fold, the same chains for every method); Q3 against DSSP; and
  the shrinkage toward the prior (``distfold.pipeline.model``: y = prior + f (y_model - prior)
  in the normaliser's space, one factor per band) fitted on the out-of-fold predictions:
  nested (each fold's factors fitted on the other folds: the honest number) and on all
  folds (the factors to ship). Chains are weighted 1 / (their family's held-out chains), so
  each family counts once, like a benchmark of distinct families; unweighted chain means
  are reported beside them. ``--variance-shrink`` adds shrinkage by the predicted
  uncertainty instead of by band alone: f = 1 / (1 + k variance) per pair (variance in Å^2),
  one k per band, fitted nested the same way (issue 17).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BANDS = ((1, 5), (6, 11), (12, 23), (24, None))  # reported
FIT_BANDS = ((1, 5), (6, 11), (12, 23), (24, 47), (48, None))  # one shrinkage factor each
GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)
#: --variance-shrink: k of f = 1 / (1 + k variance) (variance in Å^2), one k per band
K_GRID = np.concatenate([[0.0], np.round(np.logspace(-4, 1, 26), 6)])


def band_name(lo, hi) -> str:
    return f"{lo}-{hi}" if hi is not None else f"{lo}+"


# -- split ----------------------------------------------------------------------------------------

def super_clusters(records: list[dict], evalue: float) -> list[str]:
    """Super-cluster name per record: families joined (single linkage) when their
    representatives (the chain with the most observed residues of each family) align
    locally with E <= evalue. The pairs aligned are those the build's own 3-mer prefilter
    passes (>= MIN_DIAGONAL_HITS shared 3-mers on one diagonal band; score only, a minute
    for 400 families); families are already single-linkage clusters at the build's
    stricter bar, so a representative stands for its family."""
    from distfold.data.build import (MIN_DIAGONAL_HITS, UnionFind, _clean, _local_aligner, alignment_evalue,
                                     diagonal_kmer_scores)

    fams = sorted({r["family"] for r in records})
    fam_index = {f: k for k, f in enumerate(fams)}
    rep: dict[str, dict] = {}
    for r in records:
        f = r["family"]
        if f not in rep or r["n_observed"] > rep[f]["n_observed"]:
            rep[f] = r
    al = _local_aligner()
    uf = UnionFind(len(fams))
    reps = [_clean(rep[f]["sequence"]) for f in fams]
    scores = diagonal_kmer_scores(reps)
    pairs = sorted((p for p, c in scores.items() if c >= MIN_DIAGONAL_HITS), key=lambda p: (-scores[p], p))
    for a, b in pairs:
        if uf.find(a) == uf.find(b):
            continue
        if alignment_evalue(al.score(reps[a], reps[b]), len(reps[a]), len(reps[b])) <= evalue:
            uf.union(a, b)
    names = {}
    for k, f in enumerate(fams):
        names.setdefault(uf.find(k), f)
    return [names[uf.find(fam_index[r["family"]])] for r in records]


def cmd_split(args) -> None:
    from distfold.data.dataset import Dataset, write_dataset

    ds = Dataset(args.dataset)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    groups = super_clusters(ds.records, args.evalue)
    size: dict[str, int] = {}
    for g in groups:
        size[g] = size.get(g, 0) + 1
    fold_of_group: dict[str, int] = {}
    load = [0] * args.folds
    for g in sorted(size, key=lambda g: (-size[g], g)):
        k = int(np.argmin(load))
        fold_of_group[g] = k
        load[k] += size[g]
    folds = [fold_of_group[g] for g in groups]
    doc = {"dataset": str(args.dataset), "dataset_fingerprint": ds.fingerprint, "folds": args.folds,
           "evalue": args.evalue, "families": len({r["family"] for r in ds.records}),
           "super_clusters": len(size), "largest_super_clusters": sorted(size.values(), reverse=True)[:8],
           "chains_per_fold": load, "seconds": round(time.perf_counter() - t, 1),
           "chains": {r["id"]: {"family": r["family"], "super_cluster": g, "fold": k}
                      for r, g, k in zip(ds.records, groups, folds)}}
    (out / "folds.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    coords = [ds[i].coords for i in range(len(ds))]
    for k in range(args.folds):
        recs = []
        for r, f in zip(ds.records, folds):
            r = dict(r)
            r.pop("offset", None)
            r["split"] = "test" if f == k else "train"
            recs.append(r)
        write_dataset(out / f"fold{k}" / "dataset", recs, coords, params=dict(ds.meta.get("params", {}), cv_fold=k,
                                                                             cv_folds=args.folds))
    print(f"{len(ds)} chains, {doc['families']} families -> {len(size)} super-clusters (E <= {args.evalue:g}; "
          f"largest {doc['largest_super_clusters']}); chains per fold {load}; {doc['seconds']} s", file=sys.stderr)


# -- train ----------------------------------------------------------------------------------------

def cmd_train(args, rest: list[str]) -> None:
    cv = Path(args.cvdir)
    fold = cv / f"fold{args.fold}"
    cmd = [sys.executable, "-m", "distfold", "train", str(fold / "dataset"), "-o", str(fold / "model"), *rest]
    print(" ".join(cmd), file=sys.stderr)
    sys.exit(subprocess.call(cmd))


# -- predict --------------------------------------------------------------------------------------

def cmd_predict(args) -> None:
    fold = Path(args.cvdir) / f"fold{args.fold}"
    _predict_fold(fold, fold / "model" if args.model == "final" else fold / "model" / "best", args.max_length)


def _predict_fold(fold: Path, mdir: Path, max_length: int) -> None:
    from distfold.data.dataset import Dataset
    from distfold.pipeline.model import DistanceModel
    from distfold.pipeline.predictor import Predictor

    ds = Dataset(fold / "dataset")
    model = DistanceModel.load(mdir)
    model.config.pop("shrinkage", None)  # the model as trained
    predictor = Predictor(model, reconstructor=None)
    oof = fold / "oof"
    oof.mkdir(exist_ok=True)
    (oof / "model.json").write_text(json.dumps({"model": str(mdir), "normaliser": model.config["components"]["normaliser"]},
                                               indent=1, sort_keys=True) + "\n")
    t, n = time.perf_counter(), 0
    for i in ds.indices("test"):
        s = ds[i]
        L = len(s.sequence)
        if L > max_length or s.mask.sum() < 2:
            continue
        p = predictor.distances(s.sequence)
        arrays = {"distance": p.distance, "variance": p.variance, "weight_variance": p.weight_variance,
                  "coverage": p.coverage if p.coverage is not None else np.ones((L, L), np.uint16),
                  "prior": model.prior.matrix(L).astype(np.float32), "coords": s.coords,
                  "ss": np.array(s.record.get("ss") or "-" * L)}
        if p.ss_probs is not None:
            arrays["ss_probs"] = p.ss_probs
        np.savez(oof / f"{s.record['id']}.npz", **{k: v for k, v in arrays.items() if v is not None})
        n += 1
    print(f"{fold.name}: {n} out-of-fold chains in {time.perf_counter() - t:.0f} s -> {oof}", file=sys.stderr)


# -- holdout: a trained model on its own unseen split ---------------------------------------------

def cmd_holdout(args) -> None:
    """Out-of-training predictions of an already trained model (e.g. the shipped one, trained on
    the train split) on the chains of ``--split`` whose super-cluster (from CVDIR/folds.json) has
    no chain in the model's training split: new families at the looser bar. They are dealt to 2
    folds by super-cluster, so that ``report`` can fit shrinkage nested for this model."""
    from distfold.data.dataset import Dataset, write_dataset

    src = json.loads((Path(args.cvdir) / "folds.json").read_text())
    ds = Dataset(args.dataset)
    sc = {cid: v["super_cluster"] for cid, v in src["chains"].items()}
    seen = {sc[r["id"]] for r in ds.records if r["split"] != args.split}
    new = [r for r in ds.records if r["split"] == args.split and sc[r["id"]] not in seen]
    size: dict[str, int] = {}
    for r in new:
        size[sc[r["id"]]] = size.get(sc[r["id"]], 0) + 1
    fold_of, load = {}, [0, 0]
    for g in sorted(size, key=lambda g: (-size[g], g)):
        k = int(np.argmin(load))
        fold_of[g] = k
        load[k] += size[g]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"dataset": str(args.dataset), "dataset_fingerprint": ds.fingerprint, "folds": 2, "model": str(args.model),
           "split": args.split, "evalue": src["evalue"], "chains_in_split": len(ds.indices(args.split)),
           "chains_new_at_super_cluster": len(new), "chains_per_fold": load,
           "chains": {r["id"]: {"family": r["family"], "super_cluster": sc[r["id"]], "fold": fold_of[sc[r["id"]]]}
                      for r in new}}
    (out / "folds.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    coords = [ds[i].coords for i in range(len(ds))]
    recs = []
    for r in ds.records:
        r = dict(r)
        r.pop("offset", None)
        r["split"] = "test" if r["id"] in doc["chains"] else "train"
        recs.append(r)
    for k in range(2):
        keep = [(r, c) for r, c in zip(recs, coords) if r["split"] == "train" or doc["chains"][r["id"]]["fold"] == k]
        write_dataset(out / f"fold{k}" / "dataset", [r for r, _ in keep], [c for _, c in keep], params={"holdout": k})
        _predict_fold(out / f"fold{k}", Path(args.model), args.max_length)
    print(f"{len(new)} of {doc['chains_in_split']} {args.split} chains have no super-cluster in training; "
          f"folds {load}", file=sys.stderr)


# -- report ---------------------------------------------------------------------------------------

class Chain:
    """One out-of-fold chain: the upper-triangle pairs with a true distance."""

    def __init__(self, cid: str, fold: int, family: str, data, encode, decode):
        self.id, self.fold, self.family = cid, fold, family
        self.data = data
        x = data["coords"].astype(np.float64)
        self.true = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        self.mask = np.isfinite(x).all(1)
        n = len(x)
        i, j = np.triu_indices(n, 1)
        ok = np.isfinite(self.true[i, j])
        self.i, self.j = i[ok], j[ok]
        self.sep = self.j - self.i
        self.t = self.true[self.i, self.j]
        self.dm = data["distance"][self.i, self.j].astype(np.float64)
        self.dp = data["prior"][self.i, self.j].astype(np.float64)
        self.ym, self.yp = encode(self.dm), encode(self.dp)
        self.decode, self.encode = decode, encode
        v = data.get("variance")
        # pairs no window saw hold the prior already (variance inf): f is moot there, keep 1
        self.v = np.nan_to_num(v[self.i, self.j].astype(np.float64), posinf=0.0) if v is not None \
            else np.zeros_like(self.t)

    def shrunk_matrix(self, factors: dict[tuple, float], by_variance: bool = False
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(distance, variance, weight_variance) with the band factors applied as the model
        applies them (normaliser space; the variance by the delta method at the new point).
        ``by_variance``: ``factors`` are k per band, f = 1 / (1 + k variance) per pair."""
        d = self.data["distance"].astype(np.float64)
        p = self.data["prior"].astype(np.float64)
        n = len(d)
        sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None])
        f = np.ones((n, n))
        var = self.data.get("variance")
        for (lo, hi), v in factors.items():
            band = (sep >= lo) & (sep <= (n if hi is None else hi))
            f[band] = 1.0 / (1.0 + v * np.nan_to_num(var[band], posinf=0.0)) if by_variance else v
        yd, yp = self.encode(d), self.encode(p)
        new = self.decode(yp + f * (yd - yp))
        np.fill_diagonal(new, 0.0)
        v = self.data.get("variance")
        wv = self.data.get("weight_variance")
        cov = self.data["coverage"] > 0
        if v is not None:
            eps = 1e-3  # decode slope ratio (delta method), as the head's variance_angstrom
            slope_new = (self.decode(self.encode(new) + eps) - self.decode(self.encode(new) - eps))
            slope_old = (self.decode(yd + eps) - self.decode(yd - eps))
            ratio = np.where(slope_old > 0, slope_new / np.maximum(slope_old, 1e-12), 1.0) ** 2
            v = np.where(cov, v * ratio, v)
            wv = np.where(cov, v, wv) if wv is not None else v
            np.fill_diagonal(v, 0.0)
            np.fill_diagonal(wv, 0.0)
        new = np.where(cov, new, d)  # pairs no window saw hold the prior already
        return new.astype(np.float32), None if v is None else v.astype(np.float32), \
            None if wv is None else wv.astype(np.float32)


def band_mae(c: Chain, d: np.ndarray, lo, hi) -> float:
    sel = (c.sep >= lo) & (c.sep <= (c.sep.max() if hi is None else hi))
    return float(np.abs(d[sel] - c.t[sel]).mean()) if sel.any() else float("nan")


def wmean(values, weights) -> float:
    v, w = np.asarray(values, float), np.asarray(weights, float)
    ok = np.isfinite(v)
    return float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() else float("nan")


def fit_factors(chains: list[Chain], weights: list[float], fit_from: int = 1) -> dict[tuple, float]:
    """Per band, the grid factor with the lowest family-weighted mean over chains of the
    band's MAE (the bands are independent: each factor moves only its band). Bands that
    start below ``fit_from`` keep the model (factor 1): MAE is not lDDT, and the local
    pairs lDDT counts are where the model's corrections transfer."""
    out = {}
    for lo, hi in FIT_BANDS:
        if lo < fit_from:
            out[(lo, hi)] = 1.0
            continue
        scores = []
        for f in GRID:
            vals = [band_mae(c, c.decode(c.yp + f * (c.ym - c.yp)), lo, hi) for c in chains]
            scores.append(wmean(vals, weights))
        out[(lo, hi)] = float(GRID[int(np.nanargmin(scores))])
    return out


def fit_variance_k(chains: list[Chain], weights: list[float], fit_from: int = 1) -> dict[tuple, float]:
    """Like :func:`fit_factors`, but each band's shrinkage follows the predicted uncertainty:
    f = 1 / (1 + k variance) per pair (variance in Å^2), k from K_GRID (0: the model)."""
    out = {}
    for lo, hi in FIT_BANDS:
        if lo < fit_from:
            out[(lo, hi)] = 0.0
            continue
        scores = [wmean([band_mae(c, c.decode(c.yp + (c.ym - c.yp) / (1.0 + k * c.v)), lo, hi) for c in chains],
                        weights) for k in K_GRID]
        out[(lo, hi)] = float(K_GRID[int(np.nanargmin(scores))])
    return out


def apply_variance(c: Chain, ks: dict[tuple, float]) -> np.ndarray:
    f = np.ones_like(c.ym)
    for (lo, hi), k in ks.items():
        sel = (c.sep >= lo) & (c.sep <= (c.sep.max() if hi is None else hi))
        f[sel] = 1.0 / (1.0 + k * c.v[sel])
    return c.decode(c.yp + f * (c.ym - c.yp))


def apply_pairs(c: Chain, factors: dict[tuple, float]) -> np.ndarray:
    f = np.ones_like(c.ym)
    for (lo, hi), v in factors.items():
        f[(c.sep >= lo) & (c.sep <= (c.sep.max() if hi is None else hi))] = v
    return c.decode(c.yp + f * (c.ym - c.yp))


def cmd_report(args) -> None:
    from distfold.pipeline.evaluate import as_written, score_coords
    from distfold.pipeline.predictor import Predictor
    from distfold.registry import get_registry
    from distfold.structure.metrics import lddt
    from distfold.structure.secondary import SS_STATES

    cv = Path(args.cvdir)
    meta = json.loads((cv / "folds.json").read_text())
    chains: list[Chain] = []
    for k in range(meta["folds"]):
        oof = cv / f"fold{k}" / "oof"
        if not (oof / "model.json").is_file():
            print(f"fold {k}: no out-of-fold predictions (run predict --fold {k}); left out", file=sys.stderr)
            continue
        ncfg = json.loads((oof / "model.json").read_text())["normaliser"]
        norm = get_registry().create("normaliser", ncfg["name"], **ncfg["params"])
        for f in sorted(oof.glob("*.npz")):
            with np.load(f) as z:
                data = {key: z[key] for key in z.files}
            cid = f.stem
            chains.append(Chain(cid, k, meta["chains"][cid]["family"], data, norm.encode, norm.decode))
    if not chains:
        raise SystemExit(f"{cv}: no out-of-fold predictions")
    fam_n: dict[str, int] = {}
    for c in chains:
        fam_n[c.family] = fam_n.get(c.family, 0) + 1
    w = [1.0 / fam_n[c.family] for c in chains]
    folds = sorted({c.fold for c in chains})

    # shrinkage: nested (fold k's factors from the other folds) and on all folds
    nested = {}
    for k in folds:
        rest = [(c, wi) for c, wi in zip(chains, w) if c.fold != k]
        nested[k] = fit_factors([c for c, _ in rest], [wi for _, wi in rest], args.fit_from) if rest else \
            {b: 1.0 for b in FIT_BANDS}
    full = fit_factors(chains, w, args.fit_from)

    methods = {"model": lambda c: c.dm, "prior": lambda c: c.dp,
               "shrunk (nested)": lambda c: apply_pairs(c, nested[c.fold])}
    nested_k: dict[int, dict[tuple, float]] = {}
    if args.variance_shrink:  # f = 1 / (1 + k variance) per pair, k per band, nested the same way
        for k in folds:
            rest = [(c, wi) for c, wi in zip(chains, w) if c.fold != k]
            nested_k[k] = fit_variance_k([c for c, _ in rest], [wi for _, wi in rest], args.fit_from) if rest else \
                {b: 0.0 for b in FIT_BANDS}
        methods["shrunk by variance (nested)"] = lambda c: apply_variance(c, nested_k[c.fold])
    table = {}
    for name, fn in methods.items():
        rows = {"lddt": [], **{band_name(*b): [] for b in BANDS}, "all": []}
        for c in chains:
            d = fn(c)
            for b in BANDS:
                rows[band_name(*b)].append(band_mae(c, d, *b))
            rows["all"].append(float(np.abs(d - c.t).mean()))
            full_d = np.zeros_like(c.true)
            full_d[c.i, c.j] = d
            full_d = full_d + full_d.T
            rows["lddt"].append(lddt(full_d, np.where(np.isfinite(c.true), c.true, np.nan), c.mask)[0])
        table[name] = {key: {"family_weighted": wmean(v, w), "chain_mean": float(np.nanmean(v))}
                       for key, v in rows.items()}

    # TM-score after SMACOF (the same chains for every method)
    tm = {}
    if args.tm_chains > 0:
        pred = Predictor(_Stub(), reconstructor="smacof")
        rng = np.random.default_rng(0)
        picked = []
        for k in folds:
            ids = [c for c in chains if c.fold == k]
            picked += [ids[i] for i in sorted(rng.choice(len(ids), min(args.tm_chains, len(ids)), replace=False))]
        rows = {m: [] for m in methods}
        for c in picked:
            seq = "A" * len(c.true)
            ref = np.where(c.mask[:, None], c.data["coords"], np.nan)
            for m in methods:
                if m == "prior":
                    d, v, wv = c.data["prior"], None, None
                elif m == "model":
                    d, v, wv = c.data["distance"], c.data.get("variance"), c.data.get("weight_variance")
                elif m == "shrunk by variance (nested)":
                    d, v, wv = c.shrunk_matrix(nested_k[c.fold], by_variance=True)
                else:
                    d, v, wv = c.shrunk_matrix(nested[c.fold])
                p = pred.reconstruct(seq, d, v, weight_variance=wv, coverage=c.data["coverage"])
                rows[m].append(score_coords(as_written(p.coords), ref)["tm_score"])
        pw = [1.0 / fam_n[c.family] for c in picked]
        tm = {m: {"family_weighted": wmean(v, pw), "chain_mean": float(np.nanmean(v)), "n_chains": len(v)}
              for m, v in rows.items()}

    # Q3
    hits = tot = maj = 0
    for c in chains:
        if "ss_probs" not in c.data:
            continue
        truth = np.array([SS_STATES.find(ch) for ch in str(c.data["ss"])])
        lab = truth >= 0
        hits += int((c.data["ss_probs"].argmax(1)[lab] == truth[lab]).sum())
        tot += int(lab.sum())
        maj += int((truth[lab] == SS_STATES.index("C")).sum())
    q3 = {"q3": hits / tot if tot else None, "majority_class_C": maj / tot if tot else None, "residues": tot}

    fmt_bands = [{"band": [lo, hi], "factor": v} for (lo, hi), v in full.items()]
    result = {"chains": len(chains), "families": len(fam_n), "folds": folds, "table": table, "tm_score": tm,
              "fit_from": args.fit_from,
              "ss": q3, "shrinkage_all_folds": fmt_bands,
              "shrinkage_nested": {str(k): [{"band": [lo, hi], "factor": v} for (lo, hi), v in f.items()]
                                   for k, f in nested.items()}}
    if nested_k:
        result["variance_shrink_k_nested"] = {str(k): [{"band": [lo, hi], "k": v} for (lo, hi), v in f.items()]
                                              for k, f in nested_k.items()}
        result["variance_shrink_k_all_folds"] = [{"band": [lo, hi], "k": v} for (lo, hi), v in
                                                 fit_variance_k(chains, w, args.fit_from).items()]
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(_markdown(result))


class _Stub:
    """A model stand-in for a reconstruct-only Predictor (no windows are run)."""

    config = {"crop": 256}


def _markdown(r: dict) -> str:
    cols = [band_name(*b) for b in BANDS] + ["all", "lddt"]
    lines = [f"{r['chains']} out-of-fold chains, {r['families']} families, folds {r['folds']}; family-weighted "
             f"(chain mean in brackets)", "",
             "| method | " + " | ".join(f"MAE {c}" if c not in ("lddt",) else "lDDT" for c in cols) + " | TM-score |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for m, row in r["table"].items():
        cells = [f"{row[c]['family_weighted']:.3f} ({row[c]['chain_mean']:.3f})" for c in cols]
        t = r["tm_score"].get(m)
        cells.append(f"{t['family_weighted']:.4f} ({t['chain_mean']:.4f})" if t else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Q3 {r['ss']['q3']} (majority class C: {r['ss']['majority_class_C']}) over {r['ss']['residues']} "
                 "labelled residues")
    lines.append("shrinkage fitted on all folds: " + ", ".join(
        f"{band_name(*b['band'])}: {b['factor']}" for b in r["shrinkage_all_folds"]))
    for k, f in r["shrinkage_nested"].items():
        lines.append(f"  fold {k} (fitted without it): " + ", ".join(f"{band_name(*b['band'])}: {b['factor']}" for b in f))
    if "variance_shrink_k_nested" in r:
        lines.append("variance shrinkage k (f = 1 / (1 + k variance)), all folds: " + ", ".join(
            f"{band_name(*b['band'])}: {b['k']}" for b in r["variance_shrink_k_all_folds"]))
        for k, f in r["variance_shrink_k_nested"].items():
            lines.append(f"  fold {k} (fitted without it): " + ", ".join(f"{band_name(*b['band'])}: {b['k']}" for b in f))
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("dataset")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--folds", type=int, default=4)
    s.add_argument("--evalue", type=float, default=1e-3)
    t = sub.add_parser("train")
    t.add_argument("cvdir")
    t.add_argument("--fold", type=int, required=True)
    p = sub.add_parser("predict")
    p.add_argument("cvdir")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--model", choices=("final", "best"), default="final")
    p.add_argument("--max-length", type=int, default=256)
    h = sub.add_parser("holdout", help="a trained model's predictions of its unseen split's new super-clusters")
    h.add_argument("cvdir", help="a split's CVDIR (its folds.json gives the super-clusters)")
    h.add_argument("--model", required=True)
    h.add_argument("--dataset", required=True)
    h.add_argument("--split", default="val")
    h.add_argument("-o", "--output", required=True)
    h.add_argument("--max-length", type=int, default=256)
    r = sub.add_parser("report")
    r.add_argument("cvdir")
    r.add_argument("--tm-chains", type=int, default=40, help="chains per fold reconstructed for the TM-score")
    r.add_argument("--json", default=None)
    r.add_argument("--fit-from", type=int, default=12,
                   help="shrink only bands from this separation on (the closer ones keep the model)")
    r.add_argument("--variance-shrink", action="store_true",
                   help="also fit and score shrinkage by the predicted variance, f = 1 / (1 + k variance), k per band")
    args = ap.parse_args(argv)
    if args.cmd == "split":
        if args.folds < 2:
            raise SystemExit("--folds must be >= 2")
        cmd_split(args)
    elif args.cmd == "train":
        cmd_train(args, rest)
    elif args.cmd == "predict":
        cmd_predict(args)
    elif args.cmd == "holdout":
        cmd_holdout(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
