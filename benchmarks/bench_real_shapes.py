"""Time and peak memory of one ``distfold train`` step with pretrained backbones of the real shapes.

No pretrained weights ship with distfold (and none can be downloaded here), so each base
model is a **random** model of the real architecture, saved like a download with
``save_pretrained`` and loaded by distfold exactly as real weights would be:

- ``qwen2.5-0.5b``: Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads, 2 KV heads, FFN 4864,
  vocab 151,936; 494 M parameters), backbone ``qwen`` with LoRA r 8 on q,k,v,o,gate,up,down;
- ``esm2-35m``: ESM-2 t12 35M (hidden 480, 12 layers, 20 heads, FFN 1920),
- ``esm2-150m``: ESM-2 t30 150M (hidden 640, 30 layers, 20 heads, FFN 2560),
- ``esm2-650m`` (only with ``--models``): ESM-2 t33 650M (hidden 1280, 33 layers, 20 heads, FFN 5120),
  backbone ``esm`` with LoRA r 8 on query, key, value and every dense layer (or, with
  ``--esm-finetune frozen``, frozen with the trainable layer mix and projection);
- ``head-only`` (only with ``--models``): the same step with a negligible backbone (``qwen``
  preset ``tiny``, from scratch: hidden 32, 2 layers), i.e. what the pair head costs alone.

The saved models are named like the real checkpoints' folders (``Qwen2.5-0.5B``,
``esm2_t12_35M_UR50D``, ...), so ``--save-only --models-dir .`` writes random stand-ins to
rehearse the README's fine-tuning commands without the real weights (they predict nothing).

Time and memory do not depend on the weights' values. The step is
:func:`distfold.pipeline.train.training_step` -- what ``distfold train`` runs per step: the
backbone, the default ``regression`` head with the separation prior, the Laplace loss,
backward, gradient clipping, AdamW -- on ``--batch-sizes`` crops of ``--crop`` residues
(random sequences; random-walk coordinates). Each (model, batch size, checkpointing) runs in
a fresh subprocess, so its peak RSS (``ru_maxrss``: interpreter, torch, weights, activations,
optimizer state) is its own; one warm-up step, then the median of ``--steps`` timed steps.
On CUDA (``--device cuda``) the peak is ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/bench_real_shapes.py                                    # all three, batch 1 2 4, crop 256
    python benchmarks/bench_real_shapes.py --models esm2-35m --batch-sizes 4 --checkpointing both --json
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
ESM2 = {"esm2-35m": (480, 12, 20), "esm2-150m": (640, 30, 20), "esm2-650m": (1280, 33, 20)}
MODELS = ["qwen2.5-0.5b", "esm2-35m", "esm2-150m", "esm2-650m", "head-only"]
#: Folder names of the saved models: those of the real checkpoints.
FOLDERS = {"qwen2.5-0.5b": "Qwen2.5-0.5B", "esm2-35m": "esm2_t12_35M_UR50D", "esm2-150m": "esm2_t30_150M_UR50D",
           "esm2-650m": "esm2_t33_650M_UR50D"}
#: ESM-2's vocabulary, in the order of facebook/esm2_* vocab.txt.
ESM2_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]


def make_model(name: str, path: Path) -> None:
    """Save a random model of ``name``'s real architecture, with its tokenizer, at ``path``."""
    import torch

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    if name.startswith("qwen"):
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import Split
        from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

        vocab = {"<|endoftext|>": 0, "<unk>": 1, **{chr(65 + i): i + 2 for i in range(26)}}
        tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = Split("", "isolated")
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>",
                                eos_token="<|endoftext|>").save_pretrained(str(path))
        Qwen2ForCausalLM(Qwen2Config(**QWEN05, pad_token_id=0, eos_token_id=0)).save_pretrained(str(path))
        return
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    hidden, layers, heads = ESM2[name]
    (path / "vocab.txt").write_text("\n".join(ESM2_VOCAB) + "\n")
    EsmTokenizer(str(path / "vocab.txt")).save_pretrained(str(path))
    config = EsmConfig(vocab_size=33, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       intermediate_size=4 * hidden, max_position_embeddings=1026, position_embedding_type="rotary",
                       token_dropout=True, emb_layer_norm_before=False, pad_token_id=1, mask_token_id=32,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5)
    EsmForMaskedLM(config).save_pretrained(str(path))


def _batch(n: int, size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=n)) for _ in range(size)]
    coords = [np.cumsum(rng.normal(0, 2.2, size=(n, 3)), axis=0).astype(np.float32) for _ in range(size)]
    return {"sequences": seqs, "lengths": [n] * size, "starts": [0] * size, "coords": coords}


def _prior(n: int):
    import numpy as np

    from distfold.pipeline.prior import SeparationPrior

    idx = np.arange(n)
    d = 3.8 * np.abs(idx[:, None] - idx[None, :]) ** 0.5
    return SeparationPrior().fit_distance_matrices([d] * 25, max_separation=n)


def run_one(name: str, model_dir: str, crop: int, batch: int, steps: int, warmup: int, checkpointing: bool,
            device: str, precision: str, finetune: str = "lora") -> dict:
    import torch

    from distfold.pipeline.model import DistanceModel
    from distfold.pipeline.train import _param_groups, training_step

    backbone = "esm" if name.startswith("esm") else "qwen"
    params = {"preset": "tiny"} if name == "head-only" else {"base_model": model_dir}
    params["precision"] = precision
    if checkpointing:
        params["gradient_checkpointing"] = True
    if backbone == "esm":
        params["finetune"] = finetune
    t0 = time.perf_counter()
    model = DistanceModel.build((backbone, params), ("regression", {}), ("log1p", {"scale": 5.0}), prior=_prior(crop))
    load_s = time.perf_counter() - t0
    model.to(device).train()
    trainable = model.trainable_parameters()
    opt = torch.optim.AdamW(_param_groups(model, 0.01), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    data = _batch(crop, batch)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        training_step(model, model, [data], opt, sched, trainable, 1.0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    mode = finetune if backbone == "esm" else ("scratch" if name == "head-only" else "lora")
    out = {"model": name, "backbone": backbone, "finetune": mode, "batch": batch, "crop": crop,
           "checkpointing": checkpointing,
           "precision": precision, "device": device, "step_s": round(statistics.median(times), 3),
           "step_s_all": [round(t, 3) for t in times], "load_s": round(load_s, 1),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "base_parameters": sum(p.numel() for p in model.backbone.parameters() if not p.requires_grad),
           "trainable_parameters": sum(p.numel() for p in trainable), "threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS[:3], choices=MODELS)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2, help="timed steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--checkpointing", choices=["off", "on", "both"], default="off",
                    help="gradient (activation) checkpointing of the backbone")
    ap.add_argument("--esm-finetune", choices=["lora", "frozen", "both"], default="lora",
                    help="the esm backbone's finetune mode (qwen is always LoRA)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="keep the saved random models here (reused when present) instead of a temporary folder")
    ap.add_argument("--save-only", action="store_true",
                    help="only write the random models into --models-dir (stand-ins to rehearse commands) and exit")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    ckpt = {"off": [False], "on": [True], "both": [False, True]}[args.checkpointing]
    esm_modes = ["lora", "frozen"] if args.esm_finetune == "both" else [args.esm_finetune]
    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        name, model_dir, batch, c, mode = json.loads(args.one)
        print(json.dumps(run_one(name, model_dir, args.crop, batch, args.steps, args.warmup, c, args.device,
                                 args.precision, mode)))
        return
    tmp = None
    root = args.models_dir
    if args.save_only:
        if root is None:
            sys.exit("--save-only needs --models-dir")
        for name in args.models:
            if name in FOLDERS and not (root / FOLDERS[name] / "config.json").is_file():
                make_model(name, root / FOLDERS[name])
                print(f"wrote a random {name}-shaped stand-in: {root / FOLDERS[name]}", file=sys.stderr)
        return
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="distfold-shapes-")
        root = Path(tmp.name)
    results = []
    try:
        for name in args.models:
            model_dir = root / FOLDERS.get(name, name)
            if name in FOLDERS and not (model_dir / "config.json").is_file():
                t0 = time.time()
                make_model(name, model_dir)
                print(f"saved a random {name}-shaped model in {time.time() - t0:.0f} s", file=sys.stderr)
            runs = [(b, c, m) for b in args.batch_sizes for c in ckpt
                    for m in (esm_modes if name.startswith("esm") else ["lora"])]
            for batch, c, mode in runs:
                if mode == "frozen" and c:
                    continue  # a frozen model keeps no activations to recompute
                cmd = [sys.executable, __file__, "--one", json.dumps([name, str(model_dir), batch, c, mode]),
                       "--crop", str(args.crop), "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--device", args.device, "--precision", args.precision]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                res = run_json(cmd, f"{name} batch {batch}")
                results.append(res)
                mem = f"peak RSS {res['peak_rss_mib']:,} MiB" + (
                    f", CUDA {res['peak_cuda_mib']:,} MiB" if "peak_cuda_mib" in res else "")
                print(f"{name:13s} {mode:6s} batch {batch} crop {args.crop}{' ckpt' if c else ''}: "
                      f"{res['step_s']:.2f} s/step ({res['step_s_all']}), {mem}; load average "
                      f"{res['load_avg_1min']} on {res['cpus']} CPUs", file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| model | base parameters | training | trainable (+ head) | batch | checkpointing | s / step | "
          "peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        mem = r.get("peak_cuda_mib", r["peak_rss_mib"])
        print(f"| {r['model']} | {r['base_parameters'] / 1e6:.0f} M | {r['finetune']} | "
              f"{r['trainable_parameters'] / 1e6:.2f} M | {r['batch']} | {'on' if r['checkpointing'] else 'off'} | "
              f"{r['step_s']:.2f} | {mem:,} |")


if __name__ == "__main__":
    main()
