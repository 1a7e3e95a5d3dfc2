"""Notebook 05's panel headless, and its exercise checks."""

import numpy as np
import pytest

from iokit.lab import exercises
from iokit.shards import write_shards

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(1)
    write_shards([rng.integers(0, 500, size=3000) for _ in range(20)], folder, vocab_size=500)
    return folder


def test_pipeline_panel_redraws_when_a_control_changes(shards):
    from iokit.lab.widgets import pipeline_panel

    panel = pipeline_panel(shards, storage="local", workers=2, prefetch=2, steps=8)
    panel.run()
    rows = [t.get_text() for t in panel.plot.ax.get_yticklabels()]
    assert rows == ["trainer", "loop", "worker-0", "worker-1"]
    assert "busy" in panel.status.value
    panel.controls["workers"].value = 0
    panel.controls["storage"].value = "hdd"
    panel.run()
    rows = [t.get_text() for t in panel.plot.ax.get_yticklabels()]
    assert rows == ["trainer", "loop"]
    run, model = panel.results[-1]
    assert run.steps == 8 and model.workers == 0
    assert "hdd" in panel.plot.ax.get_title()


def test_exercise_checks(capsys):
    assert exercises.naive_busy(0.2, 0.02, 0.005)
    assert not exercises.naive_busy(0.25, 0.02, 0.005)
    assert exercises.min_prefetch(4, 0.02, 0.005)
    assert not exercises.min_prefetch(3, 0.02, 0.005)
    assert exercises.loader_rate(400, 8, 0.02)
    assert exercises.cpu_bound_fix("c") and not exercises.cpu_bound_fix("a")
    assert "not quite" in capsys.readouterr().out
