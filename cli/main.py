"""Entry point of the ``distfold`` command.

Sub-commands live one per module in this folder and are imported only when
invoked, so ``distfold --help`` loads no plugin and no torch.
"""

from __future__ import annotations

import importlib
import sys

import click

from distfold import __version__

#: command name -> "module:attribute" of its click command, in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("distfold.cli.predict:predict", "Predict structures from sequences or a FASTA file."),
    "compare": ("distfold.cli.compare:compare", "Score models against reference structures."),
    "reconstruct": ("distfold.cli.reconstruct:reconstruct", "Turn a distance matrix into C-alpha coordinates."),
    "evaluate": ("distfold.cli.evaluate:evaluate", "Score a model on a dataset split, with plots."),
    "train": ("distfold.cli.train:train", "Train a model on a dataset."),
    "calibrate": ("distfold.cli.calibrate:calibrate", "Fit a model's confidence calibration on held-out chains."),
    "data": ("distfold.cli.data:data", "Build and inspect training datasets."),
    "plugins": ("distfold.cli.plugins:plugins", "List installed components and plugin problems."),
    "models": ("distfold.cli.models:models", "List installed trained models (name, backbone, size, validation)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (target, _) in COMMANDS.items() if _available(target)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None or not _available(entry[0]):
            return None
        module_name, _, attr = entry[0].partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(target: str) -> bool:
    from importlib.util import find_spec

    return find_spec(target.partition(":")[0]) is not None


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="distfold")
def cli() -> None:
    """distfold: protein structure from sequence by way of a distance matrix.

    Components (backbones, distance heads, normalisers, reconstructors) come
    from plugins in the ``distfold.plugins`` entry-point group; see
    ``distfold plugins``.
    """


def main(argv: list[str] | None = None) -> None:
    from distfold.cli.common import run_cli

    run_cli(cli, argv)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
