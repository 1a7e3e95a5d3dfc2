"""The notebook-times script: runs a copy (never the committed file), reads cell times, and
writes the README's time column."""

import hashlib

import pytest

from iokit.app import timings
from iokit.errors import ParameterError


def test_cell_seconds_from_the_runners_metadata():
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}},
        {"cell_type": "code", "metadata": {"execution": {
            "iopub.execute_input": "2026-01-01T10:00:00.000Z",
            "shell.execute_reply": "2026-01-01T10:00:01.500Z"}}},
        {"cell_type": "code", "metadata": {"execution": {
            "iopub.execute_input": "2026-01-01T10:00:02Z",
            "shell.execute_reply": "2026-01-01T10:00:12Z"}}},
        {"cell_type": "code", "metadata": {}},
    ]}
    assert timings.cell_seconds(nb) == [(2, 10.0), (1, 1.5)]


def test_readme_rows_get_their_time(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "| notebook | what you do | time |\n|---|---|---|\n"
        "| [00 · Set-up](notebooks/00_setup.ipynb) | check | ~1 min |\n"
        "| [04 · Parallel](notebooks/04_parallel_io.ipynb) | a | b | ~3 min |\n"
        "not a row: notebooks/04_parallel_io.ipynb | ~3 min |\n", encoding="utf-8")
    times = [timings.NotebookTime("04_parallel_io.ipynb", 200.0),
             timings.NotebookTime("00_setup.ipynb", 20.0),
             timings.NotebookTime("01_naive_loop.ipynb", 99.0, error="failed")]
    assert timings.update_readme(times, readme) == 2
    lines = readme.read_text(encoding="utf-8").splitlines()
    assert lines[2].endswith("| check | <1 min |")
    assert lines[3].endswith("| a | b | ~3 min |") and "~3 min" in lines[4]


def test_minutes():
    assert [timings.minutes(s) for s in (10, 50, 100, 200, 404)] == \
        ["<1 min", "~1 min", "~2 min", "~3 min", "~7 min"]


def test_unknown_notebook_is_the_kits_error():
    with pytest.raises(ParameterError, match="no notebook starts with 99"):
        timings.pick_notebooks(["99"])
    assert [p.name[:2] for p in timings.pick_notebooks(["00", "06"])] == ["00", "06"]


def test_a_notebook_runs_on_a_copy(capsys):
    (path,) = timings.pick_notebooks(["00"])
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    t = timings.time_notebook(path, "tiny")
    assert t.error == "" and t.seconds > 0 and t.cells
    assert all(isinstance(i, int) and s >= 0 for i, s in t.cells)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the committed file
    assert "00_setup.ipynb" in str(t) and "slowest: cell" in str(t)
