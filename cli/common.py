"""Helpers shared by the command modules: errors, component names, output."""

from __future__ import annotations

import sys
from typing import Any

import click

from distfold.errors import DistfoldError, UsageError, message


#: Exceptions that are the user's situation, not a bug: one line, no traceback.
USER_ERRORS = (DistfoldError, OSError, MemoryError, OverflowError)


def click_error(exc: BaseException) -> click.ClickException:
    """The one place an exception becomes what the user sees: a one-line message
    (:func:`distfold.errors.message`) with exit code 2 for usage errors, 1 otherwise."""
    if isinstance(exc, UsageError):
        return click.UsageError(message(exc))
    return click.ClickException(message(exc))


def run_cli(cli: click.Group, argv: list[str] | None = None) -> None:
    """Run the group, turning user errors into one line and an exit code."""
    try:
        rv = cli.main(args=argv, prog_name="distfold", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except USER_ERRORS as exc:  # raised outside a command body (e.g. while parsing options)
        err = click_error(exc)
        click.echo(f"Error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
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


def wrap_errors(func):
    """Decorator for command bodies: user errors become :func:`click_error` (one line, exit 1; usage: 2)."""
    import functools

    @functools.wraps(func)
    def inner(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            raise click_error(exc) from None

    return inner


def echo_json(obj: Any) -> None:
    """``--json`` output on stdout (:func:`distfold.serialise.dumps`: numpy values plain, NaN as null)."""
    from distfold.serialise import dumps

    click.echo(dumps(obj))


def log(message: str, quiet: bool = False) -> None:
    """A progress/log line on stderr (suppressed under --json)."""
    if not quiet:
        click.echo(message, err=True)
