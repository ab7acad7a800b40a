import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
DATA = TESTS / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


def make_fake_plugin(root: Path, dist: str, ep_name: str, module: str, source: str) -> Path:
    """A plugin 'installed' by a fake .dist-info on a path we put on PYTHONPATH."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[distfold.plugins]\n{ep_name} = {module}\n")
    return root


def run_distfold(*args: str, env: dict | None = None, pythonpath: Path | None = None, input: str | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m distfold ARGS`` in a fresh process, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "distfold", *args], capture_output=True, text=True,
                          env=full_env, input=input, timeout=timeout)


@pytest.fixture
def fake_plugin(tmp_path):
    def make(dist: str, ep_name: str, module: str, source: str) -> Path:
        return make_fake_plugin(tmp_path / "site", dist, ep_name, module, source)

    return make


@pytest.fixture(scope="module")
def one_blas_thread():
    """Thin (L, L) x (L, 4) products gain nothing from BLAS threads, and on a
    shared, loaded machine OpenBLAS's spinning threads slow them a hundredfold.
    Use with ``pytestmark = pytest.mark.usefixtures("one_blas_thread")``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield
