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
