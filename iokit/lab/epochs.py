"""One training epoch two ways, and random-window sampling: the measurements of notebook 02.

* :func:`raw_epoch` — what a loader that tokenizes on the fly does every epoch: read the text
  corpus and encode every document to IDs.
* :func:`shard_epoch` — the same epoch from pretokenized shards: read the stored IDs (memory
  mapped) and widen them to ``int64``, as a training loop would.
* :func:`sampling_rate` — random training windows per second from a shard set, warm or cold
  (page cache dropped before every run), beside :func:`copy_rate`, a plain numpy copy of the
  same number of bytes: the ceiling for moving those bytes in memory.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.corpus import iter_documents, open_corpus
from iokit.costs import EpochCostModel, token_itemsize
from iokit.shards import ShardSet, open_shards
from iokit.storage import drop_cache, resident_fraction
from iokit.timing import MB, Timeline, Timing, measure, stopwatch


@dataclass
class EpochResult:
    """One pass over the corpus: text bytes it stands for, tokens delivered, seconds by stage."""

    name: str
    text_bytes: int
    tokens: int
    stage_seconds: dict[str, float]
    seconds: float

    @property
    def mb_per_s(self) -> float:
        """Corpus text megabytes per second (the same yardstick for both kinds of epoch)."""
        return self.text_bytes / self.seconds / MB if self.seconds > 0 else float("inf")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")


def raw_epoch(corpus, tokenizer, text_field: str = "text") -> EpochResult:
    """Read every document of ``corpus`` and encode it: the cost paid every epoch without shards.

    "read" covers reading and parsing the JSONL (the file is read whole, ``corpus`` bytes);
    "tokenize" covers ``tokenizer.encode``.
    """
    corpus = open_corpus(corpus, text_field)
    tl = Timeline()
    tokens = 0
    start = tl.now()
    docs = iter_documents(corpus)
    while True:
        with tl.span("read"):
            doc = next(docs, None)
        if doc is None:
            break
        with tl.span("tokenize"):
            tokens += len(tokenizer.encode(doc.text)) + 1  # + the end-of-document ID
    seconds = tl.now() - start
    return EpochResult(f"raw text + {tokenizer.kind} tokenizer", corpus.stat().st_size, tokens,
                       tl.totals(), seconds)


def shard_epoch(shards, text_bytes: int, chunk_tokens: int = 1 << 20) -> EpochResult:
    """Read every stored token once, in order, widened to ``int64`` (``shards``: set or folder).

    ``text_bytes`` is the size of the text the shards were made from, so MB/s compare with
    :func:`raw_epoch`.
    """
    shard_set = shards if isinstance(shards, ShardSet) else open_shards(shards)
    tokens = 0
    with stopwatch() as sw:
        for chunk in shard_set.iter_chunks(chunk_tokens):
            tokens += len(chunk.astype(np.int64))
    seconds = sw.seconds
    return EpochResult(f"{shard_set.dtype.name} shards (memmap)", text_bytes, tokens,
                       {"read": seconds}, seconds)


@dataclass
class SamplingResult:
    """Random-window sampling: batches timed, tokens and stored bytes per batch, warm or cold."""

    batch_size: int
    block_size: int
    batches: int
    timing: Timing
    itemsize: int
    cold: bool
    resident_before: float | None  # page-cache residency of the .bin files before a run

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.block_size

    @property
    def tokens_per_s(self) -> float:
        return self.batches * self.tokens_per_batch / self.timing.median

    @property
    def bytes_per_batch(self) -> int:
        """Stored bytes read per batch (each window is ``block_size + 1`` tokens)."""
        return self.batch_size * (self.block_size + 1) * self.itemsize

    @property
    def seconds_per_batch(self) -> float:
        return self.timing.median / self.batches


def sampling_rate(folder, batch_size: int, block_size: int, *, batches: int = 20,
                  cold: bool = False, repeat: int = 5, seed: int = 0) -> SamplingResult:
    """Time ``batches`` calls of ``sample_batch`` on the shards in ``folder``.

    Warm: the shards are opened once and every page is touched before timing, so the data is
    cached and mapped. Cold: before every run the page cache of every ``.bin`` is dropped and
    the shards are opened afresh, so the first touch of each page waits for the device.
    Pages that another open :class:`ShardSet` has touched stay mapped and cannot be dropped:
    close other sets of the same folder first (``resident_before`` shows what happened).
    """
    rng = np.random.default_rng(seed)
    paths = sorted(Path(folder).glob("*.bin"))
    state: dict = {}

    def resident():
        fractions = [resident_fraction(p) for p in paths]
        return None if None in fractions or not paths else float(np.mean(fractions))

    def cold_setup():  # untimed: drop the cache, then open afresh
        if state.get("set") is not None:
            state["set"].close()
        for p in paths:
            drop_cache(p)
        state["resident"] = resident()
        state["set"] = open_shards(folder)

    if not cold:
        state["set"] = open_shards(folder)
        for chunk in state["set"].iter_chunks():  # map and cache every page
            chunk.sum()
        state["resident"] = resident()

    def run():
        s = state["set"]
        for _ in range(batches):
            s.sample_batch(rng, batch_size, block_size)

    timing = measure(run, repeat=repeat, warmup=0 if cold else 1,
                     setup=cold_setup if cold else None,
                     label=f"sample {batch_size}×{block_size}")
    itemsize = state["set"].dtype.itemsize
    state["set"].close()
    return SamplingResult(batch_size, block_size, batches, timing, itemsize, cold,
                          state.get("resident"))


def copy_rate(nbytes: int, repeat: int = 7, number: int = 50) -> Timing:
    """A plain numpy copy of ``nbytes`` between two in-memory arrays (``number`` per run)."""
    src = np.frombuffer(np.random.default_rng(0).bytes(nbytes), dtype=np.uint8)
    dst = np.empty_like(src)

    def run():
        for _ in range(number):
            np.copyto(dst, src)

    t = measure(run, repeat=repeat, warmup=1, nbytes=nbytes * number, label="numpy copy")
    return t


def predict_epochs(corpus, tokenizer, sample_docs: int = 50):
    """Predict R, S and P of :class:`~iokit.costs.EpochCostModel` from small measurements.

    Times the tokenizer on the first ``sample_docs`` documents (text bytes per second, tokens
    per byte) and a numpy copy (memory bandwidth), then scales to the whole corpus:
    R = text / tokenizer rate; S = tokens × (stored bytes + 8 int64 bytes) / memory bandwidth;
    P = R + stored bytes / memory bandwidth (writing into the page cache). Returns
    ``(model, facts)`` where ``facts`` holds the measured rates.
    """
    corpus = open_corpus(corpus)
    texts = [d.text for d in itertools.islice(iter_documents(corpus), sample_docs)]
    sample_bytes = sum(len(t.encode("utf-8")) for t in texts)
    sample_tokens = sum(len(tokenizer.encode(t)) + 1 for t in texts)
    tok_time = measure(lambda: [tokenizer.encode(t) for t in texts], repeat=3)
    mem = copy_rate(1 << 22, repeat=5, number=5)
    text_bytes = corpus.stat().st_size
    itemsize = token_itemsize(tokenizer.vocab_size)
    n_tokens = text_bytes * sample_tokens / sample_bytes
    bandwidth = mem.nbytes / mem.median
    raw = text_bytes / (sample_bytes / tok_time.median)
    shard = n_tokens * (itemsize + 8) / bandwidth
    preprocess = raw + n_tokens * itemsize / bandwidth
    facts = {"tokenize_bytes_per_s": sample_bytes / tok_time.median,
             "tokens_per_byte": sample_tokens / sample_bytes,
             "memory_bytes_per_s": bandwidth, "tokens": n_tokens}
    return EpochCostModel(preprocess, raw, shard), facts
