"""Long chains on real structures: windowed prediction against the alternatives.

For every chain of a dataset split with ``--min-length`` to ``--max-length``
residues, five predictions of the full chain are scored against the observed
C-alphas, before reconstruction (the matrix: C-alpha lDDT, MAE) and after it
(the coordinates: C-alpha lDDT, residue-matched TM-score by
:func:`distfold.structure.metrics.score_coordinates`):

- ``prior``: the separation prior (fitted on the dataset's train split, the
  length bucket of the chain), reconstructed without weights, as
  ``distfold evaluate`` does;
- ``whole``: the model run on the whole chain at once, no windows (it sees
  separations and lengths beyond its training crop), weights 1/variance;
- ``crop``: the model run on the first ``crop`` residues only (truncation);
  every other pair takes the prior, weighted by 1 / (the prior's variance
  measured per separation and length bucket on the train split,
  :func:`prior_variance`) -- truncation's best variant: with the
  UNCOVERED_CV rule, which under-weights short separations, it scored lower;
- ``windowed``: ``distfold predict``'s path (:func:`distfold.pipeline.windows.predict_windowed`,
  window = crop, stride = crop / 2, weights from
  :func:`distfold.pipeline.windows.reconstruction_variance`): pairs no window covers take
  the prior's distance with the prior's uncertainty (UNCOVERED_CV * d_prior)^2;
- ``windowed-w0``: the same windows, uncovered pairs weight 0;
- ``windowed+pvar``: the same windows, uncovered pairs weighted by the prior's
  variance measured per separation and length bucket on the train split
  (:func:`prior_variance`), to check the UNCOVERED_CV rule against it.

With ``--segments`` a sixth, experimental prediction is scored:

- ``windowed+segments``: the windows plus two-segment windows -- segments A and
  B of ``--segment`` residues from distant parts of the chain, joined by a
  spacer of ``--gap`` masked positions so that every A-B pair sits at an
  apparent separation >= gap (the head clips separations at 32, so A-B pairs
  read "far apart", which they are), with the separation prior fed at the
  true separations -- merged by inverse variance like the windows. This needs
  the model's internals (backbone.tokenize/model, head, normaliser, prior), so
  it is not part of :mod:`distfold.pipeline.windows`; it measures whether non-local
  windows would help.

The reconstructor is the same for all (default ``smacof``). Usage::

    python benchmarks/eval_long.py DATASET_DIR [--model DIR] [--split val] [--min-length 300] [--max-length 600]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def prior_variance(ds, prior, split: str = "train") -> np.ndarray:
    """(n_buckets, max_sep + 1) mean squared deviation (Å^2) of true distances from
    the prior's value, per length bucket and separation, over ``split`` pairs;
    separations with fewer than 20 pairs take the pooled value or the last one."""
    table = prior.table
    nb, ns = table.shape
    sums = np.zeros((nb, ns))
    counts = np.zeros((nb, ns))
    for i in ds.indices(split):
        d = ds[i].distances().astype(np.float64)
        n = len(d)
        b = prior.bucket(n)
        for s in range(1, min(n, ns)):
            v = np.diagonal(d, s)
            v = v[np.isfinite(v)]
            sums[b, s] += ((v - table[b, s]) ** 2).sum()
            counts[b, s] += v.size
    pooled = np.where(counts.sum(0) >= 20, sums.sum(0) / np.maximum(counts.sum(0), 1), np.nan)
    last = np.nanmax(pooled[1:11])
    for s in range(1, ns):
        if np.isfinite(pooled[s]):
            last = pooled[s]
        else:
            pooled[s] = last
    var = np.where(counts >= 20, sums / np.maximum(counts, 1), pooled[None, :])
    var[:, 0] = 0.0
    return var


def predict_segments(model, seq: str, segs, gap: int, length: int | None = None):
    """Two (or more) segments of ``seq`` joined by ``gap`` masked spacer positions.

    Returns (idx (n,) residue indices, distance (n, n) Å, variance (n, n) Å^2). With
    contiguous segments and gap 0 this equals ``model.predict`` on that window."""
    import torch

    n_full = len(seq) if length is None else length
    parts, idx, real = [], [], []
    for k, (s, e) in enumerate(segs):
        if k:
            parts.append("X" * gap)
            real += [False] * gap
        parts.append(seq[s:e])
        idx += list(range(s, e))
        real += [True] * (e - s)
    text = "".join(parts)
    bb = model.backbone
    with torch.no_grad():
        ids, mask = bb.tokenize([text])
        mask = mask & torch.tensor(real)[None]
        out = bb.model(input_ids=ids, attention_mask=mask.long(), use_cache=False)
        feats = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]).float()
        pos = np.zeros(len(text), dtype=np.int64)
        p_idx = np.flatnonzero(real)
        pos[p_idx] = idx
        for j in range(len(text)):
            if not real[j]:
                pos[j] = pos[j - 1]
        row = model.prior.row(n_full)
        sep = np.minimum(np.abs(pos[:, None] - pos[None, :]), len(row) - 1)
        prior = np.asarray(model.normaliser.encode(row[sep].astype(np.float32)), np.float32)
        o = model.head(feats, mask, prior=torch.from_numpy(prior)[None])
        o["mask"] = mask
        d = model.head.distance_angstrom(o, model.normaliser)[0].float().numpy()
        v = model.head.variance_angstrom(o, model.normaliser)[0].float().numpy()
    d = d[np.ix_(p_idx, p_idx)]
    v = v[np.ix_(p_idx, p_idx)]
    d = 0.5 * (d + d.T)
    v = np.maximum(0.5 * (v + v.T), 0.0)
    np.fill_diagonal(d, 0.0)
    np.fill_diagonal(v, 0.0)
    return np.asarray(idx), d.astype(np.float32), v.astype(np.float32)


def predict_with_segments(model, seq: str, window: int, stride: int, segment: int, gap: int):
    """Windows plus every pair of segments (stride ``segment``) at least ``window - stride``
    apart, merged by inverse variance (:class:`distfold.pipeline.windows.PairAccumulator`)."""
    from distfold.pipeline.windows import PairAccumulator, model_prior_fill, plan_windows

    n = len(seq)
    acc = PairAccumulator(n)
    for s, e in plan_windows(n, window, stride):
        out = model.predict([seq[s:e]], lengths=[n])[0]
        acc.add(slice(s, e), out["distance"], out["variance"])
    starts = list(range(0, n - segment + 1, segment))
    if starts[-1] + segment < n:
        starts.append(n - segment)
    for a in starts:
        for b in starts:
            if b - a >= window - stride:
                idx, d, v = predict_segments(model, seq, [(a, a + segment), (b, b + segment)], gap, n)
                acc.add(idx, d, v)
    return acc.result(model_prior_fill(model, n))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--model", default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--min-length", type=int, default=300)
    ap.add_argument("--max-length", type=int, default=600)
    ap.add_argument("--reconstruct", default="smacof")
    ap.add_argument("--window", type=int, default=None, help="default: the model's crop")
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--segments", action="store_true", help="also score windowed+segments (experimental)")
    ap.add_argument("--segment", type=int, default=48, help="residues per segment of a two-segment window")
    ap.add_argument("--gap", type=int, default=32, help="masked spacer positions between the two segments")
    ap.add_argument("--cv", type=float, default=None, help="uncovered pairs' coefficient of variation "
                    "(default distfold.pipeline.windows.UNCOVERED_CV)")
    ap.add_argument("--only", nargs="+", default=None, help="score only these methods")
    ap.add_argument("--json", default=None, help="also write per-chain results to this JSON file")
    args = ap.parse_args(argv)

    from distfold.data.dataset import Dataset
    from distfold.pipeline.evaluate import as_written, score_coords, score_matrix
    from distfold.pipeline.predictor import Predictor, check_distance_output
    from distfold.pipeline.prior import SeparationPrior
    from distfold.pipeline.windows import UNCOVERED_CV, predict_windowed, reconstruction_variance

    ds = Dataset(args.dataset)
    idx = [i for i in ds.indices(args.split) if args.min_length <= ds.records[i]["length"] <= args.max_length]
    idx.sort(key=lambda i: ds.records[i]["length"])
    prior = SeparationPrior().fit(ds, split="train")
    pvar = prior_variance(ds, prior)
    predictor = Predictor.load(args.model, args.reconstruct, "cpu", args.window, args.stride)
    model, path, window, stride = predictor.model, predictor.identity["path"], predictor.window, predictor.stride
    crop = int(model.config.get("crop") or window)
    cv = UNCOVERED_CV if args.cv is None else args.cv
    print(f"model {path} crop {crop}; window {window} stride {stride}; uncovered cv {cv}; {len(idx)} {args.split} "
          f"chains {args.min_length}-{args.max_length}; reconstructor {args.reconstruct}", file=sys.stderr)

    rows = []
    methods = ("prior", "whole", "crop", "windowed", "windowed-w0", "windowed+pvar") + (
        ("windowed+segments",) if args.segments else ())
    if args.only:
        methods = tuple(m for m in methods if m in args.only)
    for i in idx:
        sample = ds[i]
        seq = sample.sequence
        n = len(seq)
        mask = sample.mask
        true_d = sample.distances().astype(np.float64)
        ref = as_written(sample.coords)
        sep = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        b = prior.bucket(n)
        p_d = prior.table[b][np.minimum(sep, prior.table.shape[1] - 1)].astype(np.float32)
        p_v = pvar[b][np.minimum(sep, pvar.shape[1] - 1)].astype(np.float32)

        # name -> (distance, variance for confidence, variance for weights or None = same, model seconds)
        cands: dict[str, tuple] = {}
        cands["prior"] = (p_d, None, None, 0.0)
        t = time.perf_counter()
        d, v = check_distance_output(model.predict([seq])[0], n)
        cands["whole"] = (d, v, None, time.perf_counter() - t)
        t = time.perf_counter()
        c = model.predict([seq[:crop]], lengths=[n])[0]
        d = p_d.copy()
        v = np.full((n, n), np.inf, np.float32)
        d[:crop, :crop] = c["distance"]
        v[:crop, :crop] = c["variance"]
        wv = p_v.copy()
        wv[:crop, :crop] = c["variance"]
        cands["crop"] = (d, v, wv, time.perf_counter() - t)
        t = time.perf_counter()
        out = predict_windowed(model, seq, window, stride)
        secs = time.perf_counter() - t
        d, v = check_distance_output(out, n)
        out = {**out, "distance": d, "variance": v}
        cands["windowed"] = (d, v, reconstruction_variance(out, cv), secs)
        cands["windowed-w0"] = (d, v, None, secs)
        unc = out["coverage"] == 0
        np.fill_diagonal(unc, False)
        v2 = v.copy()
        v2[unc] = p_v[unc]
        cands["windowed+pvar"] = (d, v, v2, secs)
        if args.segments:
            t = time.perf_counter()
            seg_out = predict_with_segments(model, seq, window, stride, args.segment, args.gap)
            d, v = check_distance_output(seg_out, n)
            seg_out = {**seg_out, "distance": d, "variance": v}
            cands["windowed+segments"] = (d, v, reconstruction_variance(seg_out, cv), time.perf_counter() - t)

        row = {"id": sample.record.get("id"), "length": n, "n_observed": int(mask.sum()),
               "windows": len(out["windows"]), "uncovered_pair_fraction": float(unc.sum() / (n * (n - 1)))}
        for name in methods:
            d, v, wv, secs = cands[name]
            m, _ = score_matrix(d, true_d, mask)
            t = time.perf_counter()
            pred = predictor.reconstruct(seq, d, v, weight_variance=wv)
            rs = time.perf_counter() - t
            s = score_coords(as_written(pred.coords), ref)
            row[name] = {"lddt_matrix": m["lddt"], "mae": m["mae"], "lddt_coords": s["lddt_coords"],
                         "tm_score": s["tm_score"], "tm_score_mirror": s["tm_score_mirror"], "rmsd": s["rmsd"],
                         "model_s": round(secs, 2), "reconstruct_s": round(rs, 2)}
        rows.append(row)
        print(f"{row['id']} L={n} " + " ".join(
            f"{k}:{row[k]['lddt_coords']:.3f}/{row[k]['tm_score']:.3f}" for k in methods), file=sys.stderr)

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": str(path), "window": window, "stride": stride, "crop": crop, "rows": rows}, fh,
                      indent=2, sort_keys=True)
    print(f"C-alpha lDDT of the matrix (before reconstruction) | lDDT of the coordinates | TM-score "
          f"(residue-matched); {args.reconstruct}")
    print("| chain | L | " + " | ".join(f"{k} lDDT-m / lDDT / TM" for k in methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for r in rows:
        print(f"| {r['id']} | {r['length']} | " + " | ".join(
            f"{r[k]['lddt_matrix']:.3f} / {r[k]['lddt_coords']:.3f} / {r[k]['tm_score']:.3f}" for k in methods) + " |")
    if rows:
        print("| mean | | " + " | ".join(
            " / ".join(f"{np.mean([r[k][m] for r in rows]):.3f}" for m in ("lddt_matrix", "lddt_coords", "tm_score"))
            for k in methods) + " |")

        def beats(r, k):
            return r["windowed"]["lddt_coords"] > r[k]["lddt_coords"] and r["windowed"]["tm_score"] > r[k]["tm_score"]

        wins = {} if "windowed" not in methods else {
            k: sum(beats(r, k) for r in rows) for k in methods if k != "windowed"}
        print("windowed beats (lDDT and TM both higher), chains of " + str(len(rows)) + ": " +
              ", ".join(f"{k} {v}" for k, v in wins.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
