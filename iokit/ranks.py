"""Sharded reading for data-parallel training: which shards and windows each rank reads.

``world_size`` trainers (ranks ``0 .. world_size - 1``) read one shard set. Each rank computes
its own plan from ``(seed, epoch, rank, world_size)`` and the shards' token counts alone, with
no communication, and the plans fit together:

* **Shards, round-robin over a shuffled order.** Every epoch has its own shard order,
  ``default_rng([seed, epoch]).permutation(n_shards)``, the same on every rank; rank ``r``
  takes ``order[r::world_size]``. The ranks' shard sets are disjoint and together hold every
  shard, so every token is read exactly once per epoch across ranks.
* **Windows inside a shard, shuffled.** A rank cuts each of its shards into consecutive windows
  of ``window`` tokens (the last one of a shard may be shorter) and visits them in an order
  drawn from ``default_rng([seed, epoch, shard])``. One shard is open at a time (locality, as
  a streaming reader needs), yet the order within it changes every epoch.

**When ``world_size`` does not divide the number of shards: uneven ranks.** No padding (that
would read some tokens twice in an epoch) and no dropping (that would lose tokens): the first
``n_shards % world_size`` ranks in the round-robin get one shard more, so ranks read different
numbers of tokens. In lockstep training (every rank takes a step together) the ranks with less
data wait for the slowest at the end of the epoch; :class:`RankBalance` reports that cost as
the idle fraction ``1 - mean / max`` of tokens per rank. The fix is more, smaller shards (or
shards of equal size), not a different policy. A ``world_size`` larger than the number of
shards leaves ranks with nothing: :func:`rank_balance` lists them, :class:`RankReader` refuses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.errors import ParameterError, check_positive
from iokit.shards import ShardSet, inputs_and_targets, open_shards


@dataclass(frozen=True)
class Window:
    """One piece a rank reads: tokens ``[start, stop)`` of shard ``shard``."""

    shard: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def _check_count(name: str, value, hint: str = "") -> int:
    """``value`` as an int if it is a whole number >= 0, else ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ParameterError(f"{name} must be a whole number >= 0, got {value!r}. {hint}".strip())
    return int(value)


def _check_rank(rank, world_size) -> tuple[int, int]:
    world_size = check_positive("world_size", world_size,
                                hint="It is the number of trainers reading the shards.")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or \
            not 0 <= rank < world_size:
        raise ParameterError(f"rank must be a whole number from 0 to {world_size - 1} "
                             f"(world_size {world_size}), got {rank!r}.")
    return int(rank), world_size


def shard_order(n_shards: int, *, epoch: int = 0, seed: int = 0) -> np.ndarray:
    """The order in which epoch ``epoch`` deals out the shards: the same on every rank."""
    n_shards = _check_count("n_shards", n_shards)
    epoch = _check_count("epoch", epoch)
    seed = _check_count("seed", seed)
    return np.random.default_rng([seed, epoch]).permutation(n_shards)


def assign_shards(n_shards: int, world_size: int, *, epoch: int = 0, seed: int = 0
                  ) -> list[list[int]]:
    """The shards of every rank for one epoch: rank ``r`` gets ``order[r::world_size]``.

    Ranks below ``n_shards % world_size`` get one shard more; with ``world_size > n_shards``
    the last ranks get none.
    """
    world_size = check_positive("world_size", world_size,
                                hint="It is the number of trainers reading the shards.")
    order = shard_order(n_shards, epoch=epoch, seed=seed).tolist()
    return [order[r::world_size] for r in range(world_size)]


def _shard_tokens(shard_tokens: Sequence[int]) -> list[int]:
    return [_check_count(f"shard_tokens[{i}]", n) for i, n in enumerate(shard_tokens)]


def rank_windows(shard_tokens: Sequence[int], rank: int, world_size: int, window: int, *,
                 epoch: int = 0, seed: int = 0) -> list[Window]:
    """What rank ``rank`` reads in epoch ``epoch``, in order.

    ``shard_tokens`` holds every shard's token count. The rank's shards come in the epoch's
    order; each is cut into windows of ``window`` tokens (the last may be shorter, none is
    empty), visited in an order shuffled by ``default_rng([seed, epoch, shard])``.
    """
    rank, world_size = _check_rank(rank, world_size)
    window = check_positive("window", window, hint="Use e.g. block_size + 1 = 257 tokens.")
    tokens = _shard_tokens(shard_tokens)
    mine = assign_shards(len(tokens), world_size, epoch=epoch, seed=seed)[rank]
    plan = []
    for s in mine:
        starts = np.arange(0, tokens[s], window)
        rng = np.random.default_rng([seed, epoch, s])
        for a in rng.permutation(starts).tolist():
            plan.append(Window(s, a, min(a + window, tokens[s])))
    return plan


@dataclass
class RankBalance:
    """Tokens and shards per rank for one epoch, and what the imbalance costs."""

    tokens: np.ndarray  # int64, tokens each rank reads
    shards: list[int]  # shards each rank reads

    @property
    def world_size(self) -> int:
        return len(self.shards)

    @property
    def imbalance(self) -> float:
        """Most tokens on one rank / mean tokens per rank (1.0 is perfectly even)."""
        mean = float(self.tokens.mean())
        return float(self.tokens.max()) / mean if mean > 0 else 1.0

    @property
    def idle_fraction(self) -> float:
        """Share of trainer time spent waiting at the epoch's end, ``1 - mean / max``.

        With every rank stepping in lockstep and every token costing the same, the epoch lasts
        as long as the rank with the most tokens; the others wait for the difference.
        """
        most = float(self.tokens.max())
        return 1.0 - float(self.tokens.mean()) / most if most > 0 else 0.0

    @property
    def idle_ranks(self) -> list[int]:
        """Ranks that get no shard at all (``world_size`` > number of shards)."""
        return [r for r, n in enumerate(self.shards) if n == 0]

    def __str__(self) -> str:
        ranks = f"{self.world_size} rank{'s' * (self.world_size != 1)}"
        return (f"{ranks}: {int(self.tokens.min()):,} to "
                f"{int(self.tokens.max()):,} tokens, {min(self.shards)} to {max(self.shards)} "
                f"shards each; imbalance {self.imbalance:.3f}×, idle "
                f"{100 * self.idle_fraction:.1f} %")


def rank_balance(shard_tokens: Sequence[int], world_size: int, *, epoch: int = 0,
                 seed: int = 0) -> RankBalance:
    """Tokens and shards per rank when ``world_size`` ranks read these shards in ``epoch``."""
    tokens = _shard_tokens(shard_tokens)
    ranks = assign_shards(len(tokens), world_size, epoch=epoch, seed=seed)
    per_rank = np.array([sum(tokens[s] for s in mine) for mine in ranks], dtype=np.int64)
    return RankBalance(per_rank, [len(mine) for mine in ranks])


class RankReader:
    """Rank ``rank`` of ``world_size`` reading a shard set, window by window, epoch by epoch.

    ``shards`` is an :class:`iokit.shards.ShardSet` or the folder of one (opened here and
    closed by :meth:`close` or ``with``). ``window`` is the number of tokens per piece read;
    for training use ``block_size + 1``.

    :meth:`windows` is the exactly-once path: across all ranks, every token of every shard comes
    out once per epoch. :meth:`batches` is a convenience for a training loop and skips some
    tokens: it uses only full-length windows (a shard's shorter last window is left out) and
    drops a last batch with fewer than ``batch_size`` windows.
    """

    def __init__(self, shards, rank: int, world_size: int, window: int, *, seed: int = 0):
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.window = check_positive("window", window, hint="Use e.g. block_size + 1 = 257.")
        self.seed = _check_count("seed", seed)
        self._owned = not isinstance(shards, ShardSet)
        shard_set = open_shards(shards) if self._owned else shards
        n = len(shard_set.shards)
        if self.world_size > n:
            if self._owned:
                shard_set.close()
            idle = (f"rank {n} would" if self.world_size == n + 1
                    else f"ranks {n}–{self.world_size - 1} would")
            raise ParameterError(
                f"world size {self.world_size} but only {n} shard{'s' * (n != 1)} in "
                f"{shard_set.folder}: {idle} have no data; write at least {self.world_size} "
                "shards (split the corpus into more files, or use a smaller max_shard_bytes).")
        self.shard_set = shard_set
        self.shard_tokens = [s.n_tokens for s in shard_set.shards]

    def plan(self, epoch: int = 0) -> list[Window]:
        """The windows this rank reads in ``epoch``, in order."""
        return rank_windows(self.shard_tokens, self.rank, self.world_size, self.window,
                            epoch=epoch, seed=self.seed)

    def n_tokens(self, epoch: int = 0) -> int:
        """Tokens this rank reads in ``epoch`` through :meth:`windows`."""
        mine = assign_shards(len(self.shard_tokens), self.world_size, epoch=epoch,
                             seed=self.seed)[self.rank]
        return sum(self.shard_tokens[s] for s in mine)

    def windows(self, epoch: int = 0) -> Iterator[np.ndarray]:
        """The tokens of every window of :meth:`plan`, in order (stored dtype, maybe a view)."""
        shards = self.shard_set.shards
        for w in self.plan(epoch):
            yield shards[w.shard].read(w.start, w.stop)

    def batches(self, epoch: int = 0, batch_size: int = 8
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` int64 batches of ``batch_size`` windows, ``y`` shifted by one token.

        Like :func:`iokit.loader.make_batch`, each row is one window of ``block_size + 1 =
        window`` tokens. Skips short tail windows and a last partial batch: use
        :meth:`windows` when every token must be read.
        """
        batch_size = check_positive("batch_size", batch_size)
        if self.window < 2:
            raise ParameterError(f"batches need windows of at least 2 tokens (block_size + 1), "
                                 f"but window is {self.window}; make the reader with "
                                 "window = block_size + 1.")
        out = np.empty((batch_size, self.window), dtype=np.int64)
        rows = 0
        for tokens in self.windows(epoch):
            if len(tokens) < self.window:
                continue
            out[rows] = tokens
            rows += 1
            if rows == batch_size:
                yield inputs_and_targets(out)
                out = np.empty_like(out)  # the caller may keep the last batch
                rows = 0

    def close(self) -> None:
        """Close the shard set if this reader opened it."""
        if self._owned:
            self.shard_set.close()

    def __enter__(self) -> RankReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        folder = Path(self.shard_set.folder)
        return (f"RankReader(rank {self.rank} of {self.world_size}, {folder.name}: "
                f"{len(self.shard_tokens)} shards, window {self.window})")
