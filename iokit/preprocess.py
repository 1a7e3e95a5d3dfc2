"""Parallel preprocessing: tokenize a corpus into shards with several workers.

The workers get byte offsets into the corpus and the path of the saved tokenizer, never the
text or the vocabulary itself (forked workers find the caller's tokenizer already loaded); each
sends back the token IDs of its documents packed in one numpy array (already in the shards'
dtype) with the documents' lengths. A task is a byte range of whole lines whose size is chosen
from the corpus (:func:`choose_task_bytes`: a few tasks per worker, each read with one
``read``), or, with ``chunk_size``, that many documents. The parent receives the arrays in
input order (:mod:`iokit.parallel` keeps it) and streams them into
:func:`iokit.shards.write_shards`, which writes every file atomically. So the shards are
byte-identical to those of :func:`iokit.shards.pretokenize` whatever the number of workers and
the task size, and an interrupted run leaves no half-written shard.

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
from iokit.errors import ParameterError, check_positive
from iokit.parallel import WorkerPool
from iokit.shards import (
    DEFAULT_MAX_SHARD_BYTES,
    VOCAB_FILE,
    _resolve_dtype,
    open_shards,
    write_shards,
)
from iokit.tokenize import quiet_fork

TASKS_PER_WORKER = 16  # tasks per worker when their size is chosen from the corpus: enough
# that the last ones leave little idle time, few enough that per-task costs stay small
MIN_TASK_BYTES = 64 << 10
MAX_TASK_BYTES = 4 << 20  # a task's text and tokens in memory, times 2 tasks per worker
TAPER_PER_WORKER = 1  # the last tasks cut in quarters, this many per worker: less idle at the end


def choose_task_bytes(corpus_bytes: int, workers: int) -> int:
    """Bytes of corpus per task: :data:`TASKS_PER_WORKER` tasks per worker, each between
    :data:`MIN_TASK_BYTES` and :data:`MAX_TASK_BYTES`."""
    share = corpus_bytes // (max(workers, 1) * TASKS_PER_WORKER)
    return int(min(MAX_TASK_BYTES, max(MIN_TASK_BYTES, share)))


def _encoded(pool: WorkerPool, corpus: Path, vocab_path: Path, chunk_size: int | None,
             nbytes: int, dtype: str) -> Iterator:
    if chunk_size is None:  # one byte range per task, the last few short (see task_spans)
        spans = tasks.task_spans(corpus, nbytes, taper=TAPER_PER_WORKER * pool.workers)
        chunk_size = 1
    else:  # chunk_size documents per task
        spans = tasks.document_spans(corpus)
    fn = partial(tasks.encode_span_packed, str(vocab_path), str(corpus), dtype=dtype)
    for packed in pool.imap(fn, spans, chunk_size):
        yield from tasks.unpack(packed)


def parallel_pretokenize(corpus, tokenizer, out_dir, *, workers: int = 2,
                         chunk_size: int | None = None, task_bytes: int | None = None,
                         kind: str = "processes", start_method: str | None = None,
                         dtype="auto", max_shard_bytes: int | None = None,
                         text_field: str = "text") -> list[Path]:
    """:func:`iokit.shards.pretokenize` with ``workers`` workers; the same shards, faster.

    A task is ``task_bytes`` of the corpus (whole lines; default: chosen from the corpus
    size and the workers, see :func:`choose_task_bytes`), or ``chunk_size`` documents when that is
    given. Returns the ``.bin`` paths.
    """
    if chunk_size is not None and task_bytes is not None:
        raise ParameterError("give chunk_size (documents per task) or task_bytes (bytes per "
                             "task), not both.")
    if chunk_size is not None:
        chunk_size = check_positive("chunk size", chunk_size,
                                    hint="It is the number of documents per task; use e.g. 16.")
    dt = _resolve_dtype(dtype, tokenizer.vocab_size)  # settings fail here, before any work
    corpus = open_corpus(corpus, text_field)  # checks the first record: a clear error early
    nbytes = choose_task_bytes(corpus.stat().st_size, workers) if task_bytes is None else \
        check_positive("task_bytes", task_bytes, hint="Use e.g. 1048576 (1 MiB).")
    # Workers load the tokenizer from a scratch copy; vocab.json is written last, beside the
    # finished shards, so a failed run leaves nothing behind (as pretokenize does).
    with output_folder(out_dir, "the shard folder") as out_dir, \
            tempfile.TemporaryDirectory(prefix="iokit-vocab-") as scratch:
        worker_vocab = Path(scratch) / VOCAB_FILE
        tokenizer.save(worker_vocab)
        # Forked workers inherit this tokenizer, loaded and warmed up; others load the copy.
        with tasks.share_tokenizer(worker_vocab, tokenizer), \
                WorkerPool(workers, kind, start_method, preload=("iokit.tasks",)) as pool:
            with quiet_fork():  # start the workers now, each to encode BPE on one thread
                pool.warm(0.0)
            bins = write_shards(
                _encoded(pool, corpus, worker_vocab, chunk_size, nbytes, dt.name),
                out_dir, vocab_size=tokenizer.vocab_size, dtype=dt,
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
