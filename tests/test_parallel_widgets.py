"""Notebook 04's panel works headless: controls changed, a run made, the plotted data changed."""

import pytest

pytest.importorskip("ipywidgets")

from iokit.lab.scaling import corpus_sample  # noqa: E402
from iokit.lab.widgets import parallel_panel  # noqa: E402


def test_parallel_panel_plots_speedups_and_fits_amdahl(tiny_corpus):
    spans = corpus_sample(tiny_corpus, 100_000)
    panel = parallel_panel(tiny_corpus, spans, max_workers=4, workers=(1, 2), chunk_size=4,
                           repeat=1)
    panel.run()
    label = "processes, 4 docs per task"
    xs, ys = panel.plot.data(label)
    assert xs == [1, 2] and ys[0] == 1.0 and ys[1] > 0
    assert 0.0 <= panel.serial_fraction <= 1.0
    assert any(name.startswith("Amdahl fit") for name in panel.plot.lines)

    panel.controls["kind"].value = "threads"
    panel.controls["workers"].value = (1, 3)
    panel.controls["chunk"].value = 8
    panel.run()
    assert label not in panel.plot.lines  # the old curve is gone
    xs, _ = panel.plot.data("threads, 8 docs per task")
    assert xs == [1, 2, 3]
    assert [p.workers for p in panel.results] == [2, 3]
    assert "fitted serial fraction" in panel.status.value


def test_parallel_panel_accepts_any_chunk_size(tiny_corpus):
    spans = corpus_sample(tiny_corpus, 20_000)
    panel = parallel_panel(tiny_corpus, spans, chunk_size=217)
    assert panel.value("chunk") == 217
