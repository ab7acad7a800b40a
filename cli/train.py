"""``distfold train``: train a distance model on a dataset directory."""

from __future__ import annotations

import json

import click

from distfold.cli.common import ComponentName, echo_json, wrap_errors


def _json_params(ctx, param, value):
    if value is None:
        return {}
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"pair_dim\": 48}'")
    return obj


def _check_base_model(value: str) -> None:
    """--base-model is a local folder or a Hugging Face id: a value that can only be a path
    (``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``) must be an existing folder, checked before
    anything is loaded or fitted."""
    import os
    from pathlib import Path

    from distfold.errors import InputError

    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"--base-model {value}: not a directory")
        return
    if value.startswith((".", "/", "~")) or value.strip("/").count("/") > 1 or os.sep != "/" and os.sep in value:
        raise InputError(f"--base-model {value}: no such directory")


@click.command()
@click.argument("dataset_dir", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory: checkpoints/, best/, metrics.jsonl and the final model.")
@click.option("--backbone", type=ComponentName("backbone"), default="qwen", show_default=True)
@click.option("--base-model", default=None, metavar="PATH_OR_ID",
              help="Pretrained weights for the backbone (qwen: Qwen2/Qwen2.5; esm: ESM-2), a local directory or a "
                   "local Hugging Face cache id (nothing is downloaded), fine-tuned with LoRA.")
@click.option("--preset", default=None, metavar="NAME",
              help="From-scratch backbone size (tiny, small, base); default small without --base-model.")
@click.option("--backbone-params", callback=_json_params, default=None, metavar="JSON",
              help="More backbone parameters, e.g. '{\"lora_r\": 16}'.")
@click.option("--head", type=ComponentName("distance_head"), default="regression", show_default=True)
@click.option("--head-params", callback=_json_params, default=None, metavar="JSON",
              help="Head parameters, e.g. '{\"pair_dim\": 48, \"n_blocks\": 6}'.")
@click.option("--normaliser", type=ComponentName("normaliser"), default="log1p", show_default=True)
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Training length in epochs (train chains / crops per step); default 10.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Training length in optimizer steps.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=100, show_default=True, help="Warm-up steps.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.01, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Crops per step per process.")
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--crop", type=click.IntRange(min=8), default=256, show_default=True,
              help="Longer chains are cut to a random window of this many residues.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Backbone weights/compute (bf16 was ~4x slower than fp32 on a 2-core CPU).")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute backbone activations (less memory).")
@click.option("--eval-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Validate (MAE, lDDT on val chains) every N steps; 0 = only at the end.")
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Checkpoint every N steps; 0 = only at the end.")
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Log the training loss every N steps.")
@click.option("--keep", type=click.IntRange(min=0), default=3, show_default=True, help="Checkpoints kept (0 = all).")
@click.option("--select", type=click.Choice(["lddt", "mae"]), default="lddt", show_default=True,
              help="Validation score that picks best/.")
@click.option("--val-max-length", type=click.IntRange(min=1), default=256, show_default=True,
              help="Validate on val chains of at most this many residues.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads per process.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train (auto: CUDA when available); under torchrun each process uses cuda:LOCAL_RANK.")
@click.option("--init", "init_from", type=click.Path(file_okay=False, exists=True), default=None, metavar="MODEL",
              help="Start from this model's weights (fine-tuning; e.g. core/default_model at a longer --crop). "
                   "Its components, normaliser scale and prior are kept; optimizer and schedule start afresh.")
@click.option("--ss-only", is_flag=True,
              help="With --init: add a secondary-structure read-out to that model and train only it (the "
                   "distances stay exactly the model's); needs DSSP labels in the dataset. --head-params with "
                   "only ss_* keys (ss_kernel, ss_channels, ss_dilations) shapes a fresh read-out.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON; no progress.")
@wrap_errors
def train(dataset_dir, model_dir, backbone, base_model, preset, backbone_params, head, head_params, normaliser,
          epochs, max_steps, lr, warmup, weight_decay, batch_size, grad_accum, crop, precision,
          gradient_checkpointing, eval_every, save_every, log_every, keep, select, val_max_length, seed, threads, init_from,
          ss_only, resume, as_json, device="auto"):
    """Train a distance model on DATASET_DIR (see `distfold data`).

    \b
    From scratch (the shipped default model's exact command is in its DATA_CARD.md):
      distfold train DATA -o MODEL --preset small --crop 128 --max-steps 3000 --eval-every 250
        --weight-decay 0.05 --head-params '{"pair_dim": 16, "local_range": 8, "local_weight": 2.0,
        "dropout": 0.2, "seq_kernel": 15}'
    Fine-tuning a saved model (architecture, normaliser and prior kept):
      distfold train DATA -o MODEL --init core/default_model --crop 256 --max-steps 1000 --lr 3e-4
    LoRA on a local pretrained Qwen2.5 or ESM-2:
      distfold train DATA -o MODEL --base-model ./Qwen2.5-0.5B --lr 1e-4 --grad-accum 8
      distfold train DATA -o MODEL --backbone esm --base-model ./esm2_t12_35M_UR50D --lr 5e-4
    Data-parallel on one machine (DDP; gloo on CPU):
      torchrun --standalone --nproc-per-node 2 -m distfold train DATA -o MODEL ...
    """
    import torch

    from distfold.errors import InputError
    from distfold.pipeline.train import TrainOptions
    from distfold.pipeline.train import train as run_training

    if init_from is not None:
        ctx = click.get_current_context()
        given = [f"--{name.replace('_', '-')}" for name in ("backbone", "base_model", "preset", "backbone_params", "head",
                                                             "head_params", "normaliser", "precision",
                                                             "gradient_checkpointing")
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if ss_only and head_params and all(k.startswith("ss_") for k in head_params):
            given.remove("--head-params")  # the new read-out's own options (ss_kernel, ss_channels, ...)
        if given:
            raise InputError(f"--init {init_from}: the architecture comes from that model; drop {', '.join(given)}")

    if base_model is not None:
        _check_base_model(base_model)
    if threads:
        torch.set_num_threads(threads)
    bparams = dict(backbone_params)
    if base_model is not None:
        bparams["base_model"] = base_model
    if preset is not None:
        bparams["preset"] = preset
    if click.get_current_context().get_parameter_source("precision") is not click.core.ParameterSource.DEFAULT:
        bparams.setdefault("precision", precision)  # only when asked: a plugin's backbone may have no precision
    if gradient_checkpointing:
        bparams["gradient_checkpointing"] = True
    opts = TrainOptions(backbone=backbone, backbone_params=bparams, head=head, head_params=dict(head_params),
                        normaliser=normaliser, epochs=epochs, max_steps=max_steps, lr=lr, warmup=warmup,
                        weight_decay=weight_decay, batch_size=batch_size, grad_accum=grad_accum, crop=crop,
                        eval_every=eval_every, save_every=save_every, log_every=log_every, keep=keep, seed=seed,
                        val_max_length=val_max_length, select=select, init=init_from, ss_only=ss_only)
    summary = run_training(dataset_dir, model_dir, opts, resume=resume, quiet=as_json, device=device)
    if as_json:
        echo_json(summary)
    else:
        best = summary.get("best_val") or {}
        line = f"trained {summary['steps']} steps in {summary['train_s']:.0f} s; model in {summary['model_dir']}"
        if best:
            line += f"; best val (step {best.get('step')}): MAE {best.get('mae', float('nan')):.3f} A, " \
                    f"lDDT {best.get('lddt', float('nan')):.4f} -> {summary['best_dir']}"
        click.echo(line)
