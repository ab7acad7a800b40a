"""One LoRA training step of the Qwen2.5-0.5B shape: distfold's machinery vs plain transformers + peft.

Random weights of the Qwen2.5-0.5B architecture (hidden 896, 24 layers, 14 heads,
2 KV heads, FFN 4864, vocab 151,936) are saved once, like a downloaded model, with
a single-letter tokenizer. Then, on the same 256-residue batch:

- ``distfold``: ``distfold.pipeline.train.training_step`` on a ``DistanceModel`` (qwen backbone
  with LoRA r 8 on q,k,v,o,gate,up,down + the regression head + separation prior),
  i.e. what ``distfold train`` runs per step;
- ``plain``: ``AutoModel`` + ``peft.get_peft_model`` with the same LoRA config, the
  same head module called directly on the hidden states, the same loss, AdamW;
- ``plain-backbone``: the plain backbone alone (forward + backward + AdamW), to show
  how much of a step the pair head costs.

Overhead = distfold / plain - 1 (target <= 15 %). Each variant runs in its own
subprocess (so peak RSS is its own), warm-up steps first, then the median of
--steps timed steps. Usage::

    python benchmarks/bench_train_step.py [--length 256] [--steps 3] [--threads N] [--model-dir DIR]

``--pair-head`` instead times ``distfold train``'s default preset (the ``small`` from-scratch
backbone, the regression head with its default parameters, crop 256, batch 8, AdamW and the
warm-up schedule of ``train``) with the pair stack as it is (``current``: library LayerNorm on a
channels-last map) and as it was before issue 19 (``legacy``: a hand-written LayerNorm over the
channels of an NCHW map; kept here, in the benchmark only). The variants share the initial
weights (same seed) and the crops (same sampler seed) and run interleaved, step by step, in one
process, so the run prints crops/s side by side (and the per-step time ratio, which a change in
machine load does not bias) and the loss of every step of each: the loss curves compared step by
step. ``--vs REV`` adds the pair stack of ``plugins/distance_heads/pair.py`` as it is at a
git revision (e.g. ``--vs HEAD``: the committed state beside uncommitted work), with AdamW as
``legacy`` builds it. ``--bf16`` adds the current stack under CPU bf16 autocast. ``--crop`` /
``--batch-size`` shrink the steps on a slow machine; ``--clock cpu`` times them by the process's
CPU time (with ``--threads 1``: the work, where other jobs leave a wall clock meaningless).
Data: ``--data`` (a dataset directory, or structure files to build one from; default the
committed test chains)::

    python benchmarks/bench_train_step.py --pair-head [--data DIR] [--steps 20] [--warmup 1] [--vs REV] [--bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import run_json

QWEN05 = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
              num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
              tie_word_embeddings=True, rms_norm_eps=1e-6)
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def make_model(path: Path) -> None:
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{chr(65 + i): i + 2 for i in range(26)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**QWEN05, pad_token_id=0, eos_token_id=0))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    fast.save_pretrained(str(path))


def _sequence(n: int) -> str:
    import numpy as np

    rng = np.random.default_rng(0)
    return "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=n))


def _batch(n: int):
    import numpy as np

    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(0, 2.2, size=(n, 3)), axis=0).astype(np.float32)  # a random-walk chain
    return {"sequences": [_sequence(n)], "lengths": [n], "starts": [0], "coords": [x]}


def _prior(n: int):
    import numpy as np

    from distfold.pipeline.prior import SeparationPrior

    idx = np.arange(n)
    d = 3.8 * np.abs(idx[:, None] - idx[None, :]) ** 0.5
    return SeparationPrior().fit_distance_matrices([d] * 25, max_separation=n)


def run_variant(variant: str, model_dir: str, n: int, steps: int, warmup: int) -> dict:
    import torch

    from distfold.pipeline.model import DistanceModel
    from distfold.pipeline.train import _param_groups, pair_targets, training_step

    batch = _batch(n)
    model = DistanceModel.build(("qwen", {"base_model": model_dir, "lora_r": LORA["r"],
                                          "lora_alpha": LORA["lora_alpha"], "lora_dropout": LORA["lora_dropout"]}),
                                ("regression", {}), ("log1p", {"scale": 5.0}), prior=_prior(n))
    model.train()
    times = []
    if variant == "distfold":
        params = model.trainable_parameters()
        opt = torch.optim.AdamW(_param_groups(model, 0.01), lr=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        step = lambda: training_step(model, model, [batch], opt, sched, params, 1.0)  # noqa: E731
    else:
        # The same weights, driven by plain transformers + peft calls.
        peft_model = model.backbone.model
        head = model.head
        ids = torch.tensor([[model.backbone._lut[ord(c)].item() for c in batch["sequences"][0]]])
        attn = torch.ones_like(ids)
        prior = torch.from_numpy(model.normaliser.encode(model.prior.matrix(n)))[None]
        target, pmask = pair_targets(batch["coords"], model.normaliser, n)
        mask = torch.ones(1, n, dtype=torch.bool)
        if variant == "plain":
            params = [p for p in list(peft_model.parameters()) + list(head.parameters()) if p.requires_grad]
        else:
            params = [p for p in peft_model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            hidden = peft_model(input_ids=ids, attention_mask=attn).last_hidden_state
            if variant == "plain":
                loss = head.loss(head(hidden, mask, prior=prior), target, pmask)
            else:
                loss = hidden.float().pow(2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return float(loss)

    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"variant": variant, "length": n, "step_s_median": statistics.median(times),
            "step_s_all": [round(t, 3) for t in times], "peak_rss_mib": round(rss, 1),
            "threads": torch.get_num_threads(),
            "trainable_parameters": sum(p.numel() for p in model.trainable_parameters())}


def legacy_pair_forward(self, features, mask, prior=None):
    """``PairStack.forward`` as it was before issue 19 (NCHW map, hand-written channel LayerNorm)."""
    import torch
    from torch.nn import functional as F

    def channel_norm(z, norm):
        mean = z.mean(1, keepdim=True)
        var = z.var(1, keepdim=True, unbiased=False)
        return (z - mean) * torch.rsqrt(var + norm.eps) * norm.weight[:, None, None] + norm.bias[:, None, None]

    b, n, _ = features.shape
    x = self.norm(features.float())
    if self.seq_conv is not None:
        xm = x * mask[..., None].to(x.dtype)
        x = x + self.seq_out(F.gelu(self.seq_conv(xm.transpose(1, 2)).transpose(1, 2)))
    if self.dropout is not None:
        x = self.dropout(x)
    z = self.left(x)[:, :, None, :] + self.right(x)[:, None, :, :]
    z = z + self.prod_a(x)[:, :, None, :] * self.prod_b(x)[:, None, :, :]
    idx = torch.arange(n, device=features.device)
    rel = (idx[None, :] - idx[:, None]).clamp(-self.max_separation, self.max_separation) + self.max_separation
    z = z + self.sep(rel)[None]
    if self.use_prior:
        z = z + self.prior_proj(prior.float()[..., None])
    pm = (mask[:, :, None] & mask[:, None, :]).to(z.dtype)[:, None]
    z = z.permute(0, 3, 1, 2) * pm
    for (conv1, conv2), norm in zip(self.blocks, self.block_norms):
        h = conv1(F.gelu(channel_norm(z, norm)) * pm)
        if self.dropout is not None:
            h = self.dropout(h)
        z = (z + conv2(F.gelu(h) * pm)) * pm
    g = F.gelu(channel_norm(z, self.out_norm))
    k = self.out.out_channels - self.n_detached
    if self.n_detached:
        y = torch.cat([F.conv2d(g, self.out.weight[:k], self.out.bias[:k]),
                       F.conv2d(g.detach(), self.out.weight[k:], self.out.bias[k:])], 1)
    else:
        y = self.out(g)
    y = 0.5 * (y + y.transpose(-1, -2))
    return y.permute(0, 2, 3, 1)


def pair_forward_at(rev: str):
    """``PairStack.forward`` of ``plugins/distance_heads/pair.py`` at git revision ``rev`` (its module
    helpers with it), to patch onto a current stack: the parameters are the same."""
    import subprocess
    import types

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["git", "show", f"{rev}:plugins/distance_heads/pair.py"], cwd=root, capture_output=True,
                       text=True)
    if r.returncode != 0:
        sys.exit(f"--vs {rev}: {r.stderr.strip() or 'git show failed'}")
    module = types.ModuleType(f"pair_at_{rev}")
    exec(compile(r.stdout, f"{rev}:plugins/distance_heads/pair.py", "exec"), module.__dict__)
    return module.PairStack.forward


def _pair_dataset(data: str, workdir: str) -> str:
    """A dataset directory: ``data`` itself, or one built from the structure files in it."""
    if (Path(data) / "dataset.json").is_file():
        return data
    from distfold.data.build import BuildOptions, build_dataset

    out = os.path.join(workdir, "dataset")
    build_dataset([data], out, BuildOptions(), log=lambda m: None)
    return out


def run_pair(data: str, steps: int, warmup: int, crop: int | None, batch_size: int | None, bf16: bool,
             vs: str | None = None, clock: str = "wall") -> dict:
    """Default-preset training steps, the pair-stack variants interleaved step by step in one process
    (so a change in machine load hits them alike), each from the same seed on the same crops."""
    import contextlib
    import types

    import torch

    from distfold.data.dataset import Dataset
    from distfold.pipeline.train import (CropSampler, TrainOptions, _build_model, _param_groups, lr_factor,
                                         training_step)

    opts = TrainOptions()
    opts.crop = crop or opts.crop
    opts.batch_size = batch_size or opts.batch_size
    dataset = Dataset(data)
    train_idx = dataset.indices("train")
    total = warmup + steps
    forwards = {"legacy": legacy_pair_forward}
    if vs:
        forwards[vs] = pair_forward_at(vs)
    variants = list(forwards) + ["current"] + (["bf16"] if bf16 else [])
    state = {}
    for v in variants:
        torch.manual_seed(opts.seed)
        model = _build_model(opts, dataset, train_idx, quiet=True)
        if v in forwards:
            model.head.stack.forward = types.MethodType(forwards[v], model.head.stack)
        model.train()
        opt = torch.optim.AdamW(_param_groups(model, opts.weight_decay), lr=opts.lr, betas=(0.9, 0.999), eps=1e-8)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, opts.warmup, total, opts.min_lr_ratio))
        state[v] = (model, opt, sched, CropSampler(dataset, train_idx, opts.crop, opts.seed),
                    model.trainable_parameters())
    times = {v: [] for v in variants}
    losses = {v: [] for v in variants}
    timer = time.process_time if clock == "cpu" else time.perf_counter
    for i in range(total):
        order = variants[i % len(variants):] + variants[:i % len(variants)]  # rotate who goes first
        for v in order:
            model, opt, sched, sampler, params = state[v]
            batch = sampler.batch(opts.batch_size)
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if v == "bf16" else contextlib.nullcontext()
            t0 = timer()
            with ctx:
                loss = training_step(model, model, [batch], opt, sched, params, opts.clip_grad)
            dt = timer() - t0
            losses[v].append(loss)
            if i >= warmup:
                times[v].append(dt)
    out = {"crop": opts.crop, "batch_size": opts.batch_size, "threads": torch.get_num_threads(), "clock": clock,
           "steps_timed": steps, "losses": losses, "variants": {}}
    for v in variants:
        t = sorted(times[v])
        med = statistics.median(t)
        out["variants"][v] = {"step_s_min": round(t[0], 3), "step_s_median": round(med, 3),
                              "step_s_max": round(t[-1], 3), "crops_per_s": round(opts.batch_size / med, 3)}
        for ref in variants[:variants.index(v)]:
            if ref == "bf16":
                continue
            ratios = sorted(a / b for a, b in zip(times[ref], times[v]))  # per step: same load
            out["variants"][v][f"speedup_vs_{ref}_min_median_max"] = [round(ratios[0], 3),
                                                                      round(statistics.median(ratios), 3),
                                                                      round(ratios[-1], 3)]
        if v != "legacy":
            d = [abs(x - y) for x, y in zip(losses[v], losses["legacy"])]
            out["variants"][v]["max_abs_loss_difference"] = max(d)
            out["variants"][v]["max_rel_loss_difference"] = max(x / abs(y) for x, y in zip(d, losses["legacy"]))
    return out


def pair_head_main(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="distfold-bench-") as tmp:
        data = _pair_dataset(args.data or str(root / "tests" / "data" / "chains"), tmp)
        res = run_pair(data, args.steps, args.warmup, args.crop, args.batch_size, args.bf16, args.vs, args.clock)
    variants = list(res["variants"])
    print("step  " + "  ".join(f"{v:>10s}" for v in variants), file=sys.stderr)
    for i in range(len(res["losses"]["legacy"])):
        print(f"{i:4d}  " + "  ".join(f"{res['losses'][v][i]:10.6f}" for v in variants), file=sys.stderr)
    for v, r in res["variants"].items():
        print(f"{v:8s} step min/median/max {r['step_s_min']:.3f} / {r['step_s_median']:.3f} / "
              f"{r['step_s_max']:.3f} s, {r['crops_per_s']:.2f} crops/s", file=sys.stderr)
        for k, x in r.items():
            if k.startswith("speedup_vs_"):
                print(f"{'':8s} {k[11:-15]} / {v} per step (min/median/max): {x[0]:.3f} / {x[1]:.3f} / {x[2]:.3f}",
                      file=sys.stderr)
        if "max_rel_loss_difference" in r:
            print(f"{'':8s} largest loss difference from legacy: {r['max_abs_loss_difference']:.3g} "
                  f"({r['max_rel_loss_difference']:.3g} relative)", file=sys.stderr)
    res["data"] = args.data or "tests/data/chains"
    print(json.dumps(res, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model-dir", default=None, help="reuse a saved random Qwen2.5-0.5B-shaped model")
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pair-head", action="store_true",
                    help="time the default preset with the pair stack as it is vs as it was (see above)")
    ap.add_argument("--data", default=None, help="--pair-head: dataset directory or structure files")
    ap.add_argument("--bf16", action="store_true", help="--pair-head: also the current stack under bf16 autocast")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="--pair-head: time steps by the wall clock, or by the process's CPU time (all threads: "
                         "the work done, on a machine too loaded for wall times; use with --threads 1)")
    ap.add_argument("--vs", default=None, metavar="REV",
                    help="--pair-head: also the pair stack of plugins/distance_heads/pair.py at git revision REV")
    ap.add_argument("--crop", type=int, default=None, help="--pair-head: crop instead of the preset's 256")
    ap.add_argument("--batch-size", type=int, default=None, help="--pair-head: crops per step instead of 8")
    args = ap.parse_args()
    if args.pair_head:
        pair_head_main(args)
        return
    if args.variant:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(run_variant(args.variant, args.model_dir, args.length, args.steps, args.warmup)))
        return
    tmp = None
    model_dir = args.model_dir
    if model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="distfold-bench-")
        model_dir = os.path.join(tmp.name, "qwen2.5-0.5b-shape-random")
        t0 = time.time()
        make_model(Path(model_dir))
        print(f"saved a random Qwen2.5-0.5B-shaped model in {time.time() - t0:.0f} s", file=sys.stderr)
    results = []
    for variant in ("plain-backbone", "plain", "distfold"):
        cmd = [sys.executable, __file__, "--variant", variant, "--model-dir", model_dir,
               "--length", str(args.length), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        res = run_json(cmd, variant)
        results.append(res)
        print(f"{variant:15s} step {res['step_s_median']:.3f} s (all {res['step_s_all']}), "
              f"peak RSS {res['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    by = {r["variant"]: r for r in results}
    overhead = by["distfold"]["step_s_median"] / by["plain"]["step_s_median"] - 1
    summary = {"results": results, "overhead_vs_plain": round(overhead, 4),
               "head_share_of_plain_step": round(1 - by["plain-backbone"]["step_s_median"]
                                                 / by["plain"]["step_s_median"], 4),
               "target_overhead": 0.15, "meets_target": overhead <= 0.15}
    print(json.dumps(summary, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
