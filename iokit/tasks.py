"""Work that a parallel map sends to its workers.

Every function here is defined at the top level of a module, so a worker process can import it
by name whatever its start method (fork, spawn, forkserver). Arguments are small (a path and
byte offsets, not the bytes) and results are compact numpy arrays, not lists of strings: what
crosses between processes is pickled, and pickling a large object for every task can cost more
than the work itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from iokit.corpus import decode_record
from iokit.errors import CorpusError
from iokit.tokenize import encode_corpus, load_tokenizer, token_line, word_tokenize

# --------------------------------------------------------------------------- the corpus by offsets


def document_spans(path, target_bytes: int = 1) -> list[tuple[int, int]]:
    """Byte ranges ``(start, end)`` of the JSONL file, each whole lines of >= ``target_bytes``.

    With the default (1) every range is one document. Blank lines (which hold no document)
    join the range before them, so each range holds at least one document. The ranges cover
    the file in order, so tokenizing them one after another is tokenizing the file.
    """
    spans = []
    start = pos = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                pos += len(line)
                if pos - start >= target_bytes and line.strip():
                    spans.append((start, pos))
                    start = pos
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror}); open the corpus with "
                          "iokit.open_corpus, which takes any corpus form.") from None
    if pos > start:
        if spans and not _has_text(path, start, pos):  # trailing blank lines
            spans[-1] = (spans[-1][0], pos)
        else:
            spans.append((start, pos))
    return spans


def task_spans(path, task_bytes: int, taper: int = 0) -> list[tuple[int, int]]:
    """Byte ranges ``(start, end)`` of the JSONL file of about ``task_bytes`` each (at least
    that many, but for the last), cut at line ends: one task's input each.

    Unlike :func:`document_spans` it does not read the file: it seeks to each cut and reads on
    to the end of that line, so planning costs one short read per range. The ranges cover the
    file in order; a range of blank lines only holds no document. ``taper``: the last that
    many ranges are cut again in quarters, so that workers run out of work closer together
    (the last task a worker gets is short).
    """
    task_bytes = max(1, int(task_bytes))
    spans = []
    start = 0
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            while size - start > task_bytes:
                end = _line_end(f, start + task_bytes - 1, size)
                spans.append((start, end))
                start = end
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror}); open the corpus with "
                          "iokit.open_corpus, which takes any corpus form.") from None
    if start < size:
        spans.append((start, size))
    if taper > 0 and spans:
        spans = spans[:-taper] + _quarters(path, spans[-taper:])
    return spans


def _quarters(path, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each range cut at line ends into about four."""
    out = []
    try:
        with open(path, "rb") as f:
            for start, end in spans:
                step = max(1, (end - start) // 4)
                while end - start > step:
                    cut = _line_end(f, start + step - 1, end)
                    if cut >= end:
                        break
                    out.append((start, cut))
                    start = cut
                out.append((start, end))
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror}); open the corpus with "
                          "iokit.open_corpus, which takes any corpus form.") from None
    return out


def _line_end(f, pos: int, size: int, step: int = 1 << 16) -> int:
    """The offset just past the first newline at or after ``pos`` (``size`` if none)."""
    f.seek(pos)
    while pos < size:
        block = f.read(step)
        if not block:
            break
        at = block.find(b"\n")
        if at >= 0:
            return pos + at + 1
        pos += len(block)
    return size


def _has_text(path, start: int, end: int) -> bool:
    with open(path, "rb") as f:
        f.seek(start)
        return bool(f.read(end - start).strip())


def read_texts(path, span: tuple[int, int], text_field: str = "text") -> list[str]:
    """The texts of the JSONL documents in the byte range ``span`` of ``path``.

    Each line goes through :func:`iokit.corpus.decode_record` (blank lines are skipped), so a
    bad document raises :class:`CorpusError` naming the file and its byte offset, and its line
    number (a range that starts the file knows it; otherwise it is counted when reporting).
    """
    start, end = span
    try:
        with open(path, "rb") as f:
            f.seek(start)
            raw = f.read(end - start)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror}); workers read the JSONL file "
                          "iokit.open_corpus gives for any corpus form.") from None
    texts = []
    offset = start
    # Lines end at LF only, as they do for every reader of JSONL. Each line is decoded without
    # its LF (JSON does not need it), so no line is copied to put it back.
    for i, line in enumerate(raw.split(b"\n")):
        if line:
            text = _document_text(path, line, offset, text_field,
                                  lineno=i + 1 if start == 0 else None)
            if text is not None:
                texts.append(text)
        offset += len(line) + 1
    return texts


def _document_text(path, line: bytes, offset: int, text_field: str = "text",
                   lineno: int | None = None) -> str | None:
    """The text of one JSONL line (``None`` if blank), checked by the kit's one decoder."""
    doc = decode_record(line, path, lineno=lineno, offset=offset, text_field=text_field)
    return None if doc is None else doc.text


def tokenize_span(path, span: tuple[int, int]) -> np.ndarray:
    """Token counts (``uint32``) of the documents in ``span``: the worker reads them itself."""
    return np.array([len(word_tokenize(t)) for t in read_texts(path, span)], dtype=np.uint32)


def tokenize_texts(texts: list[str]) -> np.ndarray:
    """Token counts (``uint32``) of a list of texts, sent to the worker whole."""
    return np.array([len(word_tokenize(t)) for t in texts], dtype=np.uint32)


def tokenize_to_list(text: str) -> list[str]:
    """The tokens of one text as a list of strings (large to send back; see the notebook)."""
    return word_tokenize(text)


# --------------------------------------------------------------------------- the I/O-bound stage


def read_request(store, path, size: int, offset: int) -> int:
    """One request of ``size`` bytes at ``offset`` from ``store``; returns the bytes read."""
    return len(store.read(path, offset, size))


def request_offsets(path, size: int, count: int, total: int | None = None) -> list[int]:
    """``count`` request offsets of ``size`` bytes that walk through the file (wrapping);
    ``total``: the file's size, when it is not a local file (a URL)."""
    total = Path(path).stat().st_size if total is None else total
    stride = max(size, 1)
    last = max(total - size, 0)
    return [(i * stride) % (last + 1) for i in range(count)]


def tokenize_span_in(data: bytes, span: tuple[int, int]) -> np.ndarray:
    """Like :func:`tokenize_span`, but cut from ``data``, the whole corpus sent with the task.

    The notebook's example of a mistake: bound with ``partial``, ``data`` travels with every
    task.
    """
    start, end = span
    texts, offset = [], start
    for line in data[start:end].split(b"\n"):
        text = _document_text("the corpus sent with the task", line, offset)
        if text is not None:
            texts.append(text)
        offset += len(line) + 1
    return tokenize_texts(texts)


@lru_cache(maxsize=4)
def _tokenizer(vocab_path: str, stamp: float):
    return load_tokenizer(vocab_path)


_shared: dict = {}  # (vocab path, mtime) -> the caller's own tokenizer, see share_tokenizer


def load_tokenizer_once(vocab_path) -> object:
    """The tokenizer saved at ``vocab_path``, loaded once per worker (and again if the file
    changes), or the one :func:`share_tokenizer` left for forked workers."""
    key = (str(vocab_path), os.stat(vocab_path).st_mtime_ns)
    tok = _shared.get(key)
    return tok if tok is not None else _tokenizer(*key)


@contextmanager
def share_tokenizer(vocab_path, tokenizer):
    """While the block runs, :func:`load_tokenizer_once` (``vocab_path``, as saved now) gives
    ``tokenizer`` itself: worker processes forked inside the block inherit it, loaded and
    warmed up, instead of each reading the vocabulary again (spawned workers still load it)."""
    key = (str(vocab_path), os.stat(vocab_path).st_mtime_ns)
    warm = getattr(tokenizer, "encode", None)
    if warm is not None:
        warm("a")  # lookup tables a tokenizer builds on first use, built once for all workers
    _shared[key] = tokenizer
    try:
        yield tokenizer
    finally:
        _shared.pop(key, None)


def encode_span(vocab_path, path, span: tuple[int, int], text_field: str = "text",
                dtype: str | None = None) -> list:
    """The token IDs of each document in ``span``, each ending with the end-of-document ID.

    Only the tokenizer's path travels with the task; the worker loads it once. With ``dtype``
    (the shards' ``uint16`` or ``uint32``) each array comes back in it, half the bytes to send
    for ``uint16``, unless an ID does not fit (then the writer reports it).
    """
    tok = load_tokenizer_once(vocab_path)
    arrays = list(encode_corpus(read_texts(path, span, text_field), tok))
    if dtype is None:
        return arrays
    limit = np.iinfo(dtype).max
    return [a.astype(dtype) if not a.size or int(a.max()) <= limit else a for a in arrays]


def encode_span_packed(vocab_path, path, span: tuple[int, int], text_field: str = "text",
                       dtype: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode_span` packed for the trip back: all the documents' IDs in one array (in
    ``dtype`` when every ID fits) and each document's length, so a task sends two arrays
    rather than one per document (pickling thousands of small arrays costs more than their
    bytes). :func:`unpack` gives the documents' arrays back."""
    arrays = encode_span(vocab_path, path, span, text_field)
    ids = np.concatenate(arrays) if arrays else np.empty(0, np.uint32)
    if dtype is not None and (not ids.size or int(ids.max()) <= np.iinfo(dtype).max):
        ids = ids.astype(dtype)
    return ids, np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))


def unpack(packed: tuple[np.ndarray, np.ndarray]) -> Iterator[np.ndarray]:
    """The documents' arrays (views) of what :func:`encode_span_packed` sent back."""
    ids, lengths = packed
    ends = np.cumsum(lengths).tolist()
    start = 0
    for end in ends:
        yield ids[start:end]
        start = end


def encode_texts(vocab_path, texts: list[str]) -> list:
    """The token IDs of each text (for corpora that are folders of ``.txt`` files)."""
    return list(encode_corpus(texts, load_tokenizer_once(vocab_path)))


def token_lines_span(path, span: tuple[int, int]) -> bytes:
    """The documents in ``span`` as :func:`~iokit.tokenize.token_line` writes them: one line of
    space-separated tokens per document, as one ``bytes`` object (cheap to send back)."""
    return b"".join(token_line(t) for t in read_texts(path, span))
