"""CLI conventions: help of every command, version, exit codes, lazy imports."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from distfold.cli.main import COMMANDS, cli

from conftest import run_distfold


def _all_commands():
    """(path, command) for every command and sub-command."""
    out = []
    ctx = cli.make_context("distfold", ["--help"], resilient_parsing=True)

    def walk(group, prefix):
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            out.append((prefix + [name], cmd))
            if hasattr(cmd, "list_commands"):
                walk(cmd, prefix + [name])

    walk(cli, [])
    return out


def test_every_registered_command_exists():
    from importlib.util import find_spec

    missing = [n for n, (t, _) in COMMANDS.items() if find_spec(t.partition(":")[0]) is None]
    assert not missing, f"commands listed but not implemented: {missing}"


@pytest.mark.parametrize("path", [p for p, _ in _all_commands()], ids=lambda p: " ".join(p))
def test_help_of_every_command(path):
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output
    res = CliRunner().invoke(cli, [*path, "-h"])
    assert res.exit_code == 0


def test_version_and_module_entry():
    from distfold import __version__

    res = run_distfold("--version")
    assert res.returncode == 0 and __version__ in res.stdout


def test_unknown_command_is_usage_error():
    res = run_distfold("frobnicate")
    assert res.returncode == 2 and "No such command" in res.stderr


CHECK_NO_TORCH = (
    "import sys, runpy\n"
    "sys.argv = ['distfold', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('distfold', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
    "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
)


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"]])
def test_help_and_plugins_do_not_import_torch(args):
    res = subprocess.run([sys.executable, "-c", CHECK_NO_TORCH, *args], capture_output=True, text=True)
    assert "HEAVY=\n" in res.stderr, res.stderr


def test_hook_modules_import_nothing_heavy():
    code = ("import sys, importlib\n"
            "from importlib.metadata import entry_points\n"
            "for ep in entry_points(group='distfold.plugins'): ep.load()\n"
            "print(sorted(m for m in ('torch','transformers','peft') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_example_third_party_plugin_is_installed_and_listed():
    """.ci/run and the README test command pip-install tests/example_plugin."""
    res = run_distfold("plugins", "--json")
    data = json.loads(res.stdout)
    ours = [c for c in data["components"] if c["distribution"] == "distfold-example"]
    assert {c["name"] for c in ours} == {"example-spectral", "example-sqrt", "example-conv"}
    assert all(c["plugin"] == "example" and c["version"] == "0.0.1" for c in ours)
    assert [m["name"] for m in data["models"] if m["distribution"] == "distfold-example"] == ["example-conv-tiny"]
