"""Figure labels: bar labels in the axis's unit, codec labels that do not overlap."""

from types import SimpleNamespace

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from iokit.lab import plots  # noqa: E402


def _codec(name, ratio, speed):
    return SimpleNamespace(name=name, ratio=ratio, compress_mb_s=speed, decompress_mb_s=speed)


def test_epoch_bar_labels_are_in_seconds_like_the_axis():
    runs = [SimpleNamespace(name="text", seconds=10_200.0, stage_seconds={"read": 200.0,
                                                                         "tokenize": 9_900.0}),
            SimpleNamespace(name="shards", seconds=0.0123, stage_seconds={"read": 0.01})]
    ax = plots.epoch_breakdown(runs)
    labels = [t.get_text().strip() for t in ax.texts]
    assert labels == ["10,200 s", "0.0123 s"]
    assert "second" in ax.get_xlabel()
    plt.close(ax.figure)


@pytest.mark.parametrize("speed", ["compress_mb_s", "decompress_mb_s"])
def test_codec_labels_do_not_overlap(speed):
    # Codecs of nearly the same ratio and speed: labels at one fixed offset would collide.
    text = [_codec(f"zstd:{k}", 2.80 + 0.01 * k, 160 + 4 * k) for k in range(1, 6)]
    text += [_codec("zlib:6", 2.69, 17), _codec("zlib:9", 2.71, 16), _codec("none", 1.0, 3000)]
    ids = [_codec(r.name, r.ratio - 1.1, r.compress_mb_s * 1.05) for r in text]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    plots.codec_pareto({"text": text, "token IDs": ids}, ax, speed=speed)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == len(text) + len(ids)
    clashes = [(ax.texts[i].get_text(), ax.texts[j].get_text())
               for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert clashes == []
    plt.close(fig)


def test_seconds_label():
    assert plots.seconds_label(0.00123) == "0.00123 s"
    assert plots.seconds_label(4.567) == "4.57 s"
    assert plots.seconds_label(10_240.0) == "10,240 s"
