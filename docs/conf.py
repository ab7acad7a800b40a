"""Sphinx configuration of distfold's documentation.

Build (the ``docs`` extra: ``pip install -e ".[docs]"``), warnings as errors as CI does::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

then open ``docs/_build/html/index.html``. Prose pages are Markdown (MyST, like
README.md and CHANGELOG.md); the API and CLI references are generated from the
installed package's docstrings (autodoc, napoleon) and click commands
(sphinx-click), so they follow the code.
"""

from __future__ import annotations

import distfold

project = "distfold"
author = "the distfold authors"
copyright = "2026, the distfold authors"
release = distfold.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
# Slugs for Markdown headings, so pages can link to a section as page.md#heading.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# autodoc: members in source order, type hints in the description (the kernel's
# annotations are strings under `from __future__ import annotations`).
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_title = f"distfold {release}"
html_theme_options = {
    "description": "Protein structure from sequence by way of a distance matrix",
    "fixed_sidebar": True,
    "page_width": "1160px",  # the console output of the tutorial is up to 110 columns wide
    "show_relbars": True,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_show_sourcelink = False


# -- sphinx-click: click help is plain text, as `--help` prints it ---------------------------------
# sphinx-click parses it as reStructuredText, where `|i-j|` is a substitution and `*` starts
# emphasis. Escape those in the help lines (not in the directives and field lists that
# sphinx-click itself writes, nor the `| ` prefix of the line blocks it makes from click's `\b`);
# backquotes stay markup, so ``literal`` in a help text renders as code.
import re  # noqa: E402

_INLINE_MARKUP = re.compile(r"([\\*|_])")


def _escape_help_line(line: str) -> str:
    text = line.lstrip()
    if text.startswith((".. ", ":default:", ":options:")):
        return line
    indent = line[: len(line) - len(text)]
    prefix = ""
    if text.startswith("| "):
        prefix, text = "| ", text[2:]
    return indent + prefix + _INLINE_MARKUP.sub(r"\\\1", text)


def _escape_help(app, ctx, lines: list[str]) -> None:
    lines[:] = [_escape_help_line(line) for line in lines]


# -- autodoc: the house docstring conventions ----------------------------------------------------
# distfold's docstrings list fields as ``name: description`` lines, continued by indented lines
# (``coords: (L, 3) float64, Å.``), and write separations as |i-j|. In reStructuredText the first
# is an "unexpected indentation" and the second a substitution reference; read them as a field
# list and as text. Inline literals and literal blocks are left alone.
_FIELD_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:, [A-Za-z_][A-Za-z0-9_]*)*): (\S.*)$")
_BARS = re.compile(r"(?<![\\|])\|(?=[^\s|])([^|`]*?[^\s|\\])\|(?!\|)")


def _fields_as_field_list(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "" or lines[i][:1].isspace() or (out and out[-1].strip()):
            out.append(lines[i])
            i += 1
            continue
        j = i  # a paragraph starts at i: is it made of field lines and their continuations only?
        while j < len(lines) and lines[j].strip():
            j += 1
        para = lines[i:j]
        fields = [k for k, line in enumerate(para) if _FIELD_LINE.match(line)]
        if fields and fields[0] == 0 and all(k in fields or para[k][:1].isspace() for k in range(len(para))) \
                and (len(fields) > 1 or len(para) > 1):
            out.extend(_FIELD_LINE.sub(r":\1: \2", line) if k in fields else line for k, line in enumerate(para))
        else:
            out.extend(para)
        i = j
    return out


def _escape_bars(line: str) -> str:
    parts = line.split("``")
    for k in range(0, len(parts), 2):  # even parts are outside inline literals
        parts[k] = _BARS.sub(r"\\|\1\\|", parts[k])
    return "``".join(parts)


def _house_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    literal_indent = None  # inside a literal block (after a line ending in ::), its parent's indent
    out = []
    for line in _fields_as_field_list(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and (not line.strip() or indent > literal_indent):
            out.append(line)
            continue
        literal_indent = indent if line.rstrip().endswith("::") else None
        out.append(_escape_bars(line))
    lines[:] = out


def setup(app):
    for event in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{event}", _escape_help)
    app.connect("autodoc-process-docstring", _house_docstring)
