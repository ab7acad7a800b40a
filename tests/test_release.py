"""What a release carries: one version (core/_version.py) that the build, the package, the
changelog and ``distfold --version`` agree on; the default model's id; the licence files the
wheel and sdist include; type information. The built artefacts themselves are checked by .ci/run
(python -m build, twine check, a fresh venv outside the checkout)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def model_identity():
    """The pipeline's model_identity, wherever the pipeline keeps it."""
    for name in ("distfold.pipeline.predictor", "distfold.pipeline.predict"):
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            if hasattr(module, "model_identity"):
                return module.model_identity
    pytest.fail("no model_identity() in distfold.pipeline.predictor or distfold.pipeline.predict")


def test_version_is_defined_once_and_read_by_the_build():
    from distfold import __version__
    from distfold._version import __version__ as defined

    assert __version__ == defined
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", defined), defined
    project = pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "distfold._version.__version__"}


def test_changelog_has_this_version_and_the_previous_one():
    from distfold import __version__

    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert headings, "CHANGELOG.md has no '## [version] - date' sections"
    released = [(v, d) for v, d in headings if v != "Unreleased"]
    assert all(d for _, d in released), f"a released section without a date: {released}"
    if ".dev" in __version__:
        assert headings[0][0] == "Unreleased", "a .dev version's changes go under '## [Unreleased]' first"
        assert __version__.split(".dev")[0] not in [v for v, _ in released], "a .dev version of a released version"
    else:
        assert released[0][0] == __version__, f"CHANGELOG.md's newest release is {released[0][0]}, not {__version__}"
    assert len(released) >= 1


def test_version_option_prints_version_and_model_id_without_torch():
    """`distfold --version` in a fresh process: the version, the default model's id as every
    scores.json records it, and neither torch nor numpy imported."""
    from distfold import __version__
    from distfold.pipeline.model import default_model_path

    code = ("import sys, runpy\nsys.argv = ['distfold', '--version']\n"
            "try:\n    runpy.run_module('distfold', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('heavy:', sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    identity = model_identity()(default_model_path())
    assert proc.stdout.splitlines() == [
        f"distfold {__version__}",
        f"default model: {identity['name']} (sha256 {identity['sha256']})",
        "heavy: []",
    ]


def test_version_model_id_is_the_pipelines(tmp_path):
    """The id --version computes from the files equals the pipeline's model_identity, also for a
    model folder that is not there."""
    import distfold
    from distfold.cli.main import default_model_id
    from distfold.pipeline.model import default_model_path

    assert Path(distfold.__file__).resolve().parent / "default_model" == default_model_path()
    identity = model_identity()(default_model_path())
    assert default_model_id() == f"{identity['name']} (sha256 {identity['sha256']})"


def test_licence_files_are_there_and_declared():
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    files = project["license-files"]
    assert {"LICENSE", "NOTICE", "core/report/assets/LICENSE", "core/report/assets/3Dmol-min.js.LICENSE.txt"} <= set(files)
    for name in files:
        assert (ROOT / name).is_file(), name
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    notice = (ROOT / "NOTICE").read_text()
    version = (ROOT / "core" / "report" / "assets" / "VERSION").read_text().strip()
    assert f"3Dmol.js {version}" in notice, "NOTICE names another 3Dmol.js version than the vendored one"
    build = pyproject()["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+).*", r) and int(re.match(r"setuptools>=(\d+)", r)[1]) >= 77
               for r in build), "PEP 639 license fields need setuptools>=77"


def test_package_ships_type_information():
    assert (ROOT / "core" / "py.typed").is_file()
    assert "py.typed" in pyproject()["tool"]["setuptools"]["package-data"]["distfold"]
