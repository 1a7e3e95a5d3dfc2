"""Notebook 02's library parts: cost models, epochs, sampling rates, the panel, tour and bench."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from iokit.corpus import iter_documents
from iokit.costs import (
    EpochCostModel,
    SamplingCostModel,
    fit_sampling_model,
    shard_bytes,
    token_itemsize,
)
from iokit.lab import exercises
from iokit.lab.epochs import copy_rate, raw_epoch, sampling_rate, shard_epoch
from iokit.shards import open_shards, pretokenize
from iokit.tokenize import WordTokenizer


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, tiny_corpus):
    src = tiny_corpus
    path = tmp_path_factory.mktemp("c") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for d in itertools.islice(iter_documents(src), 60):
            f.write(json.dumps({"id": d.id, "text": d.text}) + "\n")
    return path


@pytest.fixture(scope="module")
def shards(small_corpus, tmp_path_factory):
    tok = WordTokenizer.train(d.text for d in iter_documents(small_corpus))
    folder = tmp_path_factory.mktemp("s")
    pretokenize(small_corpus, tok, folder, max_shard_bytes=20_000)
    return tok, folder


def test_epoch_cost_model():
    m = EpochCostModel(preprocess_s=10.0, raw_epoch_s=8.0, shard_epoch_s=0.5)
    assert m.break_even == pytest.approx(10 / 7.5)
    assert m.epochs_to_pay == 2
    assert m.on_the_fly(2) == pytest.approx(16.0)
    assert m.pretokenized(2) == pytest.approx(11.0)
    assert EpochCostModel(1.0, 1.0, 1.0).break_even == float("inf")


def test_disk_size_model():
    assert token_itemsize(65_536) == 2 and token_itemsize(65_537) == 4
    assert shard_bytes(1_000, 50_257) == 2_000
    assert shard_bytes(1_000, 128_000) == 4_000


def test_sampling_model_fit_recovers_parameters():
    true = SamplingCostModel(call_s=5e-6, window_s=0.4e-6, bandwidth=2e9)
    b = np.array([1, 4, 16, 64, 1, 4, 16, 64, 256])
    t = np.array([16, 16, 64, 64, 1024, 1024, 4096, 256, 512])
    fit = fit_sampling_model(b, t, true.seconds(b, t))
    assert fit.call_s == pytest.approx(true.call_s, rel=1e-6)
    assert fit.window_s == pytest.approx(true.window_s, rel=1e-6)
    assert fit.bandwidth == pytest.approx(true.bandwidth, rel=1e-6)


def test_epochs_deliver_the_same_tokens(small_corpus, shards):
    tok, folder = shards
    raw = raw_epoch(small_corpus, tok)
    pre = shard_epoch(folder, small_corpus.stat().st_size)
    assert raw.tokens == pre.tokens == open_shards(folder).n_tokens
    assert set(raw.stage_seconds) == {"read", "tokenize"}


def test_sampling_rate_warm_and_cold(shards):
    _, folder = shards
    warm = sampling_rate(folder, 4, 32, batches=3, repeat=2)
    cold = sampling_rate(folder, 4, 32, batches=3, repeat=2, cold=True)
    assert warm.tokens_per_batch == 128 and warm.bytes_per_batch == 4 * 33 * 2
    assert warm.tokens_per_s > 0 and cold.tokens_per_s > 0
    if cold.resident_before is not None:  # Linux: the drop really happened
        assert cold.resident_before == 0.0
    assert copy_rate(1000, repeat=2, number=2).nbytes == 2000


def test_exercise_checks(capsys):
    assert exercises.token_dtype("uint16", 50_257)
    assert exercises.token_dtype(np.uint32, 100_000)
    assert not exercises.token_dtype("uint16", 70_000)
    assert exercises.corpus_disk_bytes(2_000_000, 10**6, 32_000)
    assert exercises.break_even_epochs(10 / 7.5, EpochCostModel(10.0, 8.0, 0.5))
    assert exercises.one_token_at_a_time("B")
    assert not exercises.one_token_at_a_time("a")
    assert "not quite" in capsys.readouterr().out


def test_sampling_panel_plots_what_it_measured(shards):
    pytest.importorskip("ipywidgets")
    from iokit.lab.widgets import sampling_panel

    _, folder = shards
    model = SamplingCostModel(1e-6, 1e-7, 1e9)
    panel = sampling_panel({"word": folder}, model, batch=2, blocks=(16, 32))
    panel.run()
    xs, ys = panel.plot.data("word, batch 2, warm")
    assert xs == [16, 32] and all(y > 0 for y in ys)
    assert "model, batch 2" in panel.plot.lines
    panel.controls["batch"].value = 4
    panel.run()
    assert panel.plot.data("word, batch 4, warm")[0] == [16, 32]


def test_tour_and_bench_stages(small_corpus, tmp_path):
    from iokit.app.bench import bench_pretokenized
    from iokit.app.tour import Context, stage_pretokenize, stage_raw_epoch, stage_shard_epoch

    ctx = Context(small_corpus, tmp_path)
    rows = [stage(ctx) for stage in (stage_raw_epoch, stage_pretokenize, stage_shard_epoch)]
    assert "pays after" in rows[-1].note
    figures = bench_pretokenized(small_corpus, tmp_path / "bench")
    assert [f.unit for f in figures] == ["×", "fraction", "×", "fraction", "×"]
    assert all(f.value > 0 for f in figures)
    assert "nanoGPT get_batch" in figures[2].name and "gather" in figures[1].name


def test_bench_peers_whole_processes_and_tokenizers(small_corpus, tmp_path, monkeypatch):
    import sys

    from iokit.app import bench

    (line,) = [bench.whole_process_pretokenize(small_corpus, tmp_path, 2, rounds=1)]
    assert line.value > 0 and "shards identical: True" in line.note
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if it were not installed
    lines = bench.bench_tokenizers(small_corpus, tmp_path)
    assert lines[-1].unit == "skipped" and "datasets" in lines[-1].note
    assert all(r.value > 0 for r in lines[:-1])
    assert "encode_batch" in str(lines[0]) or lines[0].unit == "skipped"


def test_nanogpt_get_batch_is_the_kits_batch(small_corpus, tmp_path):
    from iokit.app.bench import nanogpt_get_batch
    from iokit.shards import open_shards, pretokenize
    from iokit.tokenize import WordTokenizer

    tok = WordTokenizer.train(d.text for d in iter_documents(small_corpus))
    pretokenize(small_corpus, tok, tmp_path)
    x, y = nanogpt_get_batch(tmp_path / "shard-00000.bin", np.random.default_rng(1), 4, 16)
    with open_shards(tmp_path) as s:  # one shard: the same draws give the same windows
        kx, ky = s.sample_batch(np.random.default_rng(1), 4, 16)
    assert np.array_equal(x, kx) and np.array_equal(y, ky)
