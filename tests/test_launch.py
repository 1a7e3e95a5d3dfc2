"""`make lab`: the learner's own copy of the notebooks, and JupyterLab served as root and
without a display; a notebook run in the copy leaves the repository untouched."""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from iokit.app import launch

REPO = Path(__file__).resolve().parents[1]
# Machine-specific absolute paths that must not appear in a committed notebook's outputs.
MACHINE_PATH = re.compile(r"(?<![\w.])(/home/|/root/|/Users/|/tmp/|/work/|/var/folders/)\S*")


def _notebook(path: Path, text: str) -> None:
    path.write_text(json.dumps({"cells": [], "metadata": {"note": text}, "nbformat": 4,
                                "nbformat_minor": 5}))


def test_copy_is_made_once_and_never_overwritten(tmp_path):
    ref, mine = tmp_path / "notebooks", tmp_path / "mine"
    ref.mkdir()
    _notebook(ref / "00_a.ipynb", "reference")
    (ref / "sanitize.cfg").write_text("[x]\n")
    assert {p.name for p in launch.copy_notebooks(mine, ref)} == {"00_a.ipynb", "sanitize.cfg"}
    _notebook(mine / "00_a.ipynb", "the learner's work")
    _notebook(ref / "01_b.ipynb", "added later")
    assert [p.name for p in launch.copy_notebooks(mine, ref)] == ["01_b.ipynb"]
    assert "the learner's work" in (mine / "00_a.ipynb").read_text()
    assert launch.copy_notebooks(mine, ref) == []


def test_flags_for_root_and_no_display(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cmd = launch.lab_command("mine", ["--port", "9999"])
    assert cmd[-4:] == ["--allow-root", "--no-browser", "--port", "9999"]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("DISPLAY", ":0")
    assert "--allow-root" not in launch.lab_command("mine")
    assert "--no-browser" not in launch.lab_command("mine")
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "--no-browser" not in launch.lab_command("mine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int | None:
    req = urllib.request.Request(url)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_serves_a_page(tmp_path):
    """The command `make lab` runs (read from `make -n`), as whoever runs the tests (root
    here in containers), on a free port: JupyterLab answers, then it is stopped."""
    port = _free_port()
    into = tmp_path / "mine"
    args = f"--port {port} --ServerApp.port_retries=0 --IdentityProvider.token=iokit-test"
    dry = subprocess.run(["make", "-n", "--no-print-directory", "lab", f"LAB_DIR={into}",
                          f"LAB_ARGS={args}"], cwd=REPO, capture_output=True, text=True,
                         check=True)  # (under `make test` too, where make would say more)
    (line,) = [s for s in dry.stdout.splitlines() if "iokit.app.launch" in s]
    assert f"--port {port}" in line
    proc = subprocess.Popen(shlex.split(line), cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DISPLAY": "", "WAYLAND_DISPLAY": ""})
    try:
        deadline, codes = time.monotonic() + 120, {}
        while time.monotonic() < deadline and proc.poll() is None:
            codes = {path: _status(f"http://127.0.0.1:{port}{path}")
                     for path in ("/api", "/lab?token=iokit-test")}
            if codes["/api"] == 200:
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"JupyterLab exited: {proc.stdout.read()[-2000:]}"
        assert codes["/api"] == 200
        assert codes["/lab?token=iokit-test"] in (200, 302)
        assert (into / "00_setup.ipynb").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = proc.stdout.read()
    if os.geteuid() == 0:
        assert "Running as root is not recommended" not in out


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_running_the_learner_copy_leaves_git_clean():
    """A notebook executed in the learner's folder (ignored by git) finds the kit's data and
    changes nothing git tracks."""
    folder = REPO / launch.LEARNER_FOLDER
    made_parent = not folder.exists()
    into = folder / f".test-{os.getpid()}"
    before = _git_status()
    try:
        launch.copy_notebooks(into)
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                        "--execute", "--inplace", "00_setup.ipynb"], cwd=into, check=True,
                       capture_output=True, env={**os.environ, "IOKIT_SCALE": "tiny",
                                                 "IOKIT_PROGRESS": "0"})
        ran = json.loads((into / "00_setup.ipynb").read_text())
        assert any(c.get("outputs") for c in ran["cells"])
        assert _git_status() == before
    finally:
        shutil.rmtree(folder if made_parent else into, ignore_errors=True)


def test_committed_outputs_show_no_machine_paths():
    found = []
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for i, cell in enumerate(cells):
            for out in cell.get("outputs", []):
                texts = ["".join(out.get("text", "")), "\n".join(out.get("traceback", []))]
                texts += ["".join(v) if isinstance(v, list) else v
                          for k, v in out.get("data", {}).items() if k.startswith("text/")]
                for m in MACHINE_PATH.finditer("\n".join(texts)):
                    found.append(f"{nb.name} cell {i}: {m.group(0)[:80]}")
    assert not found, "absolute machine paths in committed outputs:\n" + "\n".join(found)


def test_the_chinese_edition_is_copied_beside_the_english(tmp_path):
    ref, mine = tmp_path / "notebooks", tmp_path / "mine"
    (ref / "zh").mkdir(parents=True)
    _notebook(ref / "00_a.ipynb", "English")
    _notebook(ref / "zh" / "00_a.ipynb", "中文")
    copied = launch.copy_notebooks(mine, ref)
    assert sorted(p.relative_to(mine).as_posix() for p in copied) == ["00_a.ipynb", "zh/00_a.ipynb"]
    assert json.loads((mine / "zh" / "00_a.ipynb").read_text())["metadata"]["note"] == "中文"
    assert launch.copy_notebooks(mine, ref) == []
