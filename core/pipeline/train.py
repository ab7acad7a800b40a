"""Training a :class:`~distfold.pipeline.model.DistanceModel` on a dataset directory.

One process by default; under ``torchrun`` (``WORLD_SIZE`` > 1) it trains
data-parallel with PyTorch DDP (gloo on CPU, NCCL on GPUs)::

    torchrun --standalone --nproc-per-node 2 -m distfold train DATASET -o MODEL_DIR ...

``device`` is ``cpu``, ``cuda`` or ``auto`` (CUDA when available); on CUDA each
process uses the GPU ``cuda:<LOCAL_RANK>``.

Each step draws ``batch_size`` training chains per process with probability
proportional to their dataset ``weight`` (1 / family size: family-balanced),
takes a random contiguous window of ``crop`` residues from longer chains, and
minimises the head's loss on the observed pairs. The learning rate warms up
linearly and then follows a cosine to ``min_lr_ratio * lr``.

MODEL_DIR receives ``metrics.jsonl`` (one JSON object per log/validation event),
``checkpoints/step-N/`` (model + resume state, the ``keep`` newest), ``best/``
(the checkpoint with the best validation score) and, at the end, the final model
itself (``config.json`` etc. in MODEL_DIR). ``init`` starts from a saved model's weights
instead of a fresh one (fine-tuning, e.g. at a longer crop or on new data): its
components, normaliser scale and separation prior are kept, with a new optimizer and
schedule. ``resume=True`` continues from the newest
checkpoint with optimizer, scheduler and RNG state, so an interrupted run ends
with the same weights as an uninterrupted one. SIGINT/SIGTERM save a checkpoint
before exiting.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distfold.pipeline.checkpoint import (checkpoint_name, load_training_state, optimizer_state_from_flat,
                                          prune_checkpoints, resumable_checkpoint, save_training_state, set_aside)
from distfold.data.dataset import Dataset
from distfold.errors import DistfoldError, InputError
from distfold.structure.metrics import distance_errors, lddt
from distfold.pipeline.model import CONFIG_NAME, DistanceModel, ss_label_indices
from distfold.pipeline.prior import SeparationPrior


@dataclass
class TrainOptions:
    """Every knob of a training run (stored in each checkpoint's trainer_state.json)."""

    backbone: str = "qwen"
    backbone_params: dict = field(default_factory=dict)
    head: str = "regression"
    head_params: dict = field(default_factory=dict)
    normaliser: str = "log1p"
    normaliser_params: dict = field(default_factory=dict)
    epochs: float | None = None
    max_steps: int | None = None
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    batch_size: int = 8
    grad_accum: int = 1
    clip_grad: float = 1.0
    crop: int = 256
    eval_every: int = 0
    save_every: int = 0
    keep: int = 3
    log_every: int = 10
    seed: int = 0
    val_max_length: int = 256
    select: str = "lddt"
    init: str | None = None  # start from this model directory's weights (fine-tuning)
    ss_only: bool = False  # with init: train only a (new) secondary-structure read-out; the rest frozen

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


#: Options that may differ between an interrupted run and its resumption.
RESUMABLE_OVERRIDES = {"epochs", "max_steps", "eval_every", "save_every", "keep", "log_every"}


# -- data --------------------------------------------------------------------------------------

class CropSampler:
    """Family-balanced random crops (numpy Generator; its state is part of a checkpoint)."""

    def __init__(self, dataset: Dataset, indices: list[int], crop: int, seed: int, rank: int = 0):
        self.dataset = dataset
        self.indices = np.asarray(indices)
        w = np.array([float(dataset.records[i].get("weight", 1.0)) for i in indices], dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InputError(f"{dataset.path}: training weights must be non-negative and not all zero")
        self.p = w / w.sum()
        self.crop = int(crop)
        self.rng = np.random.Generator(np.random.PCG64([int(seed), int(rank)]))
        self._cache: dict[int, Any] = {}

    def _sample(self, i: int):
        s = self._cache.get(i)
        if s is None:
            s = self.dataset[i]
            self._cache[i] = s
        return s

    def batch(self, size: int) -> dict[str, Any]:
        picks = self.rng.choice(len(self.indices), size=size, replace=True, p=self.p)
        seqs, lengths, starts, coords, ss = [], [], [], [], []
        for k in picks:
            s = self._sample(int(self.indices[k]))
            n = len(s.sequence)
            start = 0
            if n > self.crop:
                mask = s.mask
                for _ in range(8):  # avoid windows that are mostly unobserved
                    start = int(self.rng.integers(0, n - self.crop + 1))
                    if mask[start:start + self.crop].sum() >= min(16, mask.sum()):
                        break
            end = min(n, start + self.crop)
            seqs.append(s.sequence[start:end])
            lengths.append(n)
            starts.append(start)
            coords.append(s.coords[start:end])
            labels = s.record.get("ss")
            ss.append(labels[start:end] if isinstance(labels, str) else None)
        return {"sequences": seqs, "lengths": lengths, "starts": starts, "coords": coords, "ss": ss}

    def state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


def pair_targets(coords: list[np.ndarray], normaliser, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, size, size) normalised target distances (0 where unknown) and the bool pair mask."""
    b = len(coords)
    target = np.zeros((b, size, size), np.float32)
    pmask = np.zeros((b, size, size), bool)
    for k, x in enumerate(coords):
        n = len(x)
        x = x.astype(np.float64)
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        ok = np.isfinite(d)
        np.fill_diagonal(ok, False)
        target[k, :n, :n] = np.where(ok, normaliser.encode(np.where(ok, d, 0.0)), 0.0)
        pmask[k, :n, :n] = ok
    return torch.from_numpy(target), torch.from_numpy(pmask)


def ss_targets(labels: list[str | None], size: int) -> torch.Tensor:
    """(B, size) long secondary-structure state per residue (0, 1, 2 = H, E, C; -1 = no label)."""
    return torch.from_numpy(np.stack([ss_label_indices(s, size) for s in labels]))


def fit_normaliser(normaliser, dataset: Dataset, indices: list[int]) -> None:
    """Fit the normaliser's global parameters on all observed training distances."""
    chunks = []
    for i in indices:
        d = dataset[i].distances()
        iu = np.triu_indices(len(d), 1)
        v = d[iu]
        chunks.append(v[np.isfinite(v)])
    normaliser.fit(np.concatenate(chunks) if chunks else np.zeros(0))


# -- evaluation ------------------------------------------------------------------------------------

def evaluate_model(model: DistanceModel, dataset: Dataset, indices: list[int], max_length: int,
                   prior: SeparationPrior | None = None) -> dict[str, Any]:
    """Mean over chains (<= max_length residues) of distance MAE/RMSE and C-alpha lDDT;
    with ``prior``, the same numbers for the separation prior; with a secondary-structure
    read-out, ``q3`` (share of DSSP-labelled residues whose most probable state is right,
    pooled over residues)."""
    rows = {"mae": [], "rmse": [], "lddt": [], "prior_mae": [], "prior_lddt": []}
    q3_hits = q3_n = 0
    for i in indices:
        s = dataset[i]
        n = len(s.sequence)
        if n > max_length or s.mask.sum() < 2:
            continue
        true_d, mask = s.distances(), s.mask
        res = model.predict([s.sequence])[0]
        pred = res["distance"]
        if res.get("ss_probs") is not None:
            truth = ss_label_indices(s.record.get("ss"), n)
            q3_hits += int((res["ss_probs"].argmax(1) == truth)[truth >= 0].sum())
            q3_n += int((truth >= 0).sum())
        err = distance_errors(pred, true_d, mask)
        rows["mae"].append(err["mae"])
        rows["rmse"].append(err["rmse"])
        rows["lddt"].append(lddt(pred, true_d, mask)[0])
        if prior is not None:
            p = prior.matrix(n)
            rows["prior_mae"].append(distance_errors(p, true_d, mask)["mae"])
            rows["prior_lddt"].append(lddt(p, true_d, mask)[0])
    out: dict[str, Any] = {"n_chains": len(rows["mae"])}
    if q3_n:
        out["q3"] = q3_hits / q3_n
    for k, v in rows.items():
        if v:
            out[k] = float(np.nanmean(v))
    return out


# -- schedule ----------------------------------------------------------------------------------------

def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


# -- distributed ----------------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t)
        return bool(t.item() > 0)


def _init_distributed(device: str = "cpu") -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), device)


# -- the loop ---------------------------------------------------------------------------------------------

class _Stop:
    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum, frame) -> None:  # noqa: ARG002
        self.signal = signum


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _warn(msg: str) -> None:
    """A warning on stderr, shown even when progress is quiet (--json)."""
    print(f"Warning: {msg}", file=sys.stderr, flush=True)


def _append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    try:
        with open(path, "a") as fh:
            fh.write(json.dumps(obj, sort_keys=True) + "\n")
            fh.flush()
    except OSError as exc:
        from distfold.fileio import named_os_error

        named = named_os_error(exc, path)
        if named is None:
            raise
        raise named from exc


def _rewind_metrics(path: Path, step: int) -> dict[str, Any] | None:
    """On resume from ``step``: drop the records of steps after it (the run that wrote them
    died before their checkpoint, and they will be done again) and the data-parallel record
    at ``step`` (written again at the end); return the validation record at ``step``, if any,
    so that a finished run resumed is not validated twice."""
    if not path.is_file():
        return None
    kept, val = [], None
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        at = rec.get("step") if isinstance(rec, dict) else None
        if isinstance(at, int) and (at > step or (at == step and rec.get("kind") == "ddp")):
            continue
        if isinstance(at, int) and at == step and rec.get("kind") == "val":
            val = rec
        kept.append(json.dumps(rec, sort_keys=True))
    from distfold.fileio import atomic_write

    with atomic_write(path) as fh:
        fh.write("".join(k + "\n" for k in kept))
    return val


def _build_model(opts: TrainOptions, dataset: Dataset, train_idx: list[int], quiet: bool) -> DistanceModel:
    from distfold.registry import get_registry

    reg = get_registry()
    head_params = dict(opts.head_params)
    head_params.setdefault("seed", opts.seed)
    backbone_params = dict(opts.backbone_params)
    backbone_params.setdefault("seed", opts.seed)
    # the backbone first: a base model that cannot load fails before the prior and normaliser are fitted
    backbone = reg.create("backbone", opts.backbone, **backbone_params)
    head_cls = reg.load("distance_head", opts.head)
    use_prior = head_params.get("use_prior")
    if use_prior is None:
        import inspect

        p = inspect.signature(head_cls.__init__).parameters.get("use_prior")
        use_prior = bool(p.default) if p is not None and p.default is not inspect.Parameter.empty else False
    prior = None
    if use_prior:
        t0 = time.time()
        prior = SeparationPrior().fit(dataset, "train")
        _log(f"fitted the separation prior on {len(train_idx)} training chains ({time.time() - t0:.1f} s)", quiet)
    normaliser = reg.create("normaliser", opts.normaliser, **opts.normaliser_params)
    fit_normaliser(normaliser, dataset, train_idx)
    model = DistanceModel.build((opts.backbone, backbone_params), (opts.head, head_params),
                                (opts.normaliser, normaliser.get_config()), prior=prior, backbone_module=backbone,
                                dataset_fingerprint=dataset.fingerprint, crop=opts.crop)
    return model


def _init_model(opts: TrainOptions, dataset: Dataset, quiet: bool) -> tuple[DistanceModel, TrainOptions]:
    """The model in ``opts.init`` ready to train on ``dataset``, and ``opts`` with the
    architecture fields it really has (the checkpoint's, not the command line's)."""
    from dataclasses import replace

    path = Path(opts.init)
    if not (path / CONFIG_NAME).is_file():  # named as --init, before load's own message
        raise InputError(f"--init {path}: not a model directory (no {CONFIG_NAME})")
    model = DistanceModel.load(path)
    if not model.trainable_parameters():
        raise InputError(f"--init {path}: the model has no trainable parameters")
    comps = model.config["components"]
    asked_ss = {k: v for k, v in opts.head_params.items() if k.startswith("ss_")} if opts.ss_only else {}
    opts = replace(opts, backbone=comps["backbone"]["name"], backbone_params=dict(comps["backbone"]["params"]),
                   head=comps["distance_head"]["name"], head_params=dict(comps["distance_head"]["params"]),
                   normaliser=comps["normaliser"]["name"], normaliser_params=dict(comps["normaliser"]["params"]))
    if opts.ss_only:
        if not hasattr(model.head, "add_ss_readout"):
            raise InputError(f"--init {path}: its head ({opts.head}) cannot take a secondary-structure read-out")
        # read-out options given with --ss-only (--head-params ss_* keys) build a fresh read-out, in
        # place of one the model may have; without them a model's own read-out trains on
        ss = {**opts.head_params, **asked_ss}
        try:
            weight, kernel = float(ss.get("ss_weight") or 0.5), int(ss.get("ss_kernel", 15))
            if asked_ss:
                model.head.add_ss_readout(weight, kernel, ss_channels=int(ss.get("ss_channels") or 0),
                                          ss_dilations=ss.get("ss_dilations") or [], replace=True)
            else:
                model.head.add_ss_readout(weight, kernel)
        except (TypeError, ValueError) as exc:
            raise InputError(f"--head-params {json.dumps(asked_ss)}: {exc}") from None
        _freeze_all_but_ss(model)
        model.refresh_config()
        opts = replace(opts, head_params=dict(model.config["components"]["distance_head"]["params"]))
    previous = model.config.get("training") or {}
    model.config["init"] = {"from": str(path), "dataset_fingerprint": model.config.get("dataset_fingerprint"),
                            "crop": model.config.get("crop"), "step": previous.get("step")}
    model.config["dataset_fingerprint"] = dataset.fingerprint
    model.config["crop"] = opts.crop
    _log(f"starting from the weights of {path} (trained {previous.get('step', '?')} steps, crop "
         f"{model.config['init']['crop']})", quiet)
    return model, opts


def _freeze_all_but_ss(model: DistanceModel) -> None:
    """Only the head's secondary-structure read-out trains (``ss_only``)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.head.ss.parameters():
        p.requires_grad_(True)


def _param_groups(model: DistanceModel, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name and ".sep." not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(dataset_dir: str | os.PathLike, model_dir: str | os.PathLike, options: TrainOptions | None = None,
          resume: bool = False, quiet: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Train; returns a summary dict (steps, final and best validation metrics, paths).

    ``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when available); each torchrun
    process uses ``cuda:<LOCAL_RANK>``. Not a training option: a run may resume on
    another device."""
    opts = options or TrainOptions()
    model_dir = Path(model_dir)
    dataset = Dataset(dataset_dir)
    train_idx = dataset.indices("train")
    val_idx = dataset.indices("val")
    if not train_idx:
        raise InputError(f"{dataset_dir}: the dataset has no chains in split 'train'")
    for name in ("batch_size", "grad_accum", "crop"):
        if getattr(opts, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1")
    if opts.select not in ("lddt", "mae"):
        raise InputError("select must be 'lddt' or 'mae'")
    if opts.ss_only and not opts.init:
        raise InputError("--ss-only trains a read-out on a saved model: pass --init MODEL")

    from distfold.pipeline.predict import resolve_device

    device = resolve_device(device, int(os.environ.get("LOCAL_RANK") or 0))
    dist = _init_distributed(device)
    quiet = quiet or not dist.main
    if opts.ss_only and dist.world > 1:
        raise InputError("--ss-only trains in one process (it is cheap); run it without torchrun")
    start_step = 0
    best: dict[str, Any] | None = None
    resume_from, damaged = resumable_checkpoint(model_dir) if resume else (None, [])
    dist.barrier()  # every rank has chosen before the damaged ones are moved
    if dist.main:
        for bad, problem in damaged:
            moved = set_aside(bad)
            _warn(f"checkpoint {bad.name} is damaged ({problem}); set aside as {moved.name}; "
                  f"resuming from {resume_from.name} instead")
    if resume and resume_from is None:
        _log(f"no checkpoint in {model_dir}/checkpoints; starting a fresh run", quiet)
    state_tensors: dict[str, torch.Tensor] = {}
    trainer_doc: dict[str, Any] = {}
    if resume_from is not None:
        state_tensors, trainer_doc = load_training_state(resume_from)
        stored = trainer_doc.get("options", {})
        merged = TrainOptions(**{**stored, **{k: getattr(opts, k) for k in RESUMABLE_OVERRIDES}})
        changed = sorted(k for k in stored if k not in RESUMABLE_OVERRIDES and stored[k] != opts.to_json().get(k))
        if changed:
            _log(f"resuming with the checkpoint's settings for {', '.join(changed)}", quiet)
        opts = merged
        if trainer_doc.get("dataset_fingerprint") not in (None, dataset.fingerprint):
            raise DistfoldError(f"{resume_from}: was trained on a different dataset (fingerprint differs)")
        model = DistanceModel.load(resume_from)
        if opts.ss_only:
            _freeze_all_but_ss(model)
        model.train()
        start_step = int(trainer_doc["step"])
        best = trainer_doc.get("best")
        _log(f"resuming from {resume_from} (step {start_step})", quiet)
    else:
        if dist.main and (model_dir / "checkpoints").exists() and any((model_dir / "checkpoints").iterdir()):
            raise DistfoldError(f"{model_dir} already holds checkpoints; pass --resume to continue, or use a new directory")
        torch.manual_seed(opts.seed)
        if opts.init:
            model, opts = _init_model(opts, dataset, quiet)
        else:
            model = _build_model(opts, dataset, train_idx, quiet)
        model.train()

    per_step = opts.batch_size * opts.grad_accum * dist.world
    steps_per_epoch = max(1, math.ceil(len(train_idx) / per_step))
    if opts.max_steps is not None:
        total = int(opts.max_steps)
    else:
        total = int(math.ceil((opts.epochs if opts.epochs is not None else 10.0) * steps_per_epoch))
    if total < 1:
        raise InputError("nothing to train: --max-steps/--epochs give 0 steps")
    if dist.main and opts.warmup > total and total > start_step:
        _warn(f"the warm-up ({opts.warmup} steps) is longer than the run ({total} steps): the learning rate "
              f"only reaches {lr_factor(total - 1, opts.warmup, total, opts.min_lr_ratio):.0%} of --lr "
              f"{opts.lr:g} and never decays; lower --warmup or train for more steps")

    model.to(device)
    params = model.trainable_parameters()
    n_train = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(_param_groups(model, opts.weight_decay), lr=opts.lr, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, opts.warmup, total, opts.min_lr_ratio))
    sampler = CropSampler(dataset, train_idx, opts.crop, opts.seed, dist.rank)
    if resume_from is not None:
        optimizer.load_state_dict(optimizer_state_from_flat(state_tensors, trainer_doc["optimizer"]))
        scheduler.load_state_dict(trainer_doc["scheduler"])
        ranks = trainer_doc.get("sampler_rng_by_rank") or [trainer_doc["sampler_rng"]]
        sampler.set_state(ranks[dist.rank] if dist.rank < len(ranks) else ranks[0])
        if "rng/torch" in state_tensors:
            torch.set_rng_state(state_tensors["rng/torch"])

    net: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[torch.device(device).index] if dist.device.startswith("cuda")
                                      else None)

    metrics_path = model_dir / "metrics.jsonl"
    resumed_val = None
    if dist.main:
        model_dir.mkdir(parents=True, exist_ok=True)
        if resume_from is not None:
            resumed_val = _rewind_metrics(metrics_path, start_step)
    _log(f"training {n_train:,} parameters on {len(train_idx)} chains ({len(val_idx)} val); "
         f"{total} steps of {per_step} crops (<= {opts.crop} residues), {steps_per_epoch} steps/epoch"
         + (f", {dist.world} processes" if dist.world > 1 else "") + f" on {device}", quiet)

    stop = _Stop()
    old_handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, stop)
        except ValueError:  # not the main thread
            pass

    def gather_sampler_states() -> list[dict]:
        if dist.world == 1:
            return [sampler.state()]
        out: list[Any] = [None] * dist.world
        torch.distributed.all_gather_object(out, sampler.state())
        return out

    def save_checkpoint(step: int) -> Path | None:
        states = gather_sampler_states()
        path = None
        if dist.main:
            path = model_dir / "checkpoints" / checkpoint_name(step)
            model.config["training"] = {"step": step, "samples": step * per_step, "options": opts.to_json()}
            model.save(path)
            save_training_state(path, optimizer, scheduler, states[0], {
                "step": step, "options": opts.to_json(), "dataset_fingerprint": dataset.fingerprint,
                "best": best, "world_size": dist.world, "sampler_rng_by_rank": states,
                "distfold_version": model.config.get("distfold_version")})
            prune_checkpoints(model_dir, opts.keep)
        dist.barrier()
        return path

    def validate(step: int) -> dict[str, Any] | None:
        nonlocal best
        result = None
        if dist.main and val_idx:
            t0 = time.time()
            res = evaluate_model(model, dataset, val_idx, opts.val_max_length, model.prior if best is None else None)
            res.update({"kind": "val", "step": step, "eval_s": round(time.time() - t0, 2)})
            if best is not None:
                res.setdefault("prior_mae", best.get("prior_mae"))
                res.setdefault("prior_lddt", best.get("prior_lddt"))
            _append_jsonl(metrics_path, res)
            msg = f"val step {step}: MAE {res.get('mae', float('nan')):.3f} A, lDDT {res.get('lddt', float('nan')):.4f}"
            if res.get("prior_mae") is not None:
                msg += f" (prior {res['prior_mae']:.3f} A, {res['prior_lddt']:.4f})"
            if res.get("q3") is not None:
                msg += f", Q3 {res['q3']:.3f}"
            _log(msg + f" on {res['n_chains']} chains", quiet)
            key = res.get(opts.select)
            better = key is not None and (best is None or best.get(opts.select) is None or (
                key > best[opts.select] if opts.select == "lddt" else key < best[opts.select]))
            if better:
                best = {k: res[k] for k in ("step", "mae", "lddt", "rmse", "prior_mae", "prior_lddt", "q3") if k in res}
                model.config["training"] = {"step": step, "samples": step * per_step, "options": opts.to_json(),
                                            "val": best}
                model.save(model_dir / "best")
            result = res
        dist.barrier()
        return result

    t_start = time.time()
    t_log, seen_log = time.time(), 0
    loss_acc, n_acc, gnorm_acc = 0.0, 0, 0.0
    stats: dict[str, float] = {}
    step = start_step
    interrupted = False
    try:
        while step < total:
            step_loss = training_step(net, model, [sampler.batch(opts.batch_size) for _ in range(opts.grad_accum)],
                                      optimizer, scheduler, params, opts.clip_grad, stats, ss_only=opts.ss_only)
            gnorm_acc += stats.get("grad_norm", 0.0)
            if not math.isfinite(step_loss):
                raise DistfoldError(f"training diverged at step {step + 1} (loss {step_loss}); lower --lr")
            step += 1
            loss_acc += step_loss
            n_acc += 1
            seen_log += per_step
            if step % opts.log_every == 0 or step == total:
                dt = time.time() - t_log
                rec = {"kind": "train", "step": step, "epoch": round(step / steps_per_epoch, 3),
                       "loss": loss_acc / n_acc, "lr": scheduler.get_last_lr()[0],
                       "grad_norm": round(gnorm_acc / n_acc, 4),
                       "samples_per_s": round(seen_log / max(dt, 1e-9), 3),
                       "elapsed_s": round(time.time() - t_start, 1)}
                if dist.main:
                    _append_jsonl(metrics_path, rec)
                _log(f"step {step}/{total} loss {rec['loss']:.4f} lr {rec['lr']:.2e} |g| {rec['grad_norm']:.3g} "
                     f"{rec['samples_per_s']:.1f} samples/s", quiet)
                t_log, seen_log, loss_acc, n_acc, gnorm_acc = time.time(), 0, 0.0, 0, 0.0
            if opts.eval_every and step % opts.eval_every == 0 and step < total:
                model.eval()
                validate(step)
                model.train()
            if opts.save_every and step % opts.save_every == 0 and step < total:
                save_checkpoint(step)
            if dist.any(stop.signal is not None):
                interrupted = True
                break
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)

    if interrupted:
        path = save_checkpoint(step)
        _log(f"interrupted at step {step}; checkpoint saved to {path}; continue with --resume", quiet)
        raise KeyboardInterrupt
    model.eval()
    if step == start_step and dist.any(resumed_val is not None):  # a finished run resumed: its validation stands
        final_val = resumed_val
    else:
        final_val = validate(step) if val_idx else None
    save_checkpoint(step)
    if dist.world > 1:
        spread = _rank_weight_spread(model)
        if dist.main:
            _append_jsonl(metrics_path, {"kind": "ddp", "step": step, "world_size": dist.world,
                                         "max_rank_weight_diff": spread})
        if spread > 1e-5:
            raise DistfoldError(f"data-parallel ranks ended with different weights (max difference {spread:.3g})")
    if dist.main:
        model.config["training"] = {"step": step, "samples": step * per_step, "options": opts.to_json(),
                                    "val": final_val and {k: final_val[k] for k in ("mae", "lddt", "rmse", "q3")
                                                          if k in final_val}}
        model.save(model_dir, replace_dir=False)
    dist.barrier()
    summary = {"model_dir": str(model_dir), "steps": step, "trainable_parameters": n_train, "device": device,
               "train_s": round(time.time() - t_start, 1), "final_val": final_val, "best_val": best,
               "best_dir": str(model_dir / "best") if best else None}
    if dist.world > 1:
        torch.distributed.destroy_process_group()
    return summary


def training_step(net: torch.nn.Module, model: DistanceModel, batches: list[dict[str, Any]],
                  optimizer: torch.optim.Optimizer, scheduler: Any, params: list[torch.nn.Parameter],
                  clip_grad: float, stats: dict[str, float] | None = None, ss_only: bool = False) -> float:
    """One optimizer step over ``len(batches)`` accumulated micro-batches (from
    :meth:`CropSampler.batch`); ``net`` is the model or its DDP wrapper. Returns the loss.
    ``ss_only``: the secondary-structure cross-entropy alone, without the pair stack."""
    optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for micro, batch in enumerate(batches):
        size = max(len(s) for s in batch["sequences"])
        target, pmask = pair_targets(batch["coords"], model.normaliser, size)
        last = micro == len(batches) - 1
        ctx = net.no_sync() if (not last and hasattr(net, "no_sync")) else _null()
        with ctx:
            if ss_only:
                out = model.forward_ss(batch["sequences"])
                loss = model.head.ss_loss(out, ss_targets(batch["ss"], size).to(out["ss_logits"].device))
                (loss / len(batches)).backward()
                step_loss += float(loss.detach()) / len(batches)
                continue
            out = net(batch["sequences"], batch["lengths"], batch["starts"])
            device = out["distance"].device
            loss = model.head.loss(out, target.to(device), pmask.to(device))
            if out.get("ss_logits") is not None and hasattr(model.head, "ss_loss"):
                # also on a batch without labels (ss_loss is then 0 with a zero gradient): under DDP
                # every rank must give the read-out a gradient, or the ranks' reductions mismatch
                loss = loss + model.head.ss_loss(out, ss_targets(batch["ss"], size).to(device))
            loss = loss / len(batches)
            loss.backward()
        step_loss += float(loss.detach())
    if math.isfinite(step_loss):
        if clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
            if stats is not None:
                stats["grad_norm"] = float(norm)
        optimizer.step()
        scheduler.step()
    return step_loss


def _rank_weight_spread(model: torch.nn.Module) -> float:
    """Largest difference of any trainable weight between data-parallel ranks."""
    flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters() if p.requires_grad])
    hi, lo = flat.clone(), flat.clone()
    torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
    torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
    return float((hi - lo).abs().max())


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
