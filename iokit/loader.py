"""The pipeline: background workers read, decompress and batch shards while the model trains.

A training step should never wait for data. :class:`Loader` hands batches to a training loop
through a bounded prefetch queue, filled by ``workers`` background threads; each batch is made
in three stages, each recorded as a span on a :class:`~iokit.timing.Timeline` when the loader
has one (without one, nothing is recorded and nothing paid)::

    read        fetch the batch's bytes from storage (local disk or a simulated store)
    decompress  turn stored bytes into token IDs (a no-op for plain shards)
    batch       cut the IDs into ``batch_size`` windows of ``block_size + 1`` tokens, as int64

An epoch is the shard set's token stream cut into consecutive batches of ``batch_size ×
(block_size + 1)`` tokens (the tail that does not fill a batch is left out); batch ``k`` has
inputs ``x`` and targets ``y = x`` shifted by one, as nanoGPT's ``get_batch``. Every batch
arrives exactly once per epoch, in order ``0, 1, 2, …`` or, with ``shuffle=True``, in a
permutation fixed by ``seed`` and the epoch number. Delivery order never depends on which
worker finished first.

The knobs:

* ``workers`` — background threads (0: the training loop loads each batch itself, the naive
  loop). Threads suit this work: reading waits on storage, and zstd and numpy release the GIL.
* ``prefetch`` — how many batches the loader may make ahead of the one the loop asks for (0:
  load only on demand, no overlap). At most ``min(workers, prefetch + 1)`` batches are in the
  making at once: by Little's law the loader delivers at most that many per batch-load time.

The hand-off: workers claim the next positions of the epoch's order off one counter (each
batch made by exactly one worker, so each worker reads a disjoint share of the windows) and
put each batch in its position's slot; the loop takes slot after slot, waking only when the
one it waits for is filled, and a worker sleeps only when the prefetch window is full. Small
batches are claimed several per wake-up. Batches quicker to make than a hand-off between
threads costs (under ``QUICK_BATCH_S``: warm local shards) gain nothing from workers, so the
workers then stand down and the loop makes them itself (shown as ``loop`` on the timeline),
as they do when the loop waits for them twice as long as it took to make its own. The loop
then claims long runs and times one batch in :data:`SAMPLE_EVERY`, so its path costs what the
inline loop costs; when its batches turn slow (storage), the workers take over again. The
next epoch starts as the last one ended (its threads started only when needed). Nothing of
this changes which batches arrive or in what order.

**Resuming mid-epoch.** :meth:`Loader.state` is where the loader is: the epoch, the batches
of it already handed to the loop, the seed (every order is drawn from ``default_rng([seed,
epoch])``, so that is the whole random state) and a fingerprint of the shard set and the plan.
Saved as JSON after a training step, it lets a new process (``open_loader(..., resume=state)``
or :meth:`Loader.restore`) yield exactly the batches the interrupted run had not handed over,
in the same order, with any number of workers, for all shards or a rank's share. A state from
another shard set or another plan (batch shape, shuffle, seed, rank) is refused with a
:class:`~iokit.errors.ResumeError` saying what differs.

Shutdown is clean whatever happens: leaving the ``for`` loop early, an exception in the loop,
or an error in a worker stops and joins every worker thread before control returns. A worker's
exception reaches the loop as :class:`LoaderError` naming the worker and the batch, with the
worker's traceback attached (as its ``__cause__`` and as a note), at the failed batch's place
in the order: every batch before it still arrives, none after it is started.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np

from iokit.blocks import BlockReader
from iokit.errors import (
    FormatError,
    LoaderError,
    ParameterError,
    ResumeError,
    StorageError,
    check_positive,
    check_size,
)
from iokit.parallel import MAX_WORKERS
from iokit.preprocess import rewrite_shards
from iokit.ranks import RankReader
from iokit.shards import inputs_and_targets, open_shards
from iokit.storage import LocalDisk, open_storage
from iokit.timing import Timeline

STAGES = ("read", "decompress", "batch")
JOIN_TIMEOUT_S = 10.0
QUICK_BATCH_S = 500e-6  # a batch made faster than this: the loop makes it itself
SMALL_BATCH_S = 2e-3  # a batch made faster than this: a worker claims several per wake-up
CLAIM_MOST = 8  # the most positions a worker claims at once
LOOP_RUN = 256  # positions the loop claims at once when it makes quick batches itself
SAMPLE_EVERY = 32  # of which it times one in this many (timing each costs more than a check)
WAIT_WINDOW = 16  # batches from workers over which the loop's wait for them is averaged
STATE_VERSION = 1


# --------------------------------------------------------------------------- batch sources


class _ShardFiles:
    """Reads of a shard set's ``.bin`` files: through a simulated store, or from the local disk
    with each file opened once (lazily, by whichever thread reads it first) and read with
    ``os.pread`` (safe from any thread) until :meth:`close`."""

    def __init__(self, shards, storage):
        self.shards = shards
        self.storage = storage if storage is not None else LocalDisk()
        self.local = isinstance(self.storage, LocalDisk)
        self._paths = [s.bin_path for s in shards.shards]
        self._fds: list = [None] * len(self._paths)
        self._open_lock = threading.Lock()

    def _fd(self, s: int) -> int:
        with self._open_lock:
            if self._fds[s] is None:
                try:
                    self._fds[s] = os.open(self._paths[s], os.O_RDONLY)
                except OSError as exc:
                    raise StorageError(f"{self._paths[s]}: cannot open the shard "
                                       f"({exc.strerror}); check that the shard set is still "
                                       "there.") from None
            return self._fds[s]

    def read(self, s: int, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of shard ``s``; a short read is a FormatError."""
        if not self.local:
            data = self.storage.read(self._paths[s], offset, size)
        else:
            fd = self._fds[s]
            data = os.pread(fd if fd is not None else self._fd(s), size, offset)
        if len(data) != size:
            raise FormatError(f"{self._paths[s]}: {size:,} bytes at offset {offset:,} asked, "
                              f"{len(data):,} read: the file is shorter than its index says; "
                              "write the shards again.")
        return data

    def close(self) -> None:
        with self._open_lock:
            for i, fd in enumerate(self._fds):
                if fd is not None:
                    os.close(fd)
                    self._fds[i] = None
        if hasattr(self.storage, "close"):
            self.storage.close()


def shard_set_digest(shards) -> str:
    """A short fingerprint of a shard set's contents: dtype, and every shard's token count and
    checksum (the folder's name and place do not count)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(np.dtype(shards.dtype).str.encode())
    for s in shards.shards:
        h.update(int(s.n_tokens).to_bytes(8, "little") + int(s.checksum).to_bytes(8, "little"))
    return h.hexdigest()


class ShardBatches:
    """Batches of a shard set, plain or block-compressed, read through a storage backend.

    ``fetch(k)`` is the I/O (stage ``read``): one request per plain shard piece the batch
    touches (usually one), or one per compressed block. ``decode(k, payload)`` turns those bytes
    into token IDs (stage ``decompress``: check and decompress the blocks and keep the batch's
    tokens; nothing to do for plain shards). The batch's pieces are planned once, in ``fetch``,
    and travel with the payload. Any object with ``n_batches``, ``tokens_per_batch``,
    ``fetch``, ``decode`` and ``close`` can feed a :class:`Loader`.
    """

    def __init__(self, shards, tokens_per_batch: int, storage=None):
        self.shards = shards
        self.dtype = shards.dtype
        self.tokens_per_batch = check_positive("tokens per batch", tokens_per_batch)
        self.files = _ShardFiles(shards, storage)
        self.storage = self.files.storage
        self.n_batches = shards.n_tokens // self.tokens_per_batch
        if self.n_batches == 0:
            raise ParameterError(
                f"a batch needs {self.tokens_per_batch:,} tokens, but the shards in "
                f"{shards.folder} hold {shards.n_tokens:,}; use a smaller batch_size or "
                "block_size, or more data.")
        self._starts = [int(x) for x in shards.starts]
        self.readers = {}  # shard number -> BlockReader (compressed shards)
        for i, shard in enumerate(shards.shards):
            if getattr(shard, "blocks", None) is not None:  # local: the reader's own open file
                self.readers[i] = BlockReader(shard.bin_path, shard.blocks, 0,
                                              storage=None if self.files.local else self.storage)
        codecs = {r.table.codec for r in self.readers.values()}
        self.codec = ", ".join(sorted(codecs)) if codecs else "none"

    def describe(self) -> dict:
        """What fixes this source's batches (for a resume state's fingerprint)."""
        return {"source": "stream", "shards": shard_set_digest(self.shards),
                "tokens_per_batch": self.tokens_per_batch}

    def _pieces(self, k: int) -> list:
        """(shard number, first token, end token) of each shard piece batch ``k`` covers."""
        start = k * self.tokens_per_batch
        stop = start + self.tokens_per_batch
        starts = self._starts
        s = bisect.bisect_right(starts, start) - 1
        if stop <= starts[s + 1]:  # the usual case: the batch lies in one shard
            return [(s, start - starts[s], stop - starts[s])]
        pieces = []
        while start < stop:
            base, end = starts[s], min(stop, starts[s + 1])
            if end > start:
                pieces.append((s, start - base, end - base))
            start = max(start, end)
            s += 1
        return pieces

    def tokens(self, k: int) -> np.ndarray:
        """The token IDs of batch ``k`` (``decode(k, fetch(k))``, quicker for one plain piece)."""
        start = k * self.tokens_per_batch
        starts = self._starts
        s = bisect.bisect_right(starts, start) - 1
        if s not in self.readers and start + self.tokens_per_batch <= starts[s + 1]:
            isz = self.dtype.itemsize
            return np.frombuffer(self.files.read(s, (start - starts[s]) * isz,
                                                 self.tokens_per_batch * isz), self.dtype)
        return self.decode(k, self.fetch(k))

    def fetch(self, k: int) -> list:
        """``[(piece, stored bytes)]`` for batch ``k``: plain bytes, or the compressed blocks."""
        isz = self.dtype.itemsize
        payload = []
        for piece in self._pieces(k):
            s, a, b = piece
            reader = self.readers.get(s)
            if reader is None:
                payload.append((piece, self.files.read(s, a * isz, (b - a) * isz)))
            else:
                bs = reader.table.block_bytes
                payload.append((piece, [reader.fetch(i) for i in
                                        range(a * isz // bs, ((b * isz) - 1) // bs + 1)]))
        return payload

    def decode(self, k: int, payload: list) -> np.ndarray:
        isz = self.dtype.itemsize
        parts = []
        for (s, a, b), data in payload:
            reader = self.readers.get(s)
            if reader is not None:
                bs = reader.table.block_bytes
                first = a * isz // bs
                raw = b"".join(reader.decode(first + j, p) for j, p in enumerate(data))
                data = raw[a * isz - first * bs:b * isz - first * bs]
            parts.append(data)
        return np.frombuffer(parts[0] if len(parts) == 1 else b"".join(parts), dtype=self.dtype)

    def close(self) -> None:
        for r in self.readers.values():
            r.close()
        self.files.close()
        self.shards.close()


class RankBatches:
    """The batches of one rank's share of each epoch (:mod:`iokit.ranks`), read from storage.

    Rank ``rank`` of ``world_size`` reads its own shards' windows of ``block_size + 1`` tokens
    in its plan's order (shards dealt out round-robin over a shuffled order, windows shuffled
    within each shard); ``batch_size`` consecutive windows make a batch, each window one
    storage request. Only full windows make batches and a last partial batch is dropped (as
    :meth:`iokit.ranks.RankReader.batches`). The share changes every epoch:
    :class:`Loader` calls :meth:`set_epoch` before each one (as ``DistributedSampler`` needs
    ``set_epoch`` in PyTorch). Within the rank, the loader's workers split the batches between
    them (each batch, so each window, made by exactly one worker). Plain shards only.
    """

    def __init__(self, shards, rank: int, world_size: int, *, batch_size: int,
                 block_size: int, storage=None, seed: int = 0):
        try:
            if any(s.compressed for s in shards.shards):
                raise ParameterError(f"reading by rank takes plain shards, but those in "
                                     f"{shards.folder} are block-compressed; write plain "
                                     "shards for each rank's reader.")
            self.reader = RankReader(shards, rank, world_size, block_size + 1, seed=seed)
            self.shards, self.dtype = shards, shards.dtype
            self.batch_size = check_positive("batch_size", batch_size)
            self.tokens_per_batch = self.batch_size * (block_size + 1)
            self.files = _ShardFiles(shards, storage)
            self.storage = self.files.storage
            self.set_epoch(0)
            if self.n_batches == 0:
                raise ParameterError(
                    f"rank {rank} of {world_size} gets {self.reader.n_tokens(0):,} tokens of "
                    f"{shards.folder} in epoch 0, less than one batch of "
                    f"{self.tokens_per_batch:,}; use a smaller batch_size or block_size, fewer "
                    "ranks, or more data.")
        except BaseException:
            shards.close()
            raise

    def describe(self) -> dict:
        """What fixes this source's batches (for a resume state's fingerprint)."""
        r = self.reader
        return {"source": "rank", "shards": shard_set_digest(self.shards), "rank": r.rank,
                "world_size": r.world_size, "rank_seed": r.seed,
                "tokens_per_batch": self.tokens_per_batch}

    def set_epoch(self, epoch: int) -> None:
        """Plan epoch ``epoch``: this rank's full windows, in its order."""
        self.epoch = epoch
        width = self.reader.window
        self.windows = [w for w in self.reader.plan(epoch) if len(w) == width]
        self.n_batches = len(self.windows) // self.batch_size

    def batch_windows(self, k: int) -> list:
        """The windows (:class:`iokit.ranks.Window`) batch ``k`` of this epoch is made of."""
        return self.windows[k * self.batch_size:(k + 1) * self.batch_size]

    def fetch(self, k: int) -> list:
        isz = self.dtype.itemsize
        read = self.files.read
        return [read(w.shard, w.start * isz, (w.stop - w.start) * isz)
                for w in self.windows[k * self.batch_size:(k + 1) * self.batch_size]]

    def decode(self, k: int, payload: list) -> np.ndarray:
        return np.frombuffer(b"".join(payload), dtype=self.dtype)

    def close(self) -> None:
        self.files.close()
        self.shards.close()


# --------------------------------------------------------------------------- resuming


@dataclass(frozen=True)
class LoaderState:
    """Where a loader is: ``position`` batches of epoch ``epoch`` already handed to the loop.

    The random state is ``seed`` itself: every epoch's order is drawn afresh from
    ``default_rng([seed, epoch])``, so no generator needs saving. ``plan`` holds what fixes the
    batches (the shard set's fingerprint, the batch shape, shuffle and seed, a rank's place);
    ``fingerprint`` is a digest of it, checked when a loader restores the state. Save it with
    :meth:`to_json` (or :meth:`to_dict`), read it back with :meth:`from_json`.
    """

    epoch: int
    position: int
    seed: int
    shuffle: bool
    plan: dict
    fingerprint: str
    version: int = STATE_VERSION

    def to_dict(self) -> dict:
        return {"version": self.version, "epoch": self.epoch, "position": self.position,
                "seed": self.seed, "shuffle": self.shuffle, "plan": dict(self.plan),
                "fingerprint": self.fingerprint}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d) -> LoaderState:
        """A state from :meth:`to_dict`'s form; a malformed one is a :class:`ResumeError`."""
        if not isinstance(d, dict):
            raise ResumeError(f"a loader state is a dict (from LoaderState.to_dict), got "
                              f"{type(d).__name__}; save the state with loader.state().")
        missing = [k for k in ("version", "epoch", "position", "seed", "shuffle", "plan",
                               "fingerprint") if k not in d]
        if missing:
            raise ResumeError(f"the loader state lacks {', '.join(missing)}; save the state "
                              "with loader.state().to_json(), not by hand.")
        if d["version"] != STATE_VERSION:
            raise ResumeError(f"loader state version {d['version']!r}, this kit reads version "
                              f"{STATE_VERSION}; start the epoch afresh.")
        for key in ("epoch", "position", "seed"):
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ResumeError(f"the loader state's {key} must be a whole number >= 0, got "
                                  f"{v!r}; save the state with loader.state().")
        if not isinstance(d["plan"], dict) or not isinstance(d["fingerprint"], str) or \
                _digest(d["plan"]) != d["fingerprint"]:
            raise ResumeError("the loader state's plan does not match its fingerprint (edited "
                              "or damaged); use a state saved by loader.state(), or start the "
                              "epoch afresh.")
        return cls(d["epoch"], d["position"], d["seed"], bool(d["shuffle"]), dict(d["plan"]),
                   d["fingerprint"], d["version"])

    @classmethod
    def from_json(cls, text) -> LoaderState:
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ResumeError(f"the loader state is not JSON ({exc}); save it with "
                              "loader.state().to_json().") from None
        return cls.from_dict(d)


def _digest(plan: dict) -> str:
    return hashlib.blake2b(json.dumps(plan, sort_keys=True).encode(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- the loader


@dataclass
class Batch:
    """One batch: its place in the epoch's order, which batch of the stream it is, x and y,
    and who made it (``worker-0``, ..., or ``loop`` when the training loop made it itself)."""

    position: int
    index: int
    x: np.ndarray
    y: np.ndarray
    worker: str = ""


def epoch_order(n_batches: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0
                ) -> np.ndarray:
    """The order batches arrive in: 0..n-1, or a permutation fixed by ``seed`` and ``epoch``."""
    if not shuffle:
        return np.arange(n_batches)
    return np.random.default_rng([seed, epoch]).permutation(n_batches)


def make_batch(tokens: np.ndarray, batch_size: int, block_size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Token IDs → (x, y): ``batch_size`` rows of ``block_size`` int64 IDs, y shifted by one."""
    return inputs_and_targets(np.asarray(tokens).reshape(batch_size, block_size + 1)
                              .astype(np.int64))


class Loader:
    """Batches from a source, made by background workers, handed over in a fixed order.

    ``for batch in loader`` runs one epoch (``loader.epoch`` counts them). Use it in a ``with``
    block, or just iterate: leaving the loop (``break``, an exception) stops the workers too.
    ``state()`` says where it is; ``restore(state)`` (in a new process, say) carries on from
    there. ``timeline``: a :class:`~iokit.timing.Timeline` to record each batch's stages on
    (None: nothing is recorded, and nothing is paid for it). ``adaptive=False`` keeps the
    workers making every batch, even those quicker to make than to hand over.
    """

    def __init__(self, source, *, batch_size: int, block_size: int, workers: int = 2,
                 prefetch: int = 4, shuffle: bool = False, seed: int = 0, limit: int | None = None,
                 timeline: Timeline | None = None, adaptive: bool = True):
        self.source = source
        self.batch_size = check_positive("batch_size", batch_size)
        self.block_size = check_positive("block_size", block_size)
        if source.tokens_per_batch != self.batch_size * (self.block_size + 1):
            raise ParameterError(
                f"the source makes batches of {source.tokens_per_batch:,} tokens, but "
                f"batch_size × (block_size + 1) = {self.batch_size * (self.block_size + 1):,}.")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ParameterError(f"workers must be a whole number >= 0, got {workers!r} (0 "
                                 "loads in the training loop itself).")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ParameterError(f"prefetch must be a whole number >= 0, got {prefetch!r} (0 "
                                 "loads only when the loop asks).")
        # the batches in flight (x and y, int64) must fit in memory: checked before any is made
        check_size("batches in flight (prefetch + 1)", prefetch + 1,
                   item_bytes=16 * self.batch_size * (self.block_size + 1))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ParameterError(f"seed must be a whole number >= 0, got {seed!r}.")
        self.workers, self.prefetch = min(workers, MAX_WORKERS), prefetch  # as WorkerPool caps
        self.shuffle, self.seed = shuffle, int(seed)
        self.limit = None if limit is None else check_positive("limit", limit)
        self.timeline = timeline
        self.adaptive = bool(adaptive)  # may the loop make quick batches itself?
        self._tokens = hasattr(source, "tokens")
        self.epoch = 0
        self._threads: list[threading.Thread] = []
        self._run: _Run | None = None  # the hand-off of the epoch under way
        self._quick = False  # did the last epoch end with the loop making its batches itself?
        self._own_s = float("inf")  # seconds per batch the loop took, last it made its own
        self._resume_at = 0  # where the next epoch starts (a restored state's position)
        self._cursor: list | None = None  # [epoch, batches handed over, batches in it]

    @property
    def n_batches(self) -> int:
        """Batches per epoch (or ``limit``, if smaller)."""
        n = self.source.n_batches
        return n if self.limit is None else min(n, self.limit)

    def load(self, index: int, worker: str) -> tuple[np.ndarray, np.ndarray]:
        """Make batch ``index``: read, decompress, batch (each a span on the timeline, if any)."""
        src, tl = self.source, self.timeline
        if tl is None:  # nothing recorded: the source's quickest way to the tokens
            tokens = src.tokens(index) if self._tokens else src.decode(index, src.fetch(index))
            w = tokens.reshape(self.batch_size, self.block_size + 1).astype(np.int64)
            return w[:, :-1], w[:, 1:]
        t0 = perf_counter()
        payload = src.fetch(index)
        t1 = perf_counter()
        tokens = src.decode(index, payload)
        t2 = perf_counter()
        batch = make_batch(tokens, self.batch_size, self.block_size)
        tl.add_stamps(worker, STAGES, (t0, t1, t2, perf_counter()))
        return batch

    # ------------------------------------------------------------------ where it is

    def plan(self) -> dict:
        """What fixes the sequence of batches: the source (shard set, rank), batch shape,
        shuffle and seed. Not the worker count or prefetch depth: those never change it."""
        describe = getattr(self.source, "describe", None)
        src = describe() if describe else {"source": type(self.source).__name__,
                                           "n_batches": self.source.n_batches}
        return {**src, "batch_size": self.batch_size, "block_size": self.block_size,
                "shuffle": self.shuffle, "seed": self.seed if self.shuffle else None}

    def state(self) -> LoaderState:
        """Where the loader is: the epoch under way (or next) and the batches of it already
        handed to the loop. Save it after a training step; :meth:`restore` it to go on."""
        if self._cursor is None:
            epoch, position = self.epoch, self._resume_at
        else:
            epoch, position, n = self._cursor
            if position >= n:  # every batch of that epoch was handed over
                epoch, position = epoch + 1, 0
        plan = self.plan()
        return LoaderState(epoch, position, self.seed, self.shuffle, plan, _digest(plan))

    def restore(self, state) -> None:
        """Carry on from ``state`` (a :class:`LoaderState`, its dict or its JSON): the next
        ``for batch in loader`` yields the rest of that epoch, the batches the saved run had
        not handed over yet, in the same order, whatever the worker count."""
        if isinstance(state, str):
            state = LoaderState.from_json(state)
        elif isinstance(state, dict):
            state = LoaderState.from_dict(state)
        elif not isinstance(state, LoaderState):
            raise ResumeError(f"restore takes a LoaderState (or its dict or JSON), got "
                              f"{type(state).__name__}.")
        plan = self.plan()
        if state.fingerprint != _digest(plan):
            keys = sorted(set(plan) | set(state.plan))
            diff = "; ".join(f"{k}: saved {state.plan.get(k)!r}, here {plan.get(k)!r}"
                             for k in keys if plan.get(k) != state.plan.get(k))
            what = "another shard set" if plan.get("shards") != state.plan.get("shards") \
                else "another epoch plan"
            raise ResumeError(
                f"this loader state (fingerprint {state.fingerprint}) was saved by a loader "
                f"over {what} ({diff}); open the loader on the shards and with the settings "
                "of the run that saved it, or start the epoch afresh without restoring.")
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(state.epoch)
        if state.position > self.n_batches:
            raise ResumeError(f"the loader state is at batch {state.position:,} of epoch "
                              f"{state.epoch}, which has {self.n_batches:,}; it was saved "
                              "with another limit, or edited: start the epoch afresh.")
        self.epoch, self._resume_at, self._cursor = state.epoch, state.position, None

    # ------------------------------------------------------------------ one epoch

    def __iter__(self) -> Iterator[Batch]:
        if hasattr(self.source, "set_epoch"):  # a source whose batches change every epoch
            self.source.set_epoch(self.epoch)
        order = epoch_order(self.source.n_batches, shuffle=self.shuffle, seed=self.seed,
                            epoch=self.epoch)[:self.n_batches].tolist()
        start, self._resume_at = min(self._resume_at, len(order)), 0
        self._cursor = [self.epoch, start, len(order)]
        self.epoch += 1
        if self.workers == 0:
            return self._inline(order, start)
        return self._background(order, start)

    def _inline(self, order: list, start: int) -> Iterator[Batch]:
        load, cursor = self.load, self._cursor
        for p in range(start, len(order)):
            k = order[p]
            x, y = load(k, "loop")
            cursor[1] = p + 1
            yield Batch(p, k, x, y, "loop")

    def _background(self, order: list, start: int) -> Iterator[Batch]:
        run = self._run = _Run(order, start, self.prefetch)
        # An epoch starts as the last one ended: with workers making the batches, or (quick
        # batches) with the loop making them and no thread started until they turn slow.
        run.awake = not (self.adaptive and self._quick)
        if run.awake:
            self._start_workers(run)
        load, cursor, size, ready, values, lock = self.load, self._cursor, run.size, \
            run.ready, run.values, run.lock
        p, n = start, run.n
        own_s = self._own_s  # seconds the loop took to make a batch itself, last it did
        last_slow = False  # was the loop's last timed batch slow?
        handed, waited = 0, 0.0  # batches from workers, and the loop's wait for them
        try:
            while p < n:
                run.asked = p + 1  # the loop wants batch p: the window moves on by one place
                if run.sleeping and run.awake:
                    run.wake(all_=False)
                i = p % size
                if not ready[i].acquire(blocking=False):  # not made yet
                    mine = p
                    if not run.awake:  # quick batches: the loop makes the next ones itself
                        with lock:
                            if run.next == p:  # (unless a worker has claimed p)
                                run.next = mine = min(p + LOOP_RUN, n)
                    if mine > p:  # its own run of positions, made as the inline loop does;
                        took = []  # the first of every SAMPLE_EVERY batches is timed
                        while p < mine:
                            k, t0 = order[p], perf_counter()
                            try:
                                x, y = load(k, "loop")
                            except Exception as exc:  # the kit's error, as a worker's (Ctrl-C
                                raise _loader_error(exc, "loop", k, p) from exc  # stays one)
                            took.append(perf_counter() - t0)
                            p += 1
                            cursor[1] = p
                            yield Batch(p - 1, k, x, y, "loop")
                            if took[-1] > QUICK_BATCH_S:
                                if last_slow:  # two samples in a row: storage turned slow
                                    break
                                last_slow = True
                            else:
                                last_slow = False
                            stop = min(p + SAMPLE_EVERY - 1, mine)
                            for q in range(p, stop):  # untimed, exactly as the inline loop
                                k = order[q]
                                try:
                                    x, y = load(k, "loop")
                                except Exception as exc:
                                    raise _loader_error(exc, "loop", k, q) from exc
                                cursor[1] = q + 1
                                yield Batch(q, k, x, y, "loop")
                            p = stop
                        if p < mine:  # turned slow: the workers make the rest of the run
                            with lock:
                                run.next = p
                            own_s = self._own_s = took[-1]
                        else:  # the median: one batch held up (a busy machine) is no reason
                            own_s = self._own_s = sorted(took)[len(took) // 2]
                        if own_s > QUICK_BATCH_S:  # slow now: workers take over
                            if not self._threads:
                                self._start_workers(run)
                            run.wake()
                        continue
                    t0 = perf_counter()
                    ready[i].acquire()  # wait for the worker that claimed it
                    waited += perf_counter() - t0
                handed += 1
                if handed == WAIT_WINDOW:  # do the workers keep the loop waiting longer
                    if run.awake and self.adaptive and own_s < QUICK_BATCH_S and \
                            waited > WAIT_WINDOW * 2 * own_s:  # than making them itself?
                        run.awake = False
                    handed, waited = 0, 0.0
                value, values[i] = values[i], None
                if value.__class__ is LoaderError:
                    raise value
                x, y, worker = value
                p += 1
                cursor[1] = p
                yield Batch(p - 1, order[p - 1], x, y, worker)
        finally:
            self._quick = not run.awake
            self._stop(run)

    def _start_workers(self, run: _Run) -> None:
        self._threads = [
            threading.Thread(target=self._work, args=(run, f"worker-{w}"),
                             name=f"iokit-loader-{w}", daemon=True)
            for w in range(self.workers)]
        for t in self._threads:
            t.start()

    def _work(self, run: _Run, worker: str) -> None:
        """One worker: claim the next positions while the prefetch window has room, make those
        batches outside any lock, and put each in its position's slot."""
        load, order = self.load, run.order
        several = False  # were this worker's last batches small enough to claim several?
        while True:
            p, stop = run.claim(CLAIM_MOST if several else 1)
            if p is None:
                return
            made, took = [], []
            for q in range(p, stop):
                if q > run.failed or run.stop:  # after a failed batch, none is started
                    break
                t0 = perf_counter()
                try:
                    made.append((q, (*load(order[q], worker), worker)))
                except BaseException as exc:  # noqa: BLE001 - handed to the loop, not lost
                    run.failed = min(run.failed, q)
                    made.append((q, _loader_error(exc, worker, order[q], q)))
                    break
                took.append(perf_counter() - t0)
            per_batch = sorted(took)[len(took) // 2] if took else 0.0  # the median
            several = per_batch < SMALL_BATCH_S
            if self.adaptive and per_batch < QUICK_BATCH_S:  # as quick as a hand-off:
                run.awake = False  # the loop makes them itself from now on
            for q, value in made:  # hand over by position: order never depends on timing
                run.values[q % run.size] = value
                run.ready[q % run.size].release()
            if made and made[-1][1].__class__ is LoaderError:
                return

    def _stop(self, run: _Run) -> None:
        with run.cond:
            run.stop = True
            run.cond.notify_all()  # every worker waiting for a place
        for t in self._threads:
            t.join(JOIN_TIMEOUT_S)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = []
        if alive:  # pragma: no cover - a storage read that never returns
            raise LoaderError(f"loader threads {', '.join(alive)} did not stop within "
                              f"{JOIN_TIMEOUT_S:g} s; a storage read may be stuck.")

    def close(self) -> None:
        """Stop the workers of an epoch left unfinished, and release the source (workers stop
        by themselves when an epoch ends or the loop leaves)."""
        if self._threads and self._run is not None:
            self._stop(self._run)
        self.source.close()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Run:
    """One epoch's hand-off between the workers and the loop.

    The prefetch window: positions below ``asked + prefetch`` may be claimed, where ``asked``
    counts the positions the loop has asked for. Workers claim the next positions under
    ``cond`` (one, or several at once while batches are small) and sleep on it only when the
    window is full; the loop moves the window on and wakes one sleeping worker, and none when
    no worker sleeps. Position ``p`` goes through slot ``p % (prefetch + 1)``: ``values``
    holds what was made, and ``ready`` (a lock, held while the slot is empty) is released by
    the worker that filled it, which wakes the loop only when it waits for that very slot.
    While batches are quicker to make than to hand over (``awake`` false), workers sleep and
    the loop makes its batches itself.
    """

    def __init__(self, order: list, start: int, prefetch: int):
        self.order, self.n, self.prefetch = order, len(order), prefetch
        self.size = prefetch + 1
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.next = start  # the next position to claim (under ``cond``)
        self.asked = start  # positions the loop has asked for, plus ``start``
        self.sleeping = 0  # workers waiting in ``cond``
        self.failed = self.n  # the first position that failed
        self.stop = False
        self.awake = True  # false: batches are quick, the loop makes them itself
        self.values: list = [None] * self.size
        self.ready = [threading.Lock() for _ in range(self.size)]
        for lock in self.ready:
            lock.acquire()  # empty

    def wake(self, all_: bool = True) -> None:
        """Wake one sleeping worker (the window moved on by one place), or all (the loop's
        own batches became slow: the workers make them again)."""
        with self.cond:
            if all_:
                self.awake = True
                self.cond.notify_all()
            else:
                self.cond.notify()

    def claim(self, most: int) -> tuple[int | None, int]:
        """The next positions (at most ``most``) for a worker, or (None, 0) when it is done."""
        with self.cond:
            while not self.stop and self.next < self.n and (
                    not self.awake or self.next >= self.asked + self.prefetch):
                self.sleeping += 1
                self.cond.wait()
                self.sleeping -= 1
            if self.stop or self.next >= self.n:
                return None, 0
            p = self.next
            self.next = min(p + most, self.asked + self.prefetch, self.n)
            return p, self.next

def _loader_error(exc: BaseException, worker: str, index: int, position: int) -> LoaderError:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    err = LoaderError(f"{worker} failed on batch {index} (position {position} of the epoch): "
                      f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    err.worker_traceback = tb
    if hasattr(err, "add_note"):
        err.add_note(f"the worker's traceback:\n{tb}")
    return err


# --------------------------------------------------------------------------- opening a loader


def open_loader(folder, *, storage: str = "local", codec: str = "none", workers: int = 2,
                prefetch: int = 4, batch_size: int = 16, block_size: int = 256,
                shuffle: bool = True, seed: int = 0, limit: int | None = None,
                codec_block_bytes: int | None = None, timeline: Timeline | None = None,
                workdir=None, rank: int | None = None, world_size: int = 1,
                resume=None, adaptive: bool = True) -> Loader:
    """A :class:`Loader` over the shards in ``folder``, read from ``storage``.

    With ``rank`` (0 to ``world_size - 1``) it loads only that rank's share of every epoch
    (:class:`RankBatches`: plain shards, the rank's own shuffled order, so ``shuffle`` is not
    applied on top).

    ``storage``: ``"local"`` or a simulated preset (``object-store``, ...). ``codec``:
    ``"none"`` reads the shards as they are (plain or block-compressed); a codec name
    (``"zstd:3"``) reads a block-compressed copy of plain shards, made once in ``workdir``
    (default: beside the shard folder) with one block per batch unless ``codec_block_bytes``
    says otherwise. ``resume``: a :class:`LoaderState` (or its dict or JSON) saved by an
    interrupted run with the same shards and settings; the loader carries on from there.
    ``adaptive``: see :class:`Loader`.
    """
    tokens = check_positive("batch_size", batch_size) * (check_positive("block_size",
                                                                        block_size) + 1)
    if codec != "none":
        with open_shards(folder) as plain:
            if plain.shards[0].compressed:
                raise ParameterError(f"the shards in {folder} are compressed already; open "
                                     "them with codec='none'.")
            block_bytes = codec_block_bytes or tokens * plain.dtype.itemsize
            largest = max(s.n_tokens for s in plain.shards) * plain.dtype.itemsize
            # The name carries the shards' checksums: rewritten shards never reuse a stale copy.
            digest = hashlib.blake2b(b"".join(s.checksum.to_bytes(8, "little")
                                              for s in plain.shards), digest_size=4).hexdigest()
        out = Path(workdir or Path(folder).parent) / \
            f"{Path(folder).name}-{codec.replace(':', '-')}-{block_bytes}-{digest}"
        if not (out / "shard-00000.idx").exists():
            # One block per batch: a batch is about one request and one decompression.
            rewrite_shards(folder, out, codec=codec, block_bytes=block_bytes,
                           max_shard_bytes=max(largest, 1))
        folder = out
    if rank is not None:
        if codec != "none":
            raise ParameterError("reading by rank takes plain shards; leave codec='none'.")
        source = RankBatches(open_shards(folder), rank, world_size, batch_size=batch_size,
                             block_size=block_size, storage=open_storage(storage), seed=seed)
        shuffle = False
    else:
        source = ShardBatches(open_shards(folder), tokens, open_storage(storage))
    try:
        loader = Loader(source, batch_size=batch_size, block_size=block_size, workers=workers,
                        prefetch=prefetch, shuffle=shuffle, seed=seed, limit=limit,
                        timeline=timeline, adaptive=adaptive)
        if resume is not None:
            loader.restore(resume)
    except BaseException:
        source.close()
        raise
    return loader
