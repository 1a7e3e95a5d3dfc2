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
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.corpus import iter_documents, open_corpus, write_head
from iokit.costs import Check, EpochCostModel, fit_sampling_model, token_itemsize
from iokit.shards import DEFAULT_MAX_SHARD_BYTES, ShardSet, choose_dtype, open_shards
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


def predict_epochs(corpus, tokenizer, sample_docs: int | None = None, *,
                   sample_bytes: int = 2 << 20, max_shard_bytes: int | None = None,
                   repeat: int = 3):
    """Predict R, S and P of :class:`~iokit.costs.EpochCostModel` from a sample, stage by stage.

    The corpus' first ``sample_bytes`` (at most a quarter of it; or its first ``sample_docs``
    documents) are copied aside and each stage is timed there on its own: reading and parsing
    the JSONL, encoding to IDs (:func:`raw_epoch`'s two stages), writing the shards
    (``pretokenize``), and one epoch from those shards (memory map, widened to int64). R
    scales with the corpus' bytes, and so does P but for what it pays once (saving the
    vocabulary, timed on its own); S is its chunks' overhead (from the sample's epoch) plus
    widening as many tokens as the corpus holds, timed on an array that large (a sample small
    enough for the CPU's caches would be faster than the real epoch). Give the
    ``max_shard_bytes`` the real shards will use, so the sample's shards are cut alike. Returns
    ``(model, facts)``; ``facts`` holds the measured rates and what was sampled.
    """
    import tempfile

    from iokit.shards import pretokenize

    corpus = open_corpus(corpus)
    text_bytes = corpus.stat().st_size
    want = max(1, min(sample_bytes, text_bytes // 4))
    if sample_docs is not None:
        with open(corpus, "rb") as f:
            want = sum(len(line) for line in itertools.islice(f, sample_docs))
    with tempfile.TemporaryDirectory(dir=corpus.parent, prefix="iokit-epochs-") as tmp:
        sample = Path(tmp) / "sample.jsonl"
        got, docs = write_head(corpus, sample, want)
        runs = []
        measure(lambda: runs.append(raw_epoch(sample, tokenizer)), repeat=repeat)
        parse_s = float(np.median([r.stage_seconds.get("read", 0.0) for r in runs[1:]]))
        tok_s = float(np.median([r.stage_seconds.get("tokenize", 0.0) for r in runs[1:]]))
        sample_tokens = runs[-1].tokens
        shard_dir = Path(tmp) / "shards"
        max_shard = max_shard_bytes or DEFAULT_MAX_SHARD_BYTES
        pre = measure(lambda: pretokenize(sample, tokenizer, shard_dir,
                                          max_shard_bytes=max_shard), repeat=repeat)
        save = measure(lambda: tokenizer.save(Path(tmp) / "vocab.json"), repeat=repeat)
        with open_shards(shard_dir) as shards:
            t = measure(lambda: shard_epoch(shards, got), repeat=max(repeat, 5))
            points = [(sum(1 for _ in shards.iter_chunks()), shards.n_tokens, t.median)]
    scale = text_bytes / got
    n_tokens = sample_tokens * scale
    raw = (parse_s + tok_s) * scale
    itemsize = token_itemsize(tokenizer.vocab_size)
    # Widening every token to int64 streams the whole set through memory: time it on an array
    # as large as the corpus' tokens (so the caches help only as much as they will), and
    # charge what the sample's epoch took beyond that to its chunks.
    big = np.ones(int(min(max(n_tokens, 1), 64 << 20)), dtype=choose_dtype(tokenizer.vocab_size))
    step = int(min(max_shard // itemsize, 1 << 20))  # the epoch's chunks: a shard, or 1 M tokens

    def widen():
        for a in range(0, len(big), step):
            big[a:a + step].astype(np.int64)

    per_token = measure(widen, repeat=max(repeat, 3)).median / len(big)
    (c1, n1, t1), = points
    per_chunk = max(t1 - n1 * per_token, 0.0) / c1
    n_shards = max(1, math.ceil(n_tokens * itemsize / max_shard))
    chunks = max(n_shards, n_tokens / (1 << 20))  # a chunk is a shard, or 1 M tokens of one
    shard = chunks * per_chunk + n_tokens * per_token
    # Pretokenizing pays per byte (parse, tokenize, write the IDs) and once per run (saving
    # the vocabulary, timed on its own): only the first part grows with the corpus.
    once = min(save.median, pre.median)
    preprocess = once + (pre.median - once) * scale
    facts = {"tokenize_bytes_per_s": got / tok_s if tok_s > 0 else float("inf"),
             "parse_bytes_per_s": got / parse_s if parse_s > 0 else float("inf"),
             "tokens_per_byte": sample_tokens / got,
             "memory_bytes_per_s": (itemsize + 8) / per_token if per_token > 0 else math.inf,
             "per_chunk_s": per_chunk, "preprocess_once_s": once, "tokens": n_tokens,
             "sample_bytes": got,
             "sample_docs": docs}
    return EpochCostModel(preprocess, raw, shard), facts


def epoch_checks(predicted: EpochCostModel, facts: dict, *, raw_s: float, shard_s: float,
                 preprocess_s: float | None = None) -> list[Check]:
    """The epoch model (calibrated on the sample of :func:`predict_epochs`) against the
    measured epochs of the whole corpus: text epoch, shard epoch, their ratio, preprocessing."""
    on = f"each stage timed on the corpus' first {facts['sample_bytes'] / MB:.2f} MB"
    checks = [
        Check("epoch from text", on, "one epoch over the whole corpus", predicted.raw_epoch_s,
              raw_s),
        Check("epoch from shards", on, "one epoch over all the shards", predicted.shard_epoch_s,
              shard_s),
        Check("epoch speedup (text / shards)", on, "the two whole-corpus epochs",
              predicted.raw_epoch_s / predicted.shard_epoch_s, raw_s / shard_s, unit="×"),
    ]
    if preprocess_s is not None:
        checks.append(Check("preprocess (pretokenize once)", on, "pretokenizing the whole corpus",
                            predicted.preprocess_s, preprocess_s))
    return checks


def sampling_checks(results, held_out=((16, 256), (64, 16), (256, 16))):
    """Fit the sampling cost model on every measured batch shape but ``held_out`` ones, and
    check it on those: returns ``(model, checks)``. The model is a fit (its three terms are
    fitted to sampling timings), so the checks say so; the default held-out shapes lie inside
    the grid's range (a fit interpolates; beyond the largest batch it would extrapolate)."""
    held = set(held_out)
    fit_on = [r for r in results if (r.batch_size, r.block_size) not in held]
    test = [r for r in results if (r.batch_size, r.block_size) in held]
    model = fit_sampling_model([r.batch_size for r in fit_on], [r.block_size for r in fit_on],
                               [r.seconds_per_batch for r in fit_on],
                               fit_on[0].itemsize if fit_on else 2)
    shapes = ", ".join(f"{r.batch_size}×{r.block_size}" for r in fit_on)
    checks = [Check(f"sampling {r.batch_size}×{r.block_size}", f"batch × block {shapes}",
                    f"batch {r.batch_size} × block {r.block_size}",
                    float(model.seconds(r.batch_size, r.block_size, r.itemsize)),
                    r.seconds_per_batch, kind="fit") for r in test]
    return model, checks
