"""Fixtures for the browser tests: JupyterLab from the kit's environment, headless Chromium.

The tests drive the notebooks the way a learner does: JupyterLab in a real browser, cells run
from the menu, widgets moved with the keyboard, plots watched as they change. They need a
Chromium on the machine (Debian: ``apt-get install chromium``); Playwright drives it through
``executable_path``, so nothing is downloaded at test time. Without a browser the tests are
skipped with one line saying so, except in CI (``CI=true``), where that is a failure.

``IOKIT_SCREENSHOTS=folder`` keeps the screenshots there (default: pytest's temporary folder);
``-m "not browser"`` leaves these tests out.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from iokit.app.check import find_chromium  # the one lookup; `iokit check` reports the same

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"

# Offline and quiet: no background traffic, no updates, no sync, no first-run screens.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HOW_TO_ENABLE = "install Chromium (apt-get install chromium) to run them"

_skipped: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium "
                            "(deselect with -m 'not browser')")


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must run the browser tests ({HOW_TO_ENABLE})", pytrace=False)
    message = f"browser tests skipped, {reason}: {HOW_TO_ENABLE}"
    _skipped.append(message)
    pytest.skip(message)


_outcomes: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if _skipped:  # one line, even without -rs
        terminalreporter.write_line(_skipped[0], yellow=True)
    elif _outcomes:  # one line that says these ran in a real browser, and how long they took
        terminalreporter.write_line(f"browser tests (JupyterLab in headless {_browser_name()}): "
                                    + "; ".join(_outcomes))


def _browser_name() -> str:
    path = find_chromium()
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or "Chromium"
    except (OSError, subprocess.SubprocessError, TypeError):
        return "Chromium"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        _skip_or_fail("no Chromium found")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip_or_fail("Playwright is not installed (pip install -e '.[dev]')")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """JupyterLab user settings: every cell in the page (no windowing), no news, no updates."""
    settings = {
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in settings.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


class Lab:
    """A running JupyterLab: its base URL, token and notebook folder."""

    def __init__(self, url: str, token: str, root: Path, log: Path):
        self.url, self.token, self.root, self.log = url, token, root, log

    def notebook_url(self, name: str) -> str:
        """The notebook alone in a workspace of its own, reset (no tabs left from other tests)."""
        workspace = name.removesuffix(".ipynb")
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def contents(self, name: str) -> dict:
        """The notebook as the server has it saved (REST contents API)."""
        return self.api(f"contents/{name}?content=1")["content"]

    def stop_kernels(self) -> None:
        """End every session and its kernel (frees the CPU for the next notebook)."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@pytest.fixture(scope="session")
def lab(chromium_path, tmp_path_factory):
    """JupyterLab from this environment on a free localhost port, with a random token.

    It serves a copy of ``notebooks/`` (so a run never rewrites the committed notebooks), keeps
    its config, runtime, data and settings in a temporary folder, and is always shut down.
    """
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _write_settings(tmp / "settings")
    env = dict(os.environ, IOKIT_SCALE="tiny", IOKIT_PROGRESS="0",
               JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",  # and offline:
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(f"{server.url}/api/status",
                                             headers={"Authorization": f"token {token}"})
                urllib.request.urlopen(req, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{server.log_tail()}", pytrace=False)
                time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def browser(chromium_path):
    """Headless Chromium (the system's, never a download), offline, with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # launch() gives every run a new temporary profile, removed on close.
        chromium = p.chromium.launch(executable_path=chromium_path, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and item.get_closest_marker("browser"):
        item.stash[_FAILED] = report.failed
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed (known bug)" if report.skipped else "xpassed"
        _outcomes.append(f"{item.name.split('[')[-1].rstrip(']')} {outcome} "
                         f"in {report.duration:.0f} s")
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser, lab, request, screenshots):
    """A new page in a new context; when the test fails, a screenshot of how it looked.

    Afterwards every kernel the page started is shut down."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
        if request.node.stash.get(_FAILED, False):
            path = screenshots / f"failed-{request.node.name}.png"
            page.screenshot(path=path)
            print(f"screenshot of the failure: {path}")
    finally:
        context.close()
        lab.stop_kernels()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where screenshots go: ``$IOKIT_SCREENSHOTS``, else a temporary folder."""
    folder = os.environ.get("IOKIT_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
