"""Secondary-structure read-out variants on a frozen model, scored on new-family chains (issue 17).

``distfold train --init MODEL --ss-only`` trains only the read-out, but runs the frozen
backbone on every crop of every step. Here the backbone runs once: its residue features (the
embedding, each layer's output and the final, normalised output that the head sees) are cached
for the dataset's labelled train chains and for the held-out chains of a ``cv_new_family.py
holdout`` directory (the val chains whose homology super-cluster has no training chain), then
each read-out variant trains on random crops of the cached features (AdamW, linear warm-up,
cosine decay, like the trainer) and is scored on the held-out chains, pooled over residues:
Q3, per-class precision and recall, SOV'99 (``distfold.structure.secondary``). The variants
are selected on those held-out chains; the table says so.

    python benchmarks/ss_readout_sweep.py --model core/default_model --dataset ../runs/ds_ss \\
        --holdout ../runs/cv_shipped --cache FEATURES.pt --variants base,wide,deep --json OUT

``--save DIR`` (one variant): also write ``--model`` with its read-out replaced by the variant's
(seed 0; float16 like the shipped model with ``--float16``); the distance weights are copied
unchanged, and ``config.json`` gets the read-out's options and ``training.ss_readout`` (the recipe).

``--variants``: comma-separated names from VARIANTS (or ``all``). ``shipped`` scores the
model's own read-out on the same features (a check that the cache reproduces ``report``'s Q3);
``window`` and ``majority`` are ``distfold evaluate``'s baselines (ridge on one-hot sequence
windows of +-7; the majority class), fitted on the same train chains.
The read-out architecture is :class:`distfold.plugins.distance_heads.regression.
SecondaryStructureReadout` with its options (channels, second dilated layer, one-hot input).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

STATES = "HEC"


def _layer_features(model, sequence: str, half: bool) -> list[torch.Tensor]:
    """[(L, H)]: the embedding, each layer's output, and the backbone's final features
    (float16 with ``half``: the training pieces; the held-out chains keep float32)."""
    bb = model.backbone
    ids, mask = bb.tokenize([sequence])
    net = bb.model
    outs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, o: outs.append(o[0] if isinstance(o, tuple) else o))
             for layer in net.layers]
    emb = net.embed_tokens(ids)
    try:
        final = net(ids, mask)
    finally:
        for h in hooks:
            h.remove()
    return [t[0].half() if half else t[0].float() for t in [emb, *outs, final]]


def build_cache(model_dir: str, dataset: str, holdout: str, max_len: int, max_train_len: int) -> dict:
    from distfold.data.dataset import Dataset
    from distfold.pipeline.model import DistanceModel

    model = DistanceModel.load(model_dir)
    model.eval()
    ds = Dataset(dataset)
    held = json.loads((Path(holdout) / "folds.json").read_text())["chains"]
    cache = {"train": [], "test": []}
    t = time.perf_counter()
    with torch.no_grad():
        for r in ds.records:
            if not r.get("ss") or set(r["ss"]) <= {"-"}:
                continue
            if r["split"] == "train":
                part = "train"
            elif r["id"] in held and r["length"] <= max_len:
                part = "test"
            else:
                continue
            seq = r["sequence"]
            if part == "train" and len(seq) > max_train_len:  # pieces of max_train_len (context for crops)
                pieces = [(s, seq[s:s + max_train_len]) for s in range(0, len(seq), max_train_len)]
            else:
                pieces = [(0, seq)]
            for s, piece in pieces:
                feats = _layer_features(model, piece, half=part == "train")
                cache[part].append({"id": r["id"], "family": r["family"], "sequence": piece,
                                    "weight": float(r.get("weight", 1.0)) * len(piece) / len(seq),
                                    "ss": r["ss"][s:s + len(piece)], "layers": feats})
    print(f"features: {len(cache['train'])} train pieces, {len(cache['test'])} held-out chains, "
          f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
    return cache


def labels(ss: str) -> torch.Tensor:
    return torch.tensor([STATES.find(c) for c in ss], dtype=torch.long)  # -1 for '-'


def onehot(sequence: str) -> torch.Tensor:
    from distfold.pipeline.ss_baselines import AMINO_ACIDS

    idx = torch.tensor([AMINO_ACIDS.find(c) if c in AMINO_ACIDS else len(AMINO_ACIDS) for c in sequence])
    return F.one_hot(idx, len(AMINO_ACIDS) + 1).float()


def inputs(item: dict, layers: str, with_onehot: bool) -> torch.Tensor:
    ls = item["layers"]
    if layers == "final":
        x = [ls[-1]]
    elif layers == "all":
        x = list(ls)
    else:  # comma-separated indices: 0 = embedding, k = layer k, -1 = final
        x = [ls[int(k)] for k in layers.split(":")]
    x = [t.float() for t in x]
    if with_onehot:
        x.append(onehot(item["sequence"]))
    return torch.cat(x, -1)


VARIANTS: dict[str, dict] = {
    # the shipped recipe: 400 steps x 8 crops of 128, lr 2e-3, wd 0.01, dropout 0.2
    "base": {},
    "steps1500": {"steps": 1500},
    "crop256_1500": {"steps": 1500, "crop": 256},
    "wide128": {"channels": 128},
    "deep_d2": {"layers2": [2]},
    "deep_d4": {"layers2": [4]},
    "deep_d2d4": {"layers2": [2, 4]},
    "onehot": {"onehot": True},
    "all_layers": {"inputs": "all"},
    "emb_final": {"inputs": "0:-1"},
    "layer2": {"inputs": "2"},
    "layer3": {"inputs": "4:-1"},
    "smooth0.1": {"smoothing": 0.1},
    "balanced": {"balanced": True},
    "drop0.4": {"dropout": 0.4},
    "deep_d2d4_seed1": {"layers2": [2, 4], "seed": 1},
    "deep_d4d8": {"layers2": [4, 8]},
    "wide_deep": {"channels": 128, "layers2": [2, 4]},
    "deep_d2d4_1000": {"layers2": [2, 4], "steps": 1000},
    "wide_deep_1500": {"channels": 128, "layers2": [2, 4], "steps": 1500},
    "wide_deep_onehot_1500": {"channels": 128, "layers2": [2, 4], "onehot": True, "steps": 1500},
    "wide_deep_all_1500": {"channels": 128, "layers2": [2, 4], "inputs": "all", "steps": 1500},
}
DEFAULTS = {"steps": 400, "crop": 128, "batch": 8, "lr": 2e-3, "wd": 0.01, "warmup": 20, "min_lr_ratio": 0.05,
            "channels": 64, "kernel": 15, "layers2": [], "onehot": False, "inputs": "final", "smoothing": 0.0,
            "balanced": False, "dropout": 0.2, "seed": 0}


def make_readout(cfg: dict, in_dim: int):
    from distfold.plugins.distance_heads.regression import SecondaryStructureReadout

    return SecondaryStructureReadout(in_dim, cfg["channels"], cfg["kernel"], cfg["dropout"],
                                     dilations=tuple(cfg["layers2"]))


def train_variant(cache: dict, cfg: dict) -> torch.nn.Module:
    g = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    train = [(inputs(it, cfg["inputs"], cfg["onehot"]), labels(it["ss"])) for it in cache["train"]]
    w = np.array([it["weight"] for it in cache["train"]], dtype=np.float64)  # the trainer's family weights
    prob = torch.tensor(w / w.sum())
    net = make_readout(cfg, train[0][0].shape[-1])
    decay = [p for p in net.parameters() if p.ndim >= 2]
    rest = [p for p in net.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["wd"]}, {"params": rest, "weight_decay": 0.0}],
                            lr=cfg["lr"])
    weight = None
    if cfg["balanced"]:
        counts = torch.bincount(torch.cat([y[y >= 0] for _, y in train]), minlength=3).float()
        weight = counts.sum() / (3 * counts)

    def lr_at(step: int) -> float:
        if step < cfg["warmup"]:
            return (step + 1) / cfg["warmup"]
        t = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
        return cfg["min_lr_ratio"] + (1 - cfg["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * t))

    net.train()
    crop = cfg["crop"]
    for step in range(cfg["steps"]):
        for grp in opt.param_groups:
            grp["lr"] = cfg["lr"] * lr_at(step)
        picks = torch.multinomial(prob, cfg["batch"], replacement=True, generator=g).tolist()
        xs, ys = [], []
        for k in picks:
            x, y = train[k]
            s = int(torch.randint(0, max(1, len(y) - crop + 1), (1,), generator=g))
            xs.append(x[s:s + crop])
            ys.append(y[s:s + crop])
        n = max(len(y) for y in ys)
        xb = torch.zeros(len(xs), n, xs[0].shape[-1])
        yb = torch.full((len(xs), n), -1, dtype=torch.long)
        mb = torch.zeros(len(xs), n, dtype=torch.bool)
        for b, (x, y) in enumerate(zip(xs, ys)):
            xb[b, :len(y)], yb[b, :len(y)], mb[b, :len(y)] = x, y, True
        logits = net(xb, mb)
        loss = F.cross_entropy(logits.reshape(-1, 3), yb.reshape(-1), ignore_index=-1, weight=weight,
                               label_smoothing=cfg["smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    net.eval()
    return net


@torch.no_grad()
def probs_of(net, cache: dict, cfg: dict) -> list[np.ndarray]:
    out = []
    for it in cache["test"]:
        x = inputs(it, cfg["inputs"], cfg["onehot"])[None]
        out.append(torch.softmax(net(x, torch.ones(x.shape[:2], dtype=torch.bool)).double(), -1)[0].numpy())
    return out


def score(cache: dict, probs: list[np.ndarray]) -> dict:
    """Pooled over residues: Q3, per-class precision/recall, SOV'99 (overall and per state)."""
    from distfold.structure.secondary import sov_terms

    hits = tot = 0
    tp = {s: 0 for s in STATES}
    n_ref = dict(tp)
    n_pred = dict(tp)
    sov_num = {s: 0.0 for s in STATES}
    sov_den = {s: 0 for s in STATES}
    for it, p in zip(cache["test"], probs):
        ref = it["ss"]
        pred = "".join(STATES[k] for k in p.argmax(1))
        for r, q in zip(ref, pred):
            if r == "-":
                continue
            tot += 1
            hits += r == q
            n_ref[r] += 1
            n_pred[q] += 1
            tp[r] += r == q
        for s, (a, b) in sov_terms(ref, pred).items():
            sov_num[s] += a
            sov_den[s] += b
    return {"q3": hits / tot, "residues": tot,
            "precision": {s: tp[s] / n_pred[s] if n_pred[s] else None for s in STATES},
            "recall": {s: tp[s] / n_ref[s] for s in STATES},
            "sov": sum(sov_num.values()) / sum(sov_den.values()),
            "sov_per_state": {s: sov_num[s] / sov_den[s] for s in STATES}}


def shipped_probs(model_dir: str, cache: dict) -> list[np.ndarray]:
    from distfold.pipeline.model import DistanceModel

    model = DistanceModel.load(model_dir)
    model.eval()
    with torch.no_grad():
        return [torch.softmax(model.head.ss(it["layers"][-1].float()[None],
                                            torch.ones(1, len(it["ss"]), dtype=torch.bool)).double(), -1)[0].numpy()
                for it in cache["test"]]


def save_model(model_dir: str, net, cfg: dict, name: str, out: str, float16: bool) -> None:
    """``model_dir`` with ``net`` as its secondary-structure read-out, written to ``out``."""
    from distfold.pipeline.model import DistanceModel

    if cfg["inputs"] != "final" or cfg["onehot"]:
        raise SystemExit(f"--save: variant {name!r} reads inputs the model's read-out does not get")
    model = DistanceModel.load(model_dir)
    head = model.head
    head.add_ss_readout(float(head.ss_weight or 0.5), cfg["kernel"], ss_channels=cfg["channels"],
                        ss_dilations=list(cfg["layers2"]), replace=True)
    if cfg["dropout"] != head.dropout:
        raise SystemExit(f"--save: variant {name!r} has dropout {cfg['dropout']}, the head {head.dropout}")
    head.ss.load_state_dict(net.state_dict())
    model.eval()
    training = model.config.setdefault("training", {})
    training["ss_readout"] = {"variant": name, "recipe": cfg, "features": "the frozen model's final residue "
                              "features of whole train chains (pieces of <= --max-train-length residues)",
                              "script": "benchmarks/ss_readout_sweep.py"}
    model.save(out, dtype=torch.float16 if float16 else None)
    print(f"wrote {out}", file=sys.stderr)


def row(name: str, s: dict) -> str:
    p, r, v = s["precision"], s["recall"], s["sov_per_state"]
    def f(v):
        return "-" if v is None else f"{v:.2f}"

    return (f"| {name} | {s['q3']:.3f} | " + " | ".join(f"{f(p[k])} / {f(r[k])}" for k in STATES)
            + f" | {s['sov']:.3f} | " + " / ".join(f"{v[k]:.2f}" for k in STATES) + " |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="core/default_model")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--holdout", required=True, help="a cv_new_family.py holdout directory (its folds.json)")
    ap.add_argument("--cache", default=None, help="feature cache file (written if missing)")
    ap.add_argument("--variants", default="shipped,base")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per variant; their mean probabilities are scored too")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--max-train-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--save", default=None, help="write the model with this variant's read-out (one variant)")
    ap.add_argument("--float16", action="store_true", help="with --save: store float16 weights")
    args = ap.parse_args(argv)
    if args.save and ("," in args.variants or args.variants in ("all", "shipped")):
        raise SystemExit("--save: give exactly one trained variant in --variants")
    torch.set_num_threads(args.threads)
    if args.cache and Path(args.cache).is_file():
        cache = torch.load(args.cache, weights_only=True)  # tensors, lists, dicts, str: no pickled code
    else:
        cache = build_cache(args.model, args.dataset, args.holdout, args.max_length, args.max_train_length)
        if args.cache:
            torch.save(cache, args.cache)
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    results = {}
    print("| variant | Q3 | H prec / rec | E prec / rec | C prec / rec | SOV | SOV H / E / C |")
    print("|---|---:|---|---|---|---:|---|")
    for name in names:
        t = time.perf_counter()
        if name in ("window", "majority"):  # evaluate's two baselines, fitted on the same train chains
            from distfold.pipeline.ss_baselines import MajorityClass, WindowClassifier

            base = (WindowClassifier() if name == "window" else MajorityClass()).fit(
                [(it["sequence"], it["ss"]) for it in cache["train"]])
            probs = [np.eye(3)[[STATES.index(c) for c in base.predict(it["sequence"])]] for it in cache["test"]]
            results[name] = {"score": score(cache, probs)}
            print(row(name, results[name]["score"]), flush=True)
            continue
        if name == "shipped":
            results[name] = {"score": score(cache, shipped_probs(args.model, cache))}
            print(row(name, results[name]["score"]), flush=True)
            continue
        if name not in VARIANTS:
            raise SystemExit(f"--variants: unknown variant {name!r} (known: shipped, {', '.join(VARIANTS)})")
        cfg = {**DEFAULTS, **VARIANTS[name]}
        all_probs = []
        for seed in range(args.seeds):
            cfg_s = {**cfg, "seed": cfg["seed"] + seed}
            net = train_variant(cache, cfg_s)
            if args.save and seed == 0:
                save_model(args.model, net, cfg_s, name, args.save, args.float16)
            all_probs.append(probs_of(net, cache, cfg_s))
            s = score(cache, all_probs[-1])
            results[f"{name}/seed{seed}"] = {"config": cfg_s, "score": s}
            print(row(f"{name} seed {cfg_s['seed']}", s) + f" <!-- {time.perf_counter() - t:.0f} s -->", flush=True)
        if args.seeds > 1:
            mean = [np.mean([ps[k] for ps in all_probs], 0) for k in range(len(cache["test"]))]
            results[f"{name}/mean{args.seeds}"] = {"config": cfg, "score": score(cache, mean)}
            print(row(f"{name} mean of {args.seeds}", results[f"{name}/mean{args.seeds}"]["score"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
