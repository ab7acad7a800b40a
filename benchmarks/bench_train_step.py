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
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model-dir", default=None, help="reuse a saved random Qwen2.5-0.5B-shaped model")
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
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
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if r.returncode != 0:
            sys.exit(f"{variant} failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
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
