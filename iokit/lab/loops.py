"""The read → process → write loops the notebooks compare, each timed stage by stage.

Every loop reads the corpus, word-tokenizes each document (the "process" step) and writes the
tokens out, one line per document; they differ only in *how* they read and write:

* :func:`naive_loop` — one unbuffered read system call per byte of a line (what
  ``readline`` on an unbuffered file does) and one small ``write`` per document;
* :func:`chunked_loop` — reads ``chunk_size`` bytes per call and writes in batches of about
  ``chunk_size`` bytes.

Both produce byte-identical output files; each returns a :class:`LoopResult` with the seconds
spent reading, processing and writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iokit.atomic import atomic_write
from iokit.corpus import decode_record, iter_documents, open_corpus
from iokit.errors import check_size
from iokit.timing import MB, Timeline
from iokit.tokenize import token_line, word_tokenize


@dataclass
class LoopResult:
    """What one loop did: bytes in and out, documents, tokens, and seconds per stage."""

    name: str
    bytes_in: int
    bytes_out: int
    documents: int
    tokens: int
    stage_seconds: dict[str, float]
    seconds: float

    @property
    def mb_per_s(self) -> float:
        """Corpus megabytes processed per second, end to end."""
        return self.bytes_in / self.seconds / MB if self.seconds > 0 else float("inf")


def _text_of(line: bytes, path: Path, lineno: int) -> str | None:
    """The text of one JSONL line (``None`` for a blank line), checked by the kit's one
    decoder, which names the file and the line of a bad record."""
    doc = decode_record(line, path, lineno=lineno)
    return None if doc is None else doc.text


def naive_loop(corpus, out_path, tokenize=word_tokenize, limit_bytes: int | None = None
               ) -> LoopResult:
    """Read one document at a time from an unbuffered file, tokenize it, write it at once.

    ``limit_bytes`` stops after the document that crosses that many bytes (to keep a slow
    loop short on a large corpus).
    """
    corpus, out_path = open_corpus(corpus), Path(out_path)
    tl = Timeline()
    bytes_in = bytes_out = docs = tokens = lineno = 0
    start = tl.now()
    with open(corpus, "rb", buffering=0) as src, atomic_write(out_path, "wb", buffering=0) as dst:
        while True:
            with tl.span("read"):
                line = src.readline()  # unbuffered: one read() system call per byte
            if not line:
                break
            lineno += 1
            bytes_in += len(line)
            with tl.span("process"):
                text = _text_of(line, corpus, lineno)
                out = b"" if text is None else token_line(text, tokenize)
            if not out:  # a blank line: no document
                continue
            docs += 1
            tokens += out.count(b" ") + 1
            with tl.span("write"):
                dst.write(out)  # unbuffered: one write() system call per document
            bytes_out += len(out)
            if limit_bytes is not None and bytes_in >= limit_bytes:
                break
    return LoopResult("naive", bytes_in, bytes_out, docs, tokens, tl.totals(), tl.now() - start)


def chunked_loop(corpus, out_path, chunk_size: int = 1 << 20, tokenize=word_tokenize,
                 limit_bytes: int | None = None) -> LoopResult:
    """Read ``chunk_size`` bytes per system call, tokenize each line, write in batches."""
    chunk_size = check_size("chunk size", chunk_size, item_bytes=3,  # chunk, lines, batch
                            hint="Use e.g. 1048576 (1 MiB).")
    corpus, out_path = open_corpus(corpus), Path(out_path)
    tl = Timeline()
    bytes_in = bytes_out = docs = tokens = lineno = 0
    start = tl.now()
    pending = b""
    batch: list[bytes] = []
    batch_bytes = 0
    with open(corpus, "rb", buffering=0) as src, atomic_write(out_path, "wb", buffering=0) as dst:
        done = False
        while not done:
            with tl.span("read"):
                chunk = src.read(chunk_size)
            done = not chunk
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop() if chunk else b""
            if done and lines and lines[-1] == b"":
                lines.pop()
            with tl.span("process"):
                for line in lines:
                    lineno += 1
                    bytes_in += len(line) + 1
                    text = _text_of(line, corpus, lineno)
                    if text is None:  # a blank line: no document
                        continue
                    docs += 1
                    out = token_line(text, tokenize)
                    tokens += out.count(b" ") + 1
                    batch.append(out)
                    batch_bytes += len(out)
                    if limit_bytes is not None and bytes_in >= limit_bytes:
                        done = True
                        break
            if batch_bytes >= chunk_size or (done and batch):
                with tl.span("write"):
                    dst.write(b"".join(batch))
                bytes_out += batch_bytes
                batch, batch_bytes = [], 0
    if os.path.getsize(out_path) != bytes_out:  # pragma: no cover - a bug, not bad input
        raise RuntimeError("chunked_loop wrote a different number of bytes than it counted")
    return LoopResult(f"chunked {chunk_size:,} B", bytes_in, bytes_out, docs, tokens,
                      tl.totals(), tl.now() - start)


@dataclass
class LoopPrediction:
    """Predicted seconds per stage, from small measurements of each cost."""

    per_read_call: float  # seconds for one read() system call of 1 byte
    tokenize_bytes_per_s: float  # JSONL bytes per second parsed, tokenized and formatted
    per_write_call: float  # seconds for one write() system call, besides its bytes
    stage_seconds: dict[str, float]
    read_bandwidth: float = float("inf")  # bytes per second a large read moves
    write_bandwidth: float = float("inf")  # bytes per second a large write moves
    calibration: object = None  # the LoopCalibration behind it

    @property
    def seconds(self) -> float:
        return sum(self.stage_seconds.values())


def predict_loop(corpus, chunk_size: int | None = None, sample_bytes: int = 2 << 20,
                 tokenize=word_tokenize, calibration=None) -> LoopPrediction:
    """Predict a loop's stage times before running it (``chunk_size=None``: the naive loop).

    The model (:class:`~iokit.costs.LoopCostModel`)::
        read    = read calls × per-call cost + corpus bytes / read bandwidth
                  (naive: one call per byte, plus one at the end)
        process = corpus bytes / processing rate
        write   = write calls × per-call cost + output bytes / write bandwidth
                  (naive: one call per document)

    Each cost is measured by :func:`iokit.lab.chunks.calibrate_loop` (reuse one with
    ``calibration=``): the naive loop and a 4 MiB chunked loop over the corpus' first
    ``sample_bytes`` (at most a quarter of it), so the loops it predicts are other runs.
    """
    from iokit.lab.chunks import calibrate_loop, loop_calls

    corpus = open_corpus(corpus)
    size = corpus.stat().st_size
    cal = calibration or calibrate_loop(corpus, tokenize, sample_bytes=sample_bytes)
    docs = sum(1 for _ in iter_documents(corpus))
    reads, writes = loop_calls(size, chunk_size, docs)
    m = cal.model
    return LoopPrediction(m.read.overhead_s, m.process_bps, m.write.overhead_s,
                          m.stage_seconds(size, reads, writes),
                          m.read.bandwidth, m.write.bandwidth, cal)
