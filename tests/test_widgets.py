"""The live panels work headless: a control changed, a run made, the plotted data changed."""

import pytest

pytest.importorskip("ipywidgets")

from iokit.lab.widgets import SWEEP_STORAGES, chunk_sweep_panel  # noqa: E402


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


def test_break_even_panel_measures_at_the_chosen_bandwidth(tmp_path):
    from iokit.lab.compression import profile_codecs, write_codec_files
    from iokit.lab.widgets import break_even_panel

    data = b"".join(b"block %d of some compressible text, repeated words. " % (i % 50)
                    for i in range(4000))
    paths = write_codec_files(tmp_path, data, ["none", "zstd:3"], block_bytes=65536)
    panel = break_even_panel(paths, profile_codecs(paths, repeat=1))
    panel.controls["bandwidth"].value = 20
    panel.run()
    xs, ys = panel.plot.data("zstd:3")
    assert xs == pytest.approx([20]) and ys[0] > 0
    assert panel.comparison.predicted_winner == "zstd:3" == panel.comparison.measured_winner
    panel.controls["bandwidth"].value = 50
    panel.run()
    assert panel.plot.data("none")[0] == pytest.approx([20, 50])
    panel.controls["storage"].value = "hdd"
    panel.run()
    assert panel.plot.data("none")[0] == pytest.approx([160])  # new latency: points restart
    assert "hdd" in panel.status.value and "measured winner" in panel.status.value
