"""Helpers shared by the command modules: errors, component names, output."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from distfold.errors import DistfoldError, UsageError


def run_cli(cli: click.Group, argv: list[str] | None = None) -> None:
    """Run the group, turning user errors into one line and an exit code."""
    try:
        rv = cli.main(args=argv, prog_name="distfold", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except DistfoldError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


class ComponentName(click.ParamType):
    """A component name of one kind; unknown names are a usage error (exit 2)."""

    name = "component"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from distfold.errors import ComponentConflictError, UnknownComponentError
        from distfold.registry import get_registry

        value = str(value).strip().lower()
        try:
            get_registry().get(self.kind, value)
        except UnknownComponentError as exc:
            self.fail(str(exc), param, ctx)
        except ComponentConflictError as exc:
            raise click.ClickException(str(exc)) from None
        return value

    def shell_complete(self, ctx, param, incomplete):  # pragma: no cover - shell only
        from click.shell_completion import CompletionItem

        from distfold.registry import get_registry

        return [CompletionItem(n) for n in get_registry().names(self.kind) if n.startswith(incomplete)]


def fail(message: str) -> None:
    """Abort the command with ``Error: message`` and exit code 1."""
    raise click.ClickException(message)


def wrap_errors(func):
    """Decorator: DistfoldError -> ClickException (one line, exit 1; usage -> 2)."""
    import functools

    @functools.wraps(func)
    def inner(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            raise click.UsageError(str(exc)) from None
        except DistfoldError as exc:
            raise click.ClickException(str(exc)) from None

    return inner


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=_default))


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def log(message: str, quiet: bool = False) -> None:
    """A progress/log line on stderr (suppressed under --json)."""
    if not quiet:
        click.echo(message, err=True)
