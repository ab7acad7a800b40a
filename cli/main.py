"""Entry point of the ``distfold`` command.

Sub-commands live one per module in this folder and are imported only when
invoked, so ``distfold --help`` and ``distfold --version`` load no plugin and
no torch.
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


def default_model_id() -> str:
    """``<folder name> (sha256 <first 16 hex digits>)`` of the shipped default model.

    The same digest as ``model_identity()`` of the pipeline (over the model's
    ``*.json`` and ``*.safetensors`` files, ``metrics.jsonl`` aside, in sorted
    path order), computed here from the files so that ``--version`` imports
    neither torch nor numpy; ``tests/test_release.py`` checks the two agree.
    """
    import hashlib
    from pathlib import Path

    import distfold

    model_dir = Path(distfold.__file__).resolve().parent / "default_model"
    if not (model_dir / "config.json").is_file():
        return "not installed"
    h = hashlib.sha256()
    for f in sorted(model_dir.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".json") and f.name != "metrics.jsonl":
            h.update(f.relative_to(model_dir).as_posix().encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return f"{model_dir.name} (sha256 {h.hexdigest()[:16]})"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"distfold {__version__}")
    click.echo(f"default model: {default_model_id()}")
    ctx.exit()


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and the default model's id (folder name and SHA-256 prefix), then exit.")
def cli() -> None:
    """distfold: protein structure from sequence by way of a distance matrix.

    Components (backbones, distance heads, normalisers, reconstructors) come
    from plugins in the ``distfold.plugins`` entry-point group; see
    ``distfold plugins``.
    """


def main(argv: list[str] | None = None) -> None:
    import gc

    from distfold.cli.common import run_cli

    try:
        run_cli(cli, argv)
    finally:
        # the process ends here: the interpreter's last garbage collection need not walk what it
        # holds (torch's objects: about 0.8 s of a predict or evaluate), freed with the process
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
