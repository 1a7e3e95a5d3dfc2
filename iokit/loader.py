"""The pipeline: background workers read, decompress and batch shards while the model trains.

A training step should never wait for data. :class:`Loader` hands batches to a training loop
through a bounded prefetch queue, filled by ``workers`` background threads; each worker makes
one batch at a time in three stages, every one recorded as a span in a :class:`~iokit.timing.
Timeline`::

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

Shutdown is clean whatever happens: leaving the ``for`` loop early, an exception in the loop,
or an error in a worker stops and joins every worker thread before control returns. A worker's
exception reaches the loop as :class:`LoaderError` naming the worker and the batch, with the
worker's traceback attached (as its ``__cause__`` and as a note), at the failed batch's place
in the order: every batch before it still arrives, none after it is started.
"""

from __future__ import annotations

import hashlib
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iokit.blocks import BlockReader
from iokit.errors import LoaderError, ParameterError, check_positive, check_size
from iokit.parallel import MAX_WORKERS
from iokit.preprocess import rewrite_shards
from iokit.ranks import RankReader
from iokit.shards import inputs_and_targets, open_shards
from iokit.storage import LocalDisk, open_storage
from iokit.timing import Timeline

STAGES = ("read", "decompress", "batch")
JOIN_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- batch sources


class ShardBatches:
    """Batches of a shard set, plain or block-compressed, read through a storage backend.

    ``fetch(k)`` is the I/O (stage ``read``): one request per plain shard piece the batch
    touches (usually one), or one per compressed block. ``decode(k, payload)`` turns those bytes
    into token IDs (stage ``decompress``: check and decompress the blocks and keep the batch's
    tokens; nothing to do for plain shards). Any object with ``n_batches``,
    ``tokens_per_batch``, ``fetch``, ``decode`` and ``close`` can feed a :class:`Loader`.
    """

    def __init__(self, shards, tokens_per_batch: int, storage=None):
        self.shards = shards
        self.dtype = shards.dtype
        self.tokens_per_batch = check_positive("tokens per batch", tokens_per_batch)
        self.storage = storage if storage is not None else LocalDisk()
        self.n_batches = shards.n_tokens // self.tokens_per_batch
        if self.n_batches == 0:
            raise ParameterError(
                f"a batch needs {self.tokens_per_batch:,} tokens, but the shards in "
                f"{shards.folder} hold {shards.n_tokens:,}; use a smaller batch_size or "
                "block_size, or more data.")
        self.readers = {}  # shard number -> BlockReader over this storage (compressed shards)
        for i, shard in enumerate(shards.shards):
            if getattr(shard, "blocks", None) is not None:
                self.readers[i] = BlockReader(shard.bin_path, shard.blocks, 0,
                                              storage=self.storage)
        codecs = {r.table.codec for r in self.readers.values()}
        self.codec = ", ".join(sorted(codecs)) if codecs else "none"

    def _pieces(self, k: int):
        """(shard number, first token, end token) of each shard piece batch ``k`` covers."""
        start, stop = k * self.tokens_per_batch, (k + 1) * self.tokens_per_batch
        starts = self.shards.starts
        s = int(np.searchsorted(starts, start, side="right")) - 1
        while start < stop:
            base, end = int(starts[s]), min(stop, int(starts[s + 1]))
            if end > start:
                yield s, start - base, end - base
            start = max(start, end)
            s += 1

    def fetch(self, k: int) -> list:
        isz = self.dtype.itemsize
        payload = []
        for s, a, b in self._pieces(k):
            reader = self.readers.get(s)
            if reader is None:
                path = self.shards.shards[s].bin_path
                payload.append(self.storage.read(path, a * isz, (b - a) * isz))
            else:
                bs = reader.table.block_bytes
                payload.append([reader.fetch(i) for i in range(a * isz // bs,
                                                                 ((b * isz) - 1) // bs + 1)])
        return payload

    def decode(self, k: int, payload: list) -> np.ndarray:
        isz = self.dtype.itemsize
        parts = []
        for (s, a, b), data in zip(self._pieces(k), payload):
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
        if hasattr(self.storage, "close"):
            self.storage.close()
        self.shards.close()


class RankBatches:
    """The batches of one rank's share of each epoch (:mod:`iokit.ranks`), read from storage.

    Rank ``rank`` of ``world_size`` reads its own shards' windows of ``block_size + 1`` tokens
    in its plan's order (shards dealt out round-robin over a shuffled order, windows shuffled
    within each shard); ``batch_size`` consecutive windows make a batch, each window one
    storage request. Only full windows make batches and a last partial batch is dropped (as
    :meth:`iokit.ranks.RankReader.batches`). The share changes every epoch:
    :class:`Loader` calls :meth:`set_epoch` before each one (as ``DistributedSampler`` needs
    ``set_epoch`` in PyTorch). Plain (uncompressed) shards only.
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
            self.storage = storage if storage is not None else LocalDisk()
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

    def set_epoch(self, epoch: int) -> None:
        """Plan epoch ``epoch``: this rank's full windows, in its order."""
        self.epoch = epoch
        width = self.reader.window
        self.windows = [w for w in self.reader.plan(epoch) if len(w) == width]
        self.n_batches = len(self.windows) // self.batch_size

    def fetch(self, k: int) -> list:
        isz = self.dtype.itemsize
        shards = self.shards.shards
        return [self.storage.read(shards[w.shard].bin_path, w.start * isz, len(w) * isz)
                for w in self.windows[k * self.batch_size:(k + 1) * self.batch_size]]

    def decode(self, k: int, payload: list) -> np.ndarray:
        return np.frombuffer(b"".join(payload), dtype=self.dtype)

    def close(self) -> None:
        self.shards.close()


# --------------------------------------------------------------------------- the loader


@dataclass
class Batch:
    """One batch: its place in the epoch's order, which batch of the stream it is, x and y."""

    position: int
    index: int
    x: np.ndarray
    y: np.ndarray


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
    """

    def __init__(self, source, *, batch_size: int, block_size: int, workers: int = 2,
                 prefetch: int = 4, shuffle: bool = False, seed: int = 0, limit: int | None = None,
                 timeline: Timeline | None = None):
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
        self.workers, self.prefetch = min(workers, MAX_WORKERS), prefetch  # as WorkerPool caps
        self.shuffle, self.seed = shuffle, seed
        self.limit = None if limit is None else check_positive("limit", limit)
        self.timeline = timeline if timeline is not None else Timeline()
        self.epoch = 0
        self._threads: list[threading.Thread] = []

    @property
    def n_batches(self) -> int:
        """Batches per epoch (or ``limit``, if smaller)."""
        n = self.source.n_batches
        return n if self.limit is None else min(n, self.limit)

    def load(self, index: int, worker: str) -> tuple[np.ndarray, np.ndarray]:
        """Make batch ``index``: read, decompress, batch, each recorded on the timeline."""
        tl = self.timeline
        with tl.span("read", worker):
            payload = self.source.fetch(index)
        with tl.span("decompress", worker):
            tokens = self.source.decode(index, payload)
        with tl.span("batch", worker):
            return make_batch(tokens, self.batch_size, self.block_size)

    def __iter__(self) -> Iterator[Batch]:
        if hasattr(self.source, "set_epoch"):  # a source whose batches change every epoch
            self.source.set_epoch(self.epoch)
        order = epoch_order(self.source.n_batches, shuffle=self.shuffle, seed=self.seed,
                            epoch=self.epoch)[:self.n_batches]
        self.epoch += 1
        if self.workers == 0:
            return self._inline(order)
        return self._background(order)

    def _inline(self, order) -> Iterator[Batch]:
        for p, k in enumerate(order.tolist()):
            yield Batch(p, k, *self.load(k, "loop"))

    def _background(self, order) -> Iterator[Batch]:
        n = len(order)
        state = _Shared(threading.Condition())
        self._threads = [
            threading.Thread(target=self._work, args=(state, order, f"worker-{w}"),
                             name=f"iokit-loader-{w}", daemon=True)
            for w in range(self.workers)]
        for t in self._threads:
            t.start()
        try:
            for p in range(n):
                with state.cond:
                    state.asked = p + 1  # the loop wants batch p now
                    state.cond.notify_all()
                    while p not in state.ready and p not in state.errors and \
                            not (state.errors and p >= state.next):
                        state.cond.wait()
                    if p not in state.ready:  # this batch failed, or will never be made
                        raise state.errors.get(p) or state.errors[min(state.errors)]
                    x, y = state.ready.pop(p)
                    state.cond.notify_all()
                yield Batch(p, int(order[p]), x, y)
        finally:
            self._stop(state)

    def _work(self, state: _Shared, order, worker: str) -> None:
        n = len(order)
        while True:
            with state.cond:
                while not state.stop and state.next < n and \
                        state.next >= state.asked + self.prefetch:
                    state.cond.wait()
                if state.stop or state.errors or state.next >= n:
                    return
                p = state.next
                state.next += 1
            try:
                batch = self.load(int(order[p]), worker)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, not lost
                with state.cond:  # batches before it still arrive; none after it is started
                    state.errors[p] = _loader_error(exc, worker, int(order[p]), p)
                    state.cond.notify_all()
                return
            with state.cond:
                state.ready[p] = batch
                state.cond.notify_all()

    def _stop(self, state: _Shared) -> None:
        with state.cond:
            state.stop = True
            state.ready.clear()
            state.cond.notify_all()
        for t in self._threads:
            t.join(JOIN_TIMEOUT_S)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = []
        if alive:  # pragma: no cover - a storage read that never returns
            raise LoaderError(f"loader threads {', '.join(alive)} did not stop within "
                              f"{JOIN_TIMEOUT_S:g} s; a storage read may be stuck.")

    def close(self) -> None:
        """Release the source (workers stop when an epoch ends or the loop leaves)."""
        self.source.close()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Shared:
    """What the loop and the workers share, guarded by ``cond``."""

    cond: threading.Condition
    next: int = 0  # the next position a worker will take
    asked: int = 0  # positions the loop has asked for (including the one it waits for)
    ready: dict = field(default_factory=dict)  # position -> (x, y)
    stop: bool = False
    errors: dict = field(default_factory=dict)  # position -> LoaderError


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
                workdir=None, rank: int | None = None, world_size: int = 1) -> Loader:
    """A :class:`Loader` over the shards in ``folder``, read from ``storage``.

    With ``rank`` (0 to ``world_size - 1``) it loads only that rank's share of every epoch
    (:class:`RankBatches`: plain shards, the rank's own shuffled order, so ``shuffle`` is not
    applied on top).

    ``storage``: ``"local"`` or a simulated preset (``object-store``, ...). ``codec``:
    ``"none"`` reads the shards as they are (plain or block-compressed); a codec name
    (``"zstd:3"``) reads a block-compressed copy of plain shards, made once in ``workdir``
    (default: beside the shard folder) with one block per batch unless ``codec_block_bytes``
    says otherwise.
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
        return Loader(source, batch_size=batch_size, block_size=block_size, workers=workers,
                      prefetch=prefetch, shuffle=False, limit=limit, timeline=timeline)
    source = ShardBatches(open_shards(folder), tokens, open_storage(storage))
    return Loader(source, batch_size=batch_size, block_size=block_size, workers=workers,
                  prefetch=prefetch, shuffle=shuffle, seed=seed, limit=limit, timeline=timeline)
