"""The loader: every batch once per epoch, a fixed order when asked, clean shutdown, errors
that reach the loop; the busy-fraction accounting and its model."""

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

from iokit.costs import PipelineModel
from iokit.errors import IokitError, ParameterError
from iokit.lab.training import train
from iokit.loader import Loader, LoaderError, ShardBatches, epoch_order, open_loader
from iokit.shards import open_shards, write_shards

BATCH, BLOCK = 4, 7
TOKENS = BATCH * (BLOCK + 1)


class FakeSource:
    """Batch k holds tokens k*TOKENS .. (k+1)*TOKENS-1; fetch sleeps ``read_s``; ``bad`` fails."""

    codec = "none"

    def __init__(self, n=30, read_s=0.0, bad=None, jitter=False):
        self.n_batches, self.tokens_per_batch = n, TOKENS
        self.read_s, self.bad, self.jitter = read_s, bad, jitter
        self.closed = False

    def fetch(self, k):
        if k == self.bad:
            raise ValueError(f"broken batch {k}")
        delay = self.read_s * ((k * 7) % 5) / 4 if self.jitter else self.read_s
        if delay:
            time.sleep(delay)
        return k

    def decode(self, k, payload):
        return np.arange(k * TOKENS, (k + 1) * TOKENS, dtype=np.uint32)

    def close(self):
        self.closed = True


def loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("iokit-loader")]


def children():
    """Child processes of this process (from /proc where it exists), and multiprocessing's."""
    found = list(multiprocessing.active_children())
    task = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    if os.path.exists(task):
        with open(task) as f:
            found += f.read().split()
    return found


@pytest.mark.parametrize("workers,prefetch", [(0, 0), (1, 0), (1, 1), (3, 2), (4, 8)])
def test_every_batch_exactly_once_in_order(workers, prefetch):
    src = FakeSource(n=25, read_s=0.002, jitter=True)
    loader = Loader(src, batch_size=BATCH, block_size=BLOCK, workers=workers, prefetch=prefetch)
    got = list(loader)
    assert [b.index for b in got] == list(range(25))
    assert [b.position for b in got] == list(range(25))
    for b in got:  # the contents are batch k's tokens, y is x shifted by one
        rows = np.arange(b.index * TOKENS, (b.index + 1) * TOKENS).reshape(BATCH, BLOCK + 1)
        assert b.x.dtype == np.int64 and b.x.shape == (BATCH, BLOCK)
        np.testing.assert_array_equal(b.x, rows[:, :-1])
        np.testing.assert_array_equal(b.y, rows[:, 1:])
    assert loader_threads() == []


def test_shuffled_order_is_seeded_and_a_permutation():
    def order(seed, workers, epochs=2):
        loader = Loader(FakeSource(n=40, read_s=0.001, jitter=True), batch_size=BATCH,
                        block_size=BLOCK, workers=workers, prefetch=3, shuffle=True, seed=seed)
        return [[b.index for b in loader] for _ in range(epochs)]

    a, b, c = order(7, 1), order(7, 4), order(8, 4)
    assert a == b  # same seed: same order, whatever the worker count
    assert a != c
    assert sorted(a[0]) == sorted(a[1]) == list(range(40))  # each epoch: each batch once
    assert a[0] != a[1]  # a new permutation every epoch
    assert a[0] == epoch_order(40, shuffle=True, seed=7, epoch=0).tolist()


def test_early_stop_leaves_no_threads_or_processes():
    before = set(threading.enumerate())
    kids = children()
    src = FakeSource(n=100, read_s=0.003)
    with Loader(src, batch_size=BATCH, block_size=BLOCK, workers=4, prefetch=6) as loader:
        for b in loader:
            if b.position == 3:
                break
    assert set(threading.enumerate()) <= before
    assert children() == kids
    assert src.closed


@pytest.mark.parametrize("error", [KeyError, KeyboardInterrupt])
def test_consumer_exception_stops_workers(error):
    before = set(threading.enumerate())
    loader = Loader(FakeSource(n=100, read_s=0.003), batch_size=BATCH, block_size=BLOCK,
                    workers=3, prefetch=4)
    with pytest.raises(error):
        for b in loader:
            if b.position == 2:
                raise error("the training loop failed (or Ctrl-C)")
    assert set(threading.enumerate()) <= before


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_worker_error_reaches_the_loop(workers):
    before = set(threading.enumerate())
    loader = Loader(FakeSource(n=20, bad=5), batch_size=BATCH, block_size=BLOCK,
                    workers=workers, prefetch=2)
    seen = []
    with pytest.raises((LoaderError, ValueError)) as info:
        for b in loader:
            seen.append(b.index)
    assert seen == list(range(5))  # every batch before the bad one arrived, in order
    if workers:
        err = info.value
        assert isinstance(err, IokitError)
        assert "failed on batch 5" in str(err) and "broken batch 5" in str(err)
        assert isinstance(err.__cause__, ValueError)
        assert "in fetch" in err.worker_traceback  # the worker's own traceback
    assert set(threading.enumerate()) <= before


def test_bad_settings_are_explained():
    with pytest.raises(ParameterError, match="workers"):
        Loader(FakeSource(), batch_size=BATCH, block_size=BLOCK, workers=-1)
    with pytest.raises(ParameterError, match="prefetch"):
        Loader(FakeSource(), batch_size=BATCH, block_size=BLOCK, prefetch=1.5)
    with pytest.raises(ParameterError, match="batch_size"):
        Loader(FakeSource(), batch_size=BATCH + 1, block_size=BLOCK)


def test_timeline_has_every_stage_of_every_worker():
    loader = Loader(FakeSource(n=12, read_s=0.002), batch_size=BATCH, block_size=BLOCK,
                    workers=2, prefetch=2)
    run = train(loader, step_s=0.001)
    stages = {(s.stage, s.worker) for s in run.timeline.spans}
    for w in ("worker-0", "worker-1"):
        assert {(st, w) for st in ("read", "decompress", "batch")} <= stages
    assert {("wait", "trainer"), ("train", "trainer")} <= stages
    assert run.steps == 12
    for s in run.timeline.spans:
        assert s.end >= s.start


def test_busy_fraction_with_a_known_slow_read():
    # Reading takes 20 ms a batch, a step 5 ms: the naive loop computes 5 of every 25 ms.
    naive = train(Loader(FakeSource(n=15, read_s=0.02), batch_size=BATCH, block_size=BLOCK,
                         workers=0, prefetch=0), step_s=0.005)
    assert naive.steps == 15
    assert sum(naive.compute_s) + sum(naive.wait_s) <= naive.seconds + 1e-6
    assert naive.busy_fraction == pytest.approx(sum(naive.compute_s) / naive.seconds)
    model = PipelineModel(0.02, 0.0, 0.0, 0.005, workers=0, prefetch=0)
    assert model.busy_fraction() == pytest.approx(0.2)
    # Each step waited the whole read and computed at least the step time (sleeps never end
    # early), so the measured busy fraction cannot beat the model's S / (S + L).
    assert min(naive.wait_s) >= 0.02 and min(naive.compute_s) >= 0.005
    mean_compute = sum(naive.compute_s) / naive.steps
    assert naive.busy_fraction <= mean_compute / (mean_compute + 0.02) + 1e-9
    assert sum(naive.wait_s) + sum(naive.compute_s) == pytest.approx(naive.seconds, rel=0.1)
    # One worker with prefetch still cannot make a 20 ms batch every 5 ms: busy ≈ 5/20.
    one = PipelineModel(0.02, 0.0, 0.0, 0.005, workers=1, prefetch=4)
    assert one.busy_fraction() == pytest.approx(0.25)
    # Enough batches in flight (Little's law: 20 ms / 5 ms = 4) keep the loop busy.
    four = PipelineModel(0.02, 0.0, 0.0, 0.005, workers=4, prefetch=4)
    assert four.min_prefetch() == 4 and four.busy_fraction() == pytest.approx(1.0)
    assert four.busy_fraction(steps=15) == pytest.approx(15 * 0.005 / (0.02 + 15 * 0.005))


def test_model_prefetch_depth_limits_the_cycle():
    # 8 workers, 20 ms loads, 5 ms steps: d + 1 batches per 25 ms cycle until d = L / S.
    for d, busy in [(0, 0.2), (1, 0.4), (2, 0.6), (3, 0.8), (4, 1.0), (8, 1.0)]:
        m = PipelineModel(0.02, 0.0, 0.0, 0.005, workers=8, prefetch=d)
        assert m.busy_fraction() == pytest.approx(busy)
    assert PipelineModel(0.02, 0, 0, 0.005, workers=8, prefetch=2).bottleneck == \
        "prefetch depth"
    assert PipelineModel(0.02, 0, 0, 0.005, workers=2, prefetch=8).bottleneck == \
        "workers (storage latency)"


def test_model_cpu_bound_loader():
    m = PipelineModel(0.001, 0.004, 0.004, 0.002, workers=8, prefetch=8, cores=2)
    assert m.bottleneck == "cpu"
    assert m.loader_rate == pytest.approx(2 / 0.008)
    assert m.busy_fraction() == pytest.approx(0.5)


@pytest.fixture(scope="module")
def plain_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 1000, size=n) for n in rng.integers(50, 400, size=60)]
    write_shards(docs, folder, vocab_size=1000, max_shard_bytes=4000)
    return folder


def test_shard_batches_read_the_stream_across_shards(plain_shards):
    with open_shards(plain_shards) as s:
        assert len(s.shards) > 3
        stream = s.read(0, s.n_tokens).astype(np.int64)
        loader = Loader(ShardBatches(s, TOKENS), batch_size=BATCH, block_size=BLOCK,
                        workers=2, prefetch=2)
        batches = list(loader)
        assert len(batches) == s.n_tokens // TOKENS
        for b in batches:
            rows = stream[b.index * TOKENS:(b.index + 1) * TOKENS].reshape(BATCH, BLOCK + 1)
            np.testing.assert_array_equal(b.x, rows[:, :-1])


def test_open_loader_on_simulated_store(plain_shards):
    with open_loader(plain_shards, storage="object-store", workers=4, prefetch=4,
                     batch_size=BATCH, block_size=BLOCK, limit=8, seed=3) as loader:
        idx = [b.index for b in loader]
        n = loader.source.n_batches
    assert len(idx) == len(set(idx)) == 8 and set(idx) <= set(range(n))
    assert idx == epoch_order(n, shuffle=True, seed=3).tolist()[:8]


@pytest.mark.parametrize("block_bytes", [None, 40, 1000])
def test_compressed_batches_match_plain(plain_shards, tmp_path, block_bytes):
    pytest.importorskip("iokit.blocks")
    kwargs = dict(batch_size=BATCH, block_size=BLOCK, shuffle=True, seed=1, workers=2,
                  prefetch=3)
    with open_loader(plain_shards, **kwargs) as a, \
            open_loader(plain_shards, codec="zstd:3", workdir=tmp_path,
                        codec_block_bytes=block_bytes, **kwargs) as b:
        assert b.source.codec == "zstd:3" and len(b.source.shards.shards) > 1
        plain, packed = list(a), list(b)
    assert [p.index for p in plain] == [q.index for q in packed]
    for p, q in zip(plain, packed):
        np.testing.assert_array_equal(p.x, q.x)
        np.testing.assert_array_equal(p.y, q.y)


def test_corrupt_block_reaches_the_loop_naming_the_block(plain_shards, tmp_path):
    pytest.importorskip("iokit.blocks")
    kwargs = dict(batch_size=BATCH, block_size=BLOCK, workers=2, prefetch=2, shuffle=False,
                  codec="zstd:3", workdir=tmp_path)
    with open_loader(plain_shards, **kwargs) as loader:
        n = len(list(loader))
    (packed,) = tmp_path.glob("*-zstd-3-*/shard-00000.bin")
    data = bytearray(packed.read_bytes())
    data[3] ^= 0xFF  # a byte inside the first compressed block
    packed.write_bytes(bytes(data))
    with open_loader(plain_shards, **kwargs) as loader:
        with pytest.raises(LoaderError, match=r"failed on batch 0 .*block 0 of") as info:
            list(loader)
    assert "checksum" in str(info.value) and n > 1
    assert loader_threads() == []


def test_quick_batches_are_made_by_the_loop_and_slow_ones_by_workers():
    # Batches far quicker to make than a hand-off between threads: after the first epoch the
    # workers stand down, the loop makes its batches itself and no thread is started.
    quick = Loader(FakeSource(n=40), batch_size=BATCH, block_size=BLOCK, workers=2, prefetch=3)
    first = list(quick)
    assert [b.index for b in first] == list(range(40))
    makers, threads = set(), set()
    for b in quick:
        makers.add(b.worker)
        threads.update(t.name for t in loader_threads())
    assert makers == {"loop"} and threads == set()
    # unless told to keep the workers at it
    fixed = Loader(FakeSource(n=40), batch_size=BATCH, block_size=BLOCK, workers=2, prefetch=3,
                   adaptive=False)
    for _ in range(2):
        assert {b.worker for b in fixed} <= {"worker-0", "worker-1"}
    # Batches that wait on storage (2 ms each): the workers make every one
    slow = Loader(FakeSource(n=12, read_s=0.002), batch_size=BATCH, block_size=BLOCK,
                  workers=2, prefetch=3)
    for _ in range(2):
        got = list(slow)
        assert [b.index for b in got] == list(range(12))
        assert {b.worker for b in got} <= {"worker-0", "worker-1"}
    assert loader_threads() == []


def test_batches_turning_slow_mid_epoch_go_back_to_the_workers_in_order():
    # The loop makes quick batches itself in long runs, timing a sample; when storage turns
    # slow in the middle of a run, it hands the rest of the run back to the workers.
    from iokit.loader import LOOP_RUN, SAMPLE_EVERY

    n = 3 * LOOP_RUN
    src = FakeSource(n=n)
    loader = Loader(src, batch_size=BATCH, block_size=BLOCK, workers=2, prefetch=3)
    list(loader)  # the workers stand down
    got = []
    for b in loader:
        got.append(b)
        if b.position == LOOP_RUN // 2:
            src.read_s = 0.002  # storage turns slow
    assert [b.index for b in got] == list(range(n))
    makers = [b.worker for b in got]
    assert set(makers[:LOOP_RUN // 2]) == {"loop"}
    slow_by_loop = makers[LOOP_RUN // 2 + 1:].count("loop")
    assert slow_by_loop <= 2 * SAMPLE_EVERY  # two slow samples in a row: handed back
    assert {"worker-0", "worker-1"} & set(makers)
    assert loader_threads() == []


def test_bench_compares_the_loader_with_a_bare_loop(tmp_path):
    from iokit.app.bench import bench_loader

    rng = np.random.default_rng(2)
    write_shards([rng.integers(0, 1000, size=40_000) for _ in range(4)],
                 tmp_path / "shards-word", vocab_size=1000, max_shard_bytes=100_000)
    lines = bench_loader(tmp_path / "unused.jsonl", tmp_path, batches_per_run=40)
    names = [r.name for r in lines]
    for shape in ("16×256", "64×1024"):
        assert f"loader inline / bare loop, same batches ({shape}, warm)" in names
        assert f"loader 2 workers / loader inline ({shape}, warm)" in names
    assert len(lines) == 6 and all(r.value > 0 for r in lines)
