"""Parallel preprocessing: tokenize a corpus into shards with several workers.

The workers get byte offsets into the corpus and the path of the saved tokenizer, never the
text or the vocabulary itself; each sends back the token IDs of its documents as numpy arrays.
The parent receives them in input order (:mod:`iokit.parallel` keeps it) and streams them into
:func:`iokit.shards.write_shards`, which writes every file atomically. So the shards are
byte-identical to those of :func:`iokit.shards.pretokenize` whatever the number of workers and
the chunk size, and an interrupted run leaves no half-written shard.

:func:`rewrite_shards` writes a shard set again with another codec or block size (the
compressed copies of notebooks 03 and 05, the tour and the bench).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from iokit import tasks
from iokit.atomic import output_folder
from iokit.corpus import open_corpus
from iokit.parallel import WorkerPool
from iokit.shards import DEFAULT_MAX_SHARD_BYTES, VOCAB_FILE, open_shards, write_shards


def _encoded(pool: WorkerPool, corpus: Path, vocab_path: Path, chunk_size: int) -> Iterator:
    spans = tasks.document_spans(corpus)
    fn = partial(tasks.encode_span, str(vocab_path), str(corpus))
    for arrays in pool.imap(fn, spans, chunk_size):
        yield from arrays


def parallel_pretokenize(corpus, tokenizer, out_dir, *, workers: int = 2, chunk_size: int = 16,
                         kind: str = "processes", start_method: str | None = None,
                         dtype="auto", max_shard_bytes: int | None = None,
                         text_field: str = "text") -> list[Path]:
    """:func:`iokit.shards.pretokenize` with ``workers`` workers; the same shards, faster.

    ``chunk_size`` is documents per task. Returns the ``.bin`` paths.
    """
    corpus = open_corpus(corpus, text_field)  # checks the first record: a clear error early
    # Workers load the tokenizer from a scratch copy; vocab.json is written last, beside the
    # finished shards, so a failed run leaves nothing behind (as pretokenize does).
    with output_folder(out_dir, "the shard folder") as out_dir, \
            tempfile.TemporaryDirectory(prefix="iokit-vocab-") as scratch:
        worker_vocab = Path(scratch) / VOCAB_FILE
        tokenizer.save(worker_vocab)
        with WorkerPool(workers, kind, start_method, preload=("iokit.tasks",)) as pool:
            bins = write_shards(
                _encoded(pool, corpus, worker_vocab, chunk_size), out_dir,
                vocab_size=tokenizer.vocab_size, dtype=dtype,
                max_shard_bytes=max_shard_bytes or DEFAULT_MAX_SHARD_BYTES,
                fingerprint=tokenizer.fingerprint)
    tokenizer.save(out_dir / VOCAB_FILE)
    return bins


def rewrite_shards(folder, out_dir, *, codec="zstd:3", block_bytes: int | None = None,
                   max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[Path]:
    """The shards in ``folder`` written again into ``out_dir`` with another codec or block
    size (``codec=None``: plain): the same documents, vocabulary and fingerprint, one document
    in memory at a time. Returns the new ``.bin`` paths."""
    with open_shards(folder) as raw:
        return write_shards((raw.document(i) for i in range(len(raw))), out_dir,
                            vocab_size=raw.vocab_size, fingerprint=raw.fingerprint,
                            codec=codec, block_bytes=block_bytes,
                            max_shard_bytes=max_shard_bytes)
