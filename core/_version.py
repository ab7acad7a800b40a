"""The version of distfold, defined here and nowhere else.

``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``), so the wheel's
metadata, :data:`distfold.__version__`, ``distfold --version`` and the
``distfold_version`` written into models and scores always agree. Between
releases it carries ``.devN`` (PEP 440), and the work since the last release is
listed under "Unreleased" in ``CHANGELOG.md``; cutting a release drops the
suffix and gives that section its version and date.
"""

__version__ = "0.2.0.dev0"
