"""Faults from outside: the run is killed or stopped mid-way, or two runs share one output.

Each test runs the real command line (``python -m iokit shards --engine processes``) in a
subprocess on a corpus large enough to be caught mid-run, then checks what a user would see:

* ``kill -9`` of the main process: no worker process survives it (within a few seconds), a
  reader of its output sees the end of it, nothing half-written is visible in ``--out``, and
  the next run succeeds;
* SIGTERM (what ``timeout``, Slurm and Kubernetes send): one line on stderr, exit code 143
  (or 2, when a worker stopped by the same signal is reported first), no worker left, no
  staging folder left;
* a second run into the same ``--out`` while the first is running fails at once, naming the
  first run's process, and the first run completes untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iokit.atomic import LOCK_NAME
from iokit.engines import STAGING_PREFIX, pretokenize_pieces
from iokit.shards import open_shards
from iokit.split import plan_pieces
from iokit.storage import SimulatedStore
from iokit.tokenize import WordTokenizer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the process table from /proc")

WAIT_S = 120  # for the run to reach its workers (a loaded machine is slow)
GONE_S = 5  # for every worker to end once its parent is gone


@pytest.fixture(scope="module")
def big_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus six times over: a run of a few seconds, long enough to interrupt."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    path.write_bytes(tiny_corpus.read_bytes() * 6)
    return path


def _env(tmp: Path) -> dict:
    return {**os.environ, "IOKIT_PROGRESS": "0", "IOKIT_DATA": str(tmp / "data"),
            "TMPDIR": str(tmp)}


def _start(corpus: Path, out: Path, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "iokit", "shards", "--corpus", str(corpus), "--parts", "12",
         "--engine", "processes", "--workers", "2", "--vocab-size", "4000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp))


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _wait_for_workers(proc: subprocess.Popen, out: Path) -> list[int]:
    """Wait until the run has its worker processes and its staging folder."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        kids = [k for k in _children(proc.pid) if _state(k) not in (None, "Z")]
        if len(kids) >= 2 and any(out.glob(STAGING_PREFIX + "*")):
            time.sleep(0.3)  # let them get into their tasks
            return kids
        time.sleep(0.05)
    pytest.fail("the run did not reach its workers in time")


def _all_gone(pids: list[int], within: float = GONE_S) -> list[int]:
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in pids if _state(p) not in (None, "Z")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _visible(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) \
        if out.exists() else []


def _finish_cleanly(corpus: Path, out: Path, tmp: Path) -> None:
    again = _start(corpus, out, tmp)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    assert not list(out.glob(STAGING_PREFIX + "*")) and not (out / LOCK_NAME).exists()
    with open_shards(out, verify=True) as s:
        assert len(s.shards) == 12 and s.n_tokens > 0


def test_kill_9_of_the_main_process_leaves_no_worker_and_nothing_visible(big_corpus, tmp_path):
    out = tmp_path / "out"
    proc = _start(big_corpus, out, tmp_path)
    try:
        workers = _wait_for_workers(proc, out)
        proc.kill()
        proc.wait(timeout=10)
        assert _all_gone(workers) == [], "worker processes outlived their killed parent"
        proc.communicate(timeout=GONE_S)  # every writer of its pipes is gone: EOF
    finally:
        for p in _children(proc.pid):
            os.kill(p, signal.SIGKILL)
    assert _visible(out) == [], "a killed run left files in --out"
    _finish_cleanly(big_corpus, out, tmp_path)  # removes the staging the killed run left


def test_sigterm_exits_with_one_line_and_leaves_nothing(big_corpus, tmp_path):
    out = tmp_path / "out"
    proc = _start(big_corpus, out, tmp_path)
    workers = _wait_for_workers(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode in (143, 2), stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
    if proc.returncode == 143:
        assert "terminated (SIGTERM)" in stderr
    assert _all_gone(workers) == []
    assert not out.exists() or list(out.iterdir()) == [], "staging or files left behind"
    _finish_cleanly(big_corpus, out, tmp_path)


def test_a_second_run_into_the_same_output_is_refused_and_the_first_completes(big_corpus,
                                                                              tmp_path):
    out = tmp_path / "out"
    first = _start(big_corpus, out, tmp_path)
    _wait_for_workers(first, out)
    os.kill(first.pid, signal.SIGSTOP)  # the first run holds the lock for as long as it takes
    try:
        second = _start(big_corpus, out, tmp_path)
        _, err = second.communicate(timeout=60)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2 and err.count("\n") == 1, err
    assert f"process {first.pid}" in err and str(out) in err
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    with open_shards(out, verify=True) as s:
        assert len(s.shards) == 12
    assert not (out / LOCK_NAME).exists()


def test_more_workers_than_pieces_are_capped(tiny_corpus, tmp_path):
    tok = WordTokenizer.train(["a b c"], vocab_size=8)
    pieces = plan_pieces(tiny_corpus, 2)
    for engine in ("threads", "processes"):
        run = pretokenize_pieces(pieces, tok, tmp_path / engine, engine=engine, workers=10_000,
                                 progress=False)
        assert run.workers == 2 and len(run.bins) == 2


def test_the_cli_says_when_it_caps_the_workers(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a b c"}\n' * 10)
    r = subprocess.run([sys.executable, "-m", "iokit", "shards", "--corpus", str(corpus),
                        "--parts", "2", "--workers", "10000", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "10,000 workers asked for, 2 used" in r.stdout
    assert "Traceback" not in r.stderr


def test_simulated_store_state_files_are_removed(tmp_path):
    script = ("import gc, sys\n"
              "from iokit.storage import SimulatedStore\n"
              "keep = [SimulatedStore('object-store') for _ in range(3)]\n"
              "SimulatedStore('hdd'); gc.collect()\n"
              "if sys.argv[1] == 'fail':\n"
              "    raise RuntimeError('an error after making stores')\n")
    for how in ("ok", "fail"):
        r = subprocess.run([sys.executable, "-c", script, how], env=_env(tmp_path),
                           timeout=120, capture_output=True, text=True)
        assert r.returncode == (0 if how == "ok" else 1), r.stderr
        assert list(tmp_path.glob("iokit-simstore-*")) == []
    store = SimulatedStore("hdd")
    path = Path(store.state_file)
    assert path.exists()
    del store
    assert not path.exists()
