"""Exceptions that carry a one-line message meant for the user.

The CLI turns :class:`DistfoldError` into ``Error: <message>`` and exit code 1,
and :class:`UsageError` into exit code 2. Anything else is a bug.
"""


class DistfoldError(Exception):
    """A runtime failure the user can act on (bad file, missing checkpoint, ...)."""


class InputError(DistfoldError, ValueError):
    """An input (file, matrix, sequence) is malformed; the message names it."""


class UsageError(DistfoldError):
    """The command line asked for something that does not exist (exit code 2)."""


class UnknownComponentError(UsageError, KeyError):
    """A component name that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ComponentConflictError(DistfoldError):
    """Two or more plugins provide a component under the same name."""


class PluginLoadError(DistfoldError):
    """A plugin failed to import or its hook raised (only fatal in strict mode)."""


def message(exc: BaseException) -> str:
    """The one-line message a user sees for ``exc`` (the one place that says how).

    DistfoldError: its own text. MemoryError: out of memory. OSError: the file
    and the cause (``no space left on device while writing X``). Anything else:
    ``TypeName: first line``.
    """
    import errno

    if isinstance(exc, DistfoldError):
        return _first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return (f"out of memory ({type(exc).__name__}); try a shorter sequence, or --device cpu "
                "for more memory")
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else None
        if exc.errno == errno.ENOSPC:
            return f"no space left on device while writing {where}" if where else "no space left on device"
        cause = exc.strerror or _first_line(str(exc)) or type(exc).__name__
        return f"{where}: {cause.lower() if cause[:1].isupper() and cause[1:2].islower() else cause}" if where \
            else cause
    text = _first_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""
