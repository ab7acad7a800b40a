"""Helpers the benchmark scripts share: a script run as a child process that reports one
JSON line, and an importable ``distfold`` as it was at a git revision.

Used as ``from benchlib import run_json, package_at`` by scripts run as
``python benchmarks/NAME.py`` (their folder is first on ``sys.path``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_json(cmd: list[str], what: str, env: dict[str, str] | None = None) -> Any:
    """Run ``cmd`` (offline for Hugging Face), return the JSON value on the last line of its
    stdout; exit naming ``what`` with the end of its stderr when it fails."""
    env = {**(os.environ if env is None else env), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{what} failed:\n{r.stderr[-3000:]}")
    lines = r.stdout.strip().splitlines()
    if not lines:
        sys.exit(f"{what} printed nothing on stdout:\n{r.stderr[-3000:]}")
    return json.loads(lines[-1])


def package_at(rev: str, tmp: Path) -> dict[str, str]:
    """Environment in which ``distfold`` (and ``python -m distfold``) imports the code of git
    revision ``rev``, extracted under ``tmp`` (core/ -> distfold, cli/ -> distfold/cli,
    plugins/ -> distfold/plugins) and first on PYTHONPATH; checked by importing it. Entry
    points still come from the installed metadata, so plugins resolve to the same module
    names, which now import from the extracted tree."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "core", "cli", "plugins"],
                             capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    src = tmp / f"src_{rev}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(src, filter="data")
    pkg = tmp / f"pkg_{rev}"
    pkg.mkdir()
    (src / "core").rename(pkg / "distfold")
    (src / "cli").rename(pkg / "distfold" / "cli")
    (src / "plugins").rename(pkg / "distfold" / "plugins")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(pkg), os.environ.get("PYTHONPATH")])))
    probe = subprocess.run([sys.executable, "-c", "import distfold.cli.predict as m; print(m.__file__)"],
                           capture_output=True, text=True, env=env)
    if not probe.stdout.strip().startswith(str(pkg)):
        raise SystemExit(f"--rev {rev}: the extracted package is not what imports ({probe.stdout or probe.stderr})")
    return env
