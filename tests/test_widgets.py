"""The live panels work headless: a control changed, a run made, the plotted data changed."""

import pytest

pytest.importorskip("ipywidgets")

from iokit.widgets import SWEEP_STORAGES, chunk_sweep_panel  # noqa: E402


def test_chunk_sweep_panel_replots_when_the_range_changes(tiny_corpus):
    panel = chunk_sweep_panel(tiny_corpus, lo=1, hi=64)
    panel.run()
    label = "local disk, warm cache"
    xs, ys = panel.plot.data(label)
    assert xs == [1, 2, 4, 8, 16, 32, 64] and all(y > 0 for y in ys)
    assert f"model fit: {label}" in panel.plot.lines

    panel.controls["chunks"].value = (1024, 4096)
    panel.run()
    xs2, _ = panel.plot.data(label)
    assert xs2 == pytest.approx([1024, 2048, 4096], rel=0.01)  # the last read may be short
    assert "fitted" in panel.status.value


def test_chunk_sweep_panel_on_a_simulated_store(tiny_corpus):
    panel = chunk_sweep_panel(tiny_corpus, lo=1 << 16, hi=1 << 17)
    panel.controls["storage"].value = "simulated hdd"
    panel.run()
    assert len(panel.plot.data("simulated hdd")[0]) == 2
    assert "(simulated storage)" in panel.status.value
    assert set(SWEEP_STORAGES) >= {"local disk, cold cache", "simulated object-store"}
