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
    assert panel.plot.data(label)[0] == [1, 2]  # the processes line stays, to compare with
    xs, _ = panel.plot.data("threads, 8 docs per task")
    assert xs == [1, 2, 3]
    assert [p.workers for p in panel.results] == [2, 3]
    assert "threads, 8 docs per task: best" in panel.status.value
    assert "fitted serial fraction" in panel.status.value
    fits = sorted(n for n in panel.plot.lines if n.startswith("Amdahl fit"))
    assert [f.split(")")[0] for f in fits] == ["Amdahl fit (processes", "Amdahl fit (threads"]
    legend = [t.get_text() for t in panel.plot.ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(panel.plot.lines)

    panel.controls["workers"].value = (1, 2)  # threads again: replaces only the threads line
    panel.controls["chunk"].value = 4
    panel.run()
    assert "threads, 8 docs per task" not in panel.plot.lines
    assert {"processes, 4 docs per task", "threads, 4 docs per task"} <= set(panel.plot.lines)
    assert len([n for n in panel.plot.lines if n.startswith("Amdahl fit")]) == 2
    legend = [t.get_text() for t in panel.plot.ax.get_legend().get_texts()]
    assert "threads, 8 docs per task" not in legend
    assert panel.plot.data("ideal")[0] == [1, 2]


def test_parallel_panel_worker_ticks_are_whole_numbers(tiny_corpus):
    spans = corpus_sample(tiny_corpus, 50_000)
    panel = parallel_panel(tiny_corpus, spans, max_workers=4, workers=(1, 3), chunk_size=4,
                           repeat=1)
    panel.run()
    panel.plot.fig.canvas.draw()
    ticks = [t for t in panel.plot.ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_parallel_panel_status_is_renewed_every_run(tiny_corpus):
    spans = corpus_sample(tiny_corpus, 50_000)
    panel = parallel_panel(tiny_corpus, spans, max_workers=4, workers=(1, 2), chunk_size=4,
                           repeat=1)
    panel.run()
    assert "processes, 4 docs per task: best" in panel.status.value
    panel.controls["workers"].value = (1, 1)  # nothing to measure: the status says so
    panel.run()
    assert "nothing to compare" in panel.status.value and "best" not in panel.status.value
    seen = []
    panel.run_fn = lambda p: seen.append(p.status.value)
    panel.run()
    assert seen == ["running…"]  # cleared before the run starts


def test_parallel_panel_accepts_any_chunk_size(tiny_corpus):
    spans = corpus_sample(tiny_corpus, 20_000)
    panel = parallel_panel(tiny_corpus, spans, chunk_size=217)
    assert panel.value("chunk") == 217
