"""An offline classroom: ``make wheelhouse`` collects the wheels, and a fresh environment installs
the kit from them with every index disabled, then ``iokit check`` passes.

The wheelhouse is built once for the session for the base dependencies only (``EXTRAS=``): the
full set (dev, bpe, dask) is about 190 MB and takes minutes to install, while the
recipe is the same. Building it needs PyPI; the install that follows runs with
``PIP_NO_INDEX=1``, pip's configuration files ignored (they may name other folders of wheels)
and a proxy that refuses every connection. About 1-2 minutes in all (longer
with a cold pip cache); leave it out with ``-m "not network"``.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.network


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def make(*args, env=None, timeout=600):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable: building a wheelhouse needs it once")
    folder = tmp_path_factory.mktemp("offline") / "wheelhouse"
    done = make("wheelhouse", f"WHEELHOUSE={folder}", "EXTRAS=", f"PYTHON={sys.executable}",
                f"VENV={folder.parent / 'no-venv'}")
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


def test_wheelhouse_holds_the_build_tools_and_not_the_kit(wheelhouse):
    names = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    assert {"setuptools", "pip", "numpy", "zstandard", "jupyterlab"} <= names
    assert "iokit" not in names  # the kit itself is installed from its folder


def test_a_fresh_environment_installs_offline_and_is_ready(wheelhouse, tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "IOKIT_"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_CONFIG_FILE=os.devnull,  # no find-links or index from pip's config files
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               IOKIT_DATA=str(tmp_path / "data"), IOKIT_SCALE="tiny")
    done = make("check", f"VENV={venv}", f"WHEELHOUSE={wheelhouse}", "EXTRAS=",
                f"PYTHON={sys.executable}", env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"installing offline: from the wheels in {wheelhouse}/ only" in out
    assert done.stdout.splitlines()[-1].startswith("ready"), out
    where = subprocess.run([venv / "bin" / "python", "-c", "import iokit; print(iokit.__file__)"],
                           capture_output=True, text=True, env=env, check=True).stdout
    assert Path(where.strip()).is_relative_to(ROOT)  # editable: the kit's own folder
