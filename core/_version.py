"""The version of distfold, defined here and nowhere else.

``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``), so the wheel's
metadata, :data:`distfold.__version__`, ``distfold --version`` and the
``distfold_version`` written into models and scores always agree. Change it
when a release is cut, together with its section in ``CHANGELOG.md`` (work
since the last release is listed there under "Unreleased").
"""

__version__ = "0.1.0"
