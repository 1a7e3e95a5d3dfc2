"""The pipeline's loader reading one rank's share: the same batches as the rank's reader."""

import numpy as np
import pytest

from iokit.errors import ParameterError
from iokit.loader import open_loader
from iokit.ranks import RankReader, rank_windows
from iokit.shards import open_shards, write_shards

BATCH, BLOCK = 4, 31


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 1000, size=int(n)) for n in rng.integers(50, 900, size=60)]
    write_shards(docs, out, vocab_size=1000, max_shard_bytes=4000)
    return out


@pytest.mark.parametrize("workers,prefetch", [(0, 0), (3, 4)])
def test_each_rank_loads_exactly_its_readers_batches(folder, workers, prefetch):
    with open_shards(folder) as s:
        assert len(s.shards) >= 5
        for rank in range(3):
            reader = RankReader(s, rank, 3, BLOCK + 1, seed=7)
            with open_loader(folder, rank=rank, world_size=3, batch_size=BATCH,
                             block_size=BLOCK, workers=workers, prefetch=prefetch,
                             seed=7) as loader:
                for epoch in range(2):
                    got = [(b.x, b.y) for b in loader]
                    want = list(reader.batches(epoch, BATCH))
                    assert len(got) == len(want) > 0
                    for (x, y), (wx, wy) in zip(got, want):
                        assert x.dtype == np.int64 and (x == wx).all() and (y == wy).all()


def test_ranks_load_disjoint_windows_that_change_every_epoch(folder):
    with open_shards(folder) as s:
        sizes = [sh.n_tokens for sh in s.shards]
    seen = {}
    for epoch in range(2):
        rows = []
        for rank in range(2):
            with open_loader(folder, rank=rank, world_size=2, batch_size=BATCH,
                             block_size=BLOCK, workers=2) as loader:
                loader.epoch = epoch
                rows += [tuple(r) for b in loader for r in b.x.tolist()]
        full = [w for r in range(2) for w in rank_windows(sizes, r, 2, BLOCK + 1, epoch=epoch)
                if len(w) == BLOCK + 1]
        assert len(rows) <= len(full) and len(rows) > len(full) - 2 * BATCH  # partial batches
        assert len(set(rows)) == len(rows)  # no window loaded twice, by one rank or two
        seen[epoch] = rows
    assert seen[0] != seen[1]


def test_rank_loading_refuses_what_it_cannot_do(folder, tmp_path):
    with pytest.raises(ParameterError, match=r"world size 99 but only \d+ shards"):
        open_loader(folder, rank=0, world_size=99, batch_size=BATCH, block_size=BLOCK)
    with pytest.raises(ParameterError, match="less than one batch"):
        open_loader(folder, rank=0, world_size=2, batch_size=10_000, block_size=BLOCK)
    with pytest.raises(ParameterError, match="reading by rank takes plain shards"):
        open_loader(folder, rank=0, world_size=2, batch_size=BATCH, block_size=BLOCK,
                    codec="zstd:3")
