"""``distfold plugins``: what is installed, who provides it, what failed."""

from __future__ import annotations

import click

from distfold.cli.common import echo_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plugins(as_json: bool) -> None:
    """List every component (kind, name, summary, plugin, distribution,
    version) and trained model (kind `model`; details: `distfold models`), then
    plugin load failures and name conflicts."""
    from distfold.registry import get_registry

    reg = get_registry()
    comps = [c.as_dict() for c in reg.all_components()]
    models = [m.as_dict() for m in reg.all_models()]
    failures = [f.as_dict() for f in reg.failures]
    conflicts = reg.conflicts()
    if reg.model_conflicts():
        conflicts = {**conflicts, "model": reg.model_conflicts()}
    if as_json:
        echo_json({"components": comps, "models": models, "failures": failures, "conflicts": conflicts,
                   "shadowed": {k: {n: {"used": w, "shadowed": o} for n, (w, o) in v.items()}
                                for k, v in reg.shadowed().items()}})
        return
    header = ("KIND", "NAME", "PLUGIN", "DISTRIBUTION", "VERSION", "SUMMARY")
    rows = [(c["kind"], c["name"], c["plugin"], c["distribution"] or "-", c["version"] or "-", c["summary"])
            for c in comps]
    rows += [("model", m["name"], m["plugin"], m["distribution"] or "-", m["version"] or "-", m["summary"])
             for m in models]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for r in [header, *rows]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r[:5], widths)) + "  " + str(r[5]))
    if failures:
        click.echo("\nLoad failures:")
        for f in failures:
            click.echo(f"  {f['plugin']} ({f['distribution'] or '-'}) at {f['stage']}: {f['error']}")
    if conflicts:
        shadowed = reg.shadowed()
        click.echo("\nName conflicts (a built-in component wins; NAME@DISTRIBUTION chooses another provider; "
                   "otherwise using such a name is an error):")
        for kind, names in conflicts.items():
            for name, providers in names.items():
                won = shadowed.get(kind, {}).get(name)
                note = f" -> {won[0]} (built-in) is used" if won else " -> an error when used"
                click.echo(f"  {kind} {name!r}: {', '.join(providers)}{note}")
