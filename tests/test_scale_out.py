"""Scaling out: the cluster and shard-reading models, and the measurements behind notebook 06."""

import math

import numpy as np
import pytest

from iokit.corpus import iter_documents
from iokit.costs import ClusterModel, ShardReadModel, list_schedule
from iokit.lab.scale_out import (
    piece_sweep,
    read_by_rank,
    shards_for,
    task_stream_timeline,
    time_engine,
)
from iokit.shards import open_shards
from iokit.split import plan_pieces
from iokit.storage import SimulatedStore, StoragePreset
from iokit.tokenize import WordTokenizer


def test_list_schedule_hands_tasks_to_the_first_free_worker():
    assert list_schedule([1, 1, 1], 2) == 2
    assert list_schedule([3, 1, 1, 1], 2) == 3  # the long task runs while the others share
    assert list_schedule([1, 3, 1, 1], 2) == 3
    assert list_schedule([1] * 5, 2, overhead_s=0.5) == 4.5
    assert list_schedule([2, 2], 8) == 2 and list_schedule([], 4) == 0
    with pytest.raises(ValueError):
        list_schedule([1], 0)


def test_the_cluster_model_for_equal_pieces_has_a_closed_form():
    m = ClusterModel(bytes_per_s=10e6, overhead_s=0.01, startup_s=0.5)
    for n in (1, 3, 8, 33):
        for slots in (1, 2, 16):
            assert m.predict([80e6 / n] * n, slots) == pytest.approx(
                float(m.predict_even(80e6, n, slots)))
    # too few pieces leave workers idle; too many pay the overhead
    assert m.predict_even(80e6, 1, 8) > m.predict_even(80e6, 8, 8)
    assert m.predict_even(80e6, 100_000, 8) > m.predict_even(80e6, 64, 8)
    assert m.best_pieces(80e6, 8, max_pieces=4096) % 8 == 0


def test_fits_recover_the_costs_they_were_made_with():
    true = ClusterModel(12e6, 0.004, 0.08)
    runs = [[60e6 / n] * n for n in (1, 2, 3, 4, 8, 16, 64)]
    seconds = [true.predict(r, 2) for r in runs]
    got = ClusterModel.fit_sweep(runs, seconds, 2, 12e6)
    assert got.overhead_s == pytest.approx(0.004) and got.startup_s == pytest.approx(0.08)
    noisy = [s * f for s, f in zip(seconds, (1.03, 0.98, 1.01, 0.99, 1.02, 0.97, 1.0))]
    got = ClusterModel.fit_sweep(runs, noisy, 2, 12e6)
    assert got.overhead_s == pytest.approx(0.004, rel=0.5)
    one = ClusterModel.fit(runs[4], 60e6 / 12e6, true.predict(runs[4], 2) - 0.08, 2)
    assert one.bytes_per_s == pytest.approx(12e6) and one.overhead_s == pytest.approx(0.004)
    no_overhead = [true.startup_s + list_schedule(np.array(r) / 12e6, 2) for r in runs]
    got = ClusterModel.fit_sweep(runs, no_overhead, 2, 12e6)
    assert got.overhead_s == pytest.approx(0, abs=1e-12) and got.startup_s == pytest.approx(0.08)


def test_the_shard_read_model_counts_requests_and_shares_the_link():
    m = ShardReadModel(latency=0.01, stream_bandwidth=100e6, aggregate_bandwidth=150e6)
    # 3 shards of 1 MB in 256 kB windows: 3 opens + 12 windows
    assert m.rank_seconds([1e6] * 3, 256e3) == pytest.approx(15 * 0.01 + 3e6 / 100e6)
    assert m.rank_seconds([1e6] * 3, 256e3, ranks=3) == pytest.approx(15 * 0.01 + 3e6 / 50e6)
    # equal shards: the slowest rank holds ceil(n / ranks) of them
    assert m.epoch_seconds(8e6, 8, 3, 256e3) == pytest.approx(
        m.rank_seconds([1e6] * 3, 256e3, ranks=3))
    t = m.epoch_seconds(8e6, np.array([1, 2, 4, 8]), 4, 256e3)
    assert np.all(np.diff(t) < 0.02)  # more shards, up to the rank count, help (or cost little)
    assert t[0] > 3 * t[2]
    assert m.epoch_seconds(8e6, 1024, 4, 256e3) > m.epoch_seconds(8e6, 8, 4, 256e3)
    assert ShardReadModel.from_preset("hdd").latency == pytest.approx(8e-3)


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus):
    return WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), vocab_size=4096)


def test_time_engine_and_piece_sweep_time_real_runs(tiny_corpus, tokenizer, tmp_path):
    pieces = plan_pieces(tiny_corpus, 3)
    t = time_engine(pieces, tokenizer, tmp_path / "a", engine="serial", repeat=2, warmup=0)
    assert len(t.timing.seconds) == 2 and t.run.engine == "serial" and t.label == \
        "serial, 1 worker"
    assert t.timing.nbytes == tiny_corpus.stat().st_size
    seen = []
    points = piece_sweep(tiny_corpus, tokenizer, tmp_path / "b", [1, 4], engine="serial",
                         repeat=1, warmup=0, on_point=seen.append)
    assert [p.parts for p in points] == [1, 4] and seen == points
    assert all(sum(p.piece_bytes) == tiny_corpus.stat().st_size for p in points)
    with open_shards(tmp_path / "b") as s:
        assert len(s.shards) == 4


def test_shards_for_makes_the_set_once(tiny_corpus, tokenizer, tmp_path):
    folder = shards_for(tiny_corpus, tokenizer, tmp_path / "s", 5, engine="serial")
    stamp = (folder / "shard-00004.idx").stat().st_mtime_ns
    assert shards_for(tiny_corpus, tokenizer, folder, 5, engine="serial") == folder
    assert (folder / "shard-00004.idx").stat().st_mtime_ns == stamp
    shards_for(tiny_corpus, tokenizer, folder, 3, engine="serial")
    with open_shards(folder) as s:
        assert len(s.shards) == 3


@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
def test_read_by_rank_reads_every_token_once(tiny_corpus, tokenizer, tmp_path, world_size):
    folder = shards_for(tiny_corpus, tokenizer, tmp_path / "s", 5, engine="serial")
    preset = StoragePreset("test", 0.001, 1e9, 2e9, "1 ms per request, simulated")
    got = read_by_rank(folder, world_size, SimulatedStore(preset), window_tokens=40_000)
    with open_shards(folder) as s:
        total_tokens = s.n_tokens
        sizes = [sh.n_tokens for sh in s.shards]
        idx_bytes = sum(sh.idx_path.stat().st_size for sh in s.shards)
        bin_bytes = s.nbytes
    assert got.tokens.sum() == total_tokens and got.world_size == world_size
    assert got.requests.sum() == len(sizes) + sum(math.ceil(n / 40_000) for n in sizes)
    assert got.nbytes.sum() == idx_bytes + bin_bytes
    assert np.all(got.seconds >= got.requests * 0.001)  # the simulated store waits per request
    if world_size > len(sizes):
        assert (got.tokens == 0).sum() == world_size - len(sizes) and got.idle_fraction > 0


def test_read_by_rank_passes_a_rank_error_on(tiny_corpus, tokenizer, tmp_path):
    folder = shards_for(tiny_corpus, tokenizer, tmp_path / "s", 2, engine="serial")

    class Broken:
        def read(self, path, offset, size):
            raise OSError("the store went away")

    with pytest.raises(OSError, match="went away"):
        read_by_rank(folder, 2, Broken())


def test_dask_task_stream_records_become_a_timeline():
    records = [
        {"worker": "tcp://b:1", "startstops": ({"action": "compute", "start": 10.5,
                                                "stop": 11.0},)},
        {"worker": "tcp://a:1", "startstops": ({"action": "transfer", "start": 10.0,
                                                "stop": 10.1},
                                               {"action": "compute", "start": 10.1,
                                                "stop": 10.6})},
    ]
    tl = task_stream_timeline(records)
    got = sorted((s.worker, s.stage, round(s.start, 3), round(s.end, 3)) for s in tl.spans)
    assert got == [("worker 1", "tokenize", 0.1, 0.6), ("worker 1", "transfer", 0.0, 0.1),
                   ("worker 2", "tokenize", 0.5, 1.0)]
