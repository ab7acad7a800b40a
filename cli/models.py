"""``distfold models``: the trained models plugins provide, and what each is."""

from __future__ import annotations

import click

from distfold.cli.common import echo_json, wrap_errors


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list, or one object with NAME).")
@wrap_errors
def models(name: str | None, as_json: bool) -> None:
    """List installed trained models, or describe model NAME with its data card.

    The table gives each model's name (* marks the one `predict --backbone`
    picks among several on that backbone), its components, stored (trained)
    parameters, size on disk, the validation lDDT and distance MAE its
    config.json records (the checkpoint `distfold train` selected), and the plugin
    that provides it. Use a model with `distfold predict --model NAME`.
    """
    from distfold.pipeline.models import describe_models, installed_model

    rows = describe_models()
    if name is not None:
        wanted = installed_model(name.strip().lower()).name
        row = next(r for r in rows if r["name"] == wanted)
        if as_json:
            echo_json(row)
            return
        for key in ("name", "summary", "backbone", "distance_head", "normaliser", "default", "path", "base_model",
                    "crop", "plugin", "distribution", "version"):
            click.echo(f"{key}: {row.get(key)}")
        click.echo(f"parameters: {_count(row.get('parameters'))} stored; size {_size(row.get('size_bytes'))}")
        val = row.get("val") or {}
        click.echo("validation: " + (", ".join(f"{k} {v:.4g}" for k, v in val.items()) or "none recorded"))
        for problem in row["problems"]:
            click.echo(f"problem: {problem}")
        card = row.get("data_card")
        if card:
            from pathlib import Path

            click.echo(f"\n--- data card ({card}) ---\n")
            click.echo(Path(card).read_text().rstrip())
        else:
            click.echo("data card: none")
        return
    if as_json:
        echo_json(rows)
        return
    header = ("NAME", "BACKBONE", "HEAD", "NORMALISER", "PARAMETERS", "SIZE", "VAL LDDT", "VAL MAE", "PLUGIN",
              "SUMMARY")
    table = []
    for r in rows:
        val = r.get("val") or {}
        table.append((r["name"] + ("*" if r["default"] else ""), r["backbone"], r["distance_head"], r["normaliser"],
                      _count(r.get("parameters")), _size(r.get("size_bytes")), _num(val.get("lddt"), ".3f"),
                      _num(val.get("mae"), ".2f") + (" A" if val.get("mae") is not None else ""),
                      f"{r['plugin']} ({r['distribution'] or '-'})", r["summary"]))
    widths = [max(len(str(t[i])) for t in [header, *table]) for i in range(len(header) - 1)]
    for t in [header, *table]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(t[:-1], widths)) + "  " + str(t[-1]))
    if not rows:
        click.echo("(no installed models)")
    click.echo("\n* picked by `distfold predict --backbone NAME` among several models on that backbone. "
               "Parameters: stored (trained) tensors; a LoRA model's base weights are referenced, not counted.")
    problems = [(r["name"], p) for r in rows for p in r["problems"]]
    if problems:
        click.echo("\nProblems (such a model cannot be used until fixed):")
        for n, p in problems:
            click.echo(f"  {n}: {p}")
