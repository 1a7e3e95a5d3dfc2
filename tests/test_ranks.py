"""Sharded reading for data-parallel training: disjoint ranks, exact coverage, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iokit.errors import ParameterError
from iokit.lab import exercises
from iokit.ranks import (
    RankReader,
    Window,
    assign_shards,
    rank_balance,
    rank_windows,
    shard_order,
)
from iokit.shards import open_shards, write_shards

CASES = [(n_shards, world) for world in (1, 2, 3, 4, 5, 7, 8)
         for n_shards in (world, 7, 8, 16, 17)]


def coverage(shard_tokens, world_size, window, *, epoch=0, seed=0):
    """How often each token of each shard is read across all ranks (one array per shard)."""
    counts = [np.zeros(n, dtype=np.int64) for n in shard_tokens]
    for rank in range(world_size):
        for w in rank_windows(shard_tokens, rank, world_size, window, epoch=epoch, seed=seed):
            assert 0 <= w.start < w.stop <= shard_tokens[w.shard]  # never empty, in range
            assert len(w) <= window
            counts[w.shard][w.start:w.stop] += 1
    return counts


def sizes(n_shards, seed=0):
    return np.random.default_rng(seed).integers(0, 300, size=n_shards).tolist()


# --------------------------------------------------------------------------- assignment


@pytest.mark.parametrize("n_shards,world", CASES)
def test_shards_disjoint_cover_and_uneven_by_at_most_one(n_shards, world):
    ranks = assign_shards(n_shards, world, epoch=3, seed=1)
    assert len(ranks) == world
    flat = [s for mine in ranks for s in mine]
    assert sorted(flat) == list(range(n_shards))  # disjoint, and every shard once
    counts = [len(mine) for mine in ranks]
    extra = n_shards % world
    assert counts == [n_shards // world + (r < extra) for r in range(world)]


@pytest.mark.parametrize("n_shards,world", CASES)
def test_windows_cover_every_token_exactly_once(n_shards, world):
    tokens = sizes(n_shards, seed=n_shards)
    for epoch in (0, 1):
        for count in coverage(tokens, world, 37, epoch=epoch, seed=5):
            assert np.all(count == 1)


def test_windows_of_a_shard_are_consecutive_pieces_in_shuffled_order():
    plan = rank_windows([1000], 0, 1, 100)
    assert sorted((w.start, w.stop) for w in plan) == [(a, a + 100) for a in range(0, 1000, 100)]
    assert [w.start for w in plan] != sorted(w.start for w in plan)
    tail = rank_windows([250], 0, 1, 100)
    assert sorted(len(w) for w in tail) == [50, 100, 100]


def test_one_shard_at_a_time():
    plan = rank_windows([500] * 12, 1, 3, 64, epoch=2)
    seen = [w.shard for w in plan]
    runs = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    assert runs == assign_shards(12, 3, epoch=2)[1]  # each shard once, in the epoch's order


def test_empty_shards_give_no_windows():
    plan = rank_windows([0, 10, 0], 0, 1, 4)
    assert {w.shard for w in plan} == {1}
    assert sum(len(w) for w in plan) == 10


# --------------------------------------------------------------------------- determinism


def test_same_seed_and_epoch_same_plan():
    tokens = sizes(16)
    for rank in range(3):
        a = rank_windows(tokens, rank, 3, 50, epoch=4, seed=9)
        b = rank_windows(list(tokens), rank, 3, 50, epoch=4, seed=9)
        assert a == b and all(isinstance(w, Window) for w in a)
    assert np.array_equal(shard_order(16, epoch=4, seed=9), shard_order(16, epoch=4, seed=9))


def test_new_epoch_new_order_still_exact():
    orders = [shard_order(16, epoch=e, seed=0).tolist() for e in range(4)]
    assert len({tuple(o) for o in orders}) == 4
    assert all(sorted(o) == list(range(16)) for o in orders)
    assert shard_order(16, seed=1).tolist() != orders[0]
    tokens = sizes(16)
    p0 = rank_windows(tokens, 0, 4, 40, epoch=0)
    p1 = rank_windows(tokens, 0, 4, 40, epoch=1)
    assert p0 != p1
    for count in coverage(tokens, 4, 40, epoch=1):
        assert np.all(count == 1)


@settings(max_examples=100, deadline=None)
@given(tokens=st.lists(st.integers(0, 200), min_size=0, max_size=20),
       world=st.integers(1, 9), window=st.integers(1, 64),
       seed=st.integers(0, 2**32), epoch=st.integers(0, 1000))
def test_property_exact_coverage(tokens, world, window, seed, epoch):
    for count in coverage(tokens, world, window, epoch=epoch, seed=seed):
        assert np.all(count == 1)
    bal = rank_balance(tokens, world, epoch=epoch, seed=seed)
    assert int(bal.tokens.sum()) == sum(tokens)
    assert sum(bal.shards) == len(tokens)


# --------------------------------------------------------------------------- balance


def test_balance_of_equal_shards():
    bal = rank_balance([100] * 8, 3)
    assert bal.shards == [3, 3, 2]
    assert bal.tokens.tolist() == [300, 300, 200]
    assert bal.imbalance == pytest.approx(300 / (800 / 3))
    assert bal.idle_fraction == pytest.approx(1 - (800 / 3) / 300)  # 1/9
    assert bal.idle_ranks == []
    assert rank_balance([100] * 8, 4).idle_fraction == 0.0
    assert "3 ranks" in str(bal) and "11.1 %" in str(bal)


def test_balance_with_more_ranks_than_shards():
    bal = rank_balance([10, 20], 4)
    assert bal.idle_ranks == [2, 3]
    assert bal.idle_fraction == pytest.approx(1 - 7.5 / 20)
    empty = rank_balance([], 2)
    assert (empty.idle_fraction, empty.imbalance, empty.idle_ranks) == (0.0, 1.0, [0, 1])


def test_idle_fraction_exercise():
    tokens = [100] * 8
    assert exercises.idle_fraction(1 / 9, tokens, 3)
    assert not exercises.idle_fraction(0.0, tokens, 3)
    assert not exercises.idle_fraction("a ninth", tokens, 3)
    uneven = [500, 100, 300, 200, 400]
    expected = rank_balance(uneven, 2, epoch=1, seed=3).idle_fraction
    assert exercises.idle_fraction(expected, uneven, 2, epoch=1, seed=3)


# --------------------------------------------------------------------------- the reader


@pytest.fixture
def shard_dir(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 1000, size=int(rng.integers(1, 300))) for _ in range(60)]
    out = tmp_path / "shards"
    write_shards(docs, out, vocab_size=1000, max_shard_bytes=2_000)
    return out


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_reader_ranks_together_read_the_stream_once(shard_dir, world):
    with open_shards(shard_dir) as s:
        n_shards = len(s.shards)
        assert n_shards >= 5  # several shards, so world sizes 3 and 4 do not divide all
        whole = s.read(0, s.n_tokens).copy()
        for epoch in (0, 1):
            pieces = []
            total = 0
            for rank in range(world):
                reader = RankReader(s, rank, world, 33, seed=2)
                plan = reader.plan(epoch)
                arrays = list(reader.windows(epoch))
                assert [len(a) for a in arrays] == [len(w) for w in plan]
                assert reader.n_tokens(epoch) == sum(len(a) for a in arrays)
                total += reader.n_tokens(epoch)
                pieces += [(int(s.starts[w.shard]) + w.start, a) for w, a in zip(plan, arrays)]
            pieces.sort(key=lambda p: p[0])
            assert total == s.n_tokens
            assert np.array_equal(np.concatenate([a for _, a in pieces]), whole)


def test_reader_batches(shard_dir):
    block = 16
    with RankReader(shard_dir, 1, 2, block + 1, seed=0) as reader:
        full = [a for a in reader.windows(3) if len(a) == block + 1]
        batches = list(reader.batches(3, batch_size=4))
        assert len(batches) == len(full) // 4
        for k, (x, y) in enumerate(batches):
            assert x.dtype == y.dtype == np.int64
            assert x.shape == y.shape == (4, block)
            assert np.array_equal(x[:, 1:], y[:, :-1])
            rows = np.stack(full[4 * k:4 * k + 4]).astype(np.int64)
            assert np.array_equal(x, rows[:, :-1]) and np.array_equal(y, rows[:, 1:])
        assert "rank 1 of 2" in repr(reader)


# --------------------------------------------------------------------------- errors


def test_bad_parameters():
    with pytest.raises(ParameterError, match=r"rank must be .* from 0 to 3 \(world_size 4\), "
                       r"got 4"):
        rank_windows([10], 4, 4, 8)
    with pytest.raises(ParameterError, match="rank must be"):
        rank_windows([10], -1, 4, 8)
    with pytest.raises(ParameterError, match="world_size must be > 0, got 0. It is the number"):
        rank_windows([10], 0, 0, 8)
    with pytest.raises(ParameterError, match="world_size must be > 0"):
        assign_shards(4, 0)
    with pytest.raises(ParameterError, match="window must be > 0, got 0. Use e.g. block_size"):
        rank_windows([10], 0, 1, 0)
    with pytest.raises(ParameterError, match="epoch must be a whole number >= 0"):
        shard_order(4, epoch=-1)
    with pytest.raises(ParameterError, match=r"shard_tokens\[1\] must be a whole number >= 0"):
        rank_balance([5, -1], 2)


def test_reader_refuses_more_ranks_than_shards(shard_dir):
    with open_shards(shard_dir) as s:
        n = len(s.shards)
    world = n + 3
    with pytest.raises(ParameterError) as err:
        RankReader(shard_dir, 0, world, 17)
    msg = str(err.value)
    assert f"world size {world} but only {n} shards in {shard_dir}" in msg
    assert f"ranks {n}–{world - 1} would have no data" in msg
    assert f"write at least {world} shards" in msg
    with pytest.raises(ParameterError, match=f"rank {n} would have no data"):
        RankReader(shard_dir, 0, n + 1, 17)
    with pytest.raises(ParameterError, match="rank must be"):
        RankReader(shard_dir, 2, 2, 17)
    with pytest.raises(ParameterError, match="window must be > 0"):
        RankReader(shard_dir, 0, 1, 0)
    with RankReader(shard_dir, 0, 1, 1) as reader:
        with pytest.raises(ParameterError, match="at least 2 tokens"):
            next(reader.batches(0, 2))
