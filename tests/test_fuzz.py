"""Property-based tests: shard round trips, readers fed mutated shards and block files, and
the corpus readers fed arbitrary JSONL lines and arbitrary ``.txt`` bytes.

Codec round trips over arbitrary bytes are in ``tests/test_codecs.py`` (and block-file reads in
``tests/test_blocks.py``), so they are not repeated here. The readers must let only iokit's own
errors escape from a truncated, bit-flipped or overwritten ``.bin``, ``.idx`` or block file:
never an IndexError, struct.error, numpy ValueError or a crash. A mutated shard either raises
an IokitError or reads back; with ``verify=True`` a changed ``.bin`` must raise.

Every reader of a corpus (the documents, the workers' byte ranges, the loops of notebook 01,
the conversion of a folder) must let only iokit's errors escape, and where they succeed they
must agree with each other.

Default example counts keep these under a minute in CI; set ``IOKIT_FUZZ_EXAMPLES`` (examples
per test) for longer local runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iokit import tasks
from iokit.blocks import BlockReader, write_blocks
from iokit.corpus import ingest, iter_documents
from iokit.errors import IokitError
from iokit.lab.loops import chunked_loop, naive_loop
from iokit.shards import open_shards, write_shards


def fuzz_settings(default: int):
    n = int(os.environ.get("IOKIT_FUZZ_EXAMPLES", default))
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------ round trips

DTYPES = {"uint16": 65_536, "uint32": 1 << 32}


@fuzz_settings(100)
@given(dtype=st.sampled_from(sorted(DTYPES)), codec=st.sampled_from([None, "zstd:1", "lzw"]),
       max_shard_bytes=st.integers(1, 300), data=st.data())
def test_shards_round_trip_any_token_lists(dtype, codec, max_shard_bytes, data):
    vocab = DTYPES[dtype]
    docs = data.draw(st.lists(st.lists(st.integers(0, vocab - 1), max_size=60), max_size=25))
    with tempfile.TemporaryDirectory() as d:
        write_shards([np.array(doc, dtype=np.int64) for doc in docs], Path(d), vocab_size=vocab,
                     dtype=dtype, max_shard_bytes=max_shard_bytes, codec=codec,
                     block_bytes=64 if codec else None)
        with open_shards(d, verify=True) as s:
            assert len(s) == len(docs)
            assert s.shards[0].dtype == np.dtype(dtype)
            for i, doc in enumerate(docs):
                assert s.document(i).tolist() == doc
            assert s.read(0, s.n_tokens).tolist() == [t for doc in docs for t in doc]


# ------------------------------------------------------------------ mutated files


def _valid_files() -> dict[str, dict[str, bytes]]:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 70_000, size=int(rng.integers(1, 120))) for _ in range(30)]
    small = [d % 1000 for d in docs]
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, arrays, kw in [
            ("raw16", small, dict(vocab_size=1000)),
            ("raw32", docs, dict(vocab_size=70_000)),
            ("zstd", small, dict(vocab_size=1000, codec="zstd:3", block_bytes=256)),
            ("lzw", docs, dict(vocab_size=70_000, codec="lzw", block_bytes=512)),
        ]:
            folder = Path(d) / name
            write_shards(arrays, folder, max_shard_bytes=1500, **kw)
            out[name] = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
        write_blocks(Path(d) / "b.blk", bytes(rng.integers(0, 50, 5000, dtype=np.uint8)),
                     "zstd:3", 512)
        out["blockfile"] = {"b.blk": (Path(d) / "b.blk").read_bytes()}
    return out


VALID = _valid_files()


@st.composite
def mutations(draw, kinds):
    kind = draw(st.sampled_from(kinds))
    files = VALID[kind]
    name = draw(st.sampled_from(sorted(files)))
    raw = bytearray(files[name])
    how = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if how == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        pos = draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= 1 << draw(st.integers(0, 7))
    else:
        pos = draw(st.integers(0, len(raw) - 1))
        junk = draw(st.binary(min_size=1, max_size=16))
        raw[pos:pos + len(junk)] = junk
        raw = raw[:max(len(raw), len(files[name]))]
    return kind, name, bytes(raw)


def _write_mutated(d: Path, kind: str, name: str, raw: bytes) -> None:
    for n, data in VALID[kind].items():
        (d / n).write_bytes(raw if n == name else data)


def _read_everything(folder, verify: bool) -> None:
    with open_shards(folder, verify=verify) as s:
        for i in range(len(s)):
            s.document(i)
        s.read(0, s.n_tokens)
        for _ in s.iter_chunks(97):
            pass
        if s.n_tokens > 9:
            s.sample_batch(0, 3, 8)


@fuzz_settings(600)
@given(m=mutations(["raw16", "raw32", "zstd", "lzw"]), verify=st.booleans())
def test_mutated_shards_raise_only_iokit_errors(m, verify):
    kind, name, raw = m
    changed = raw != VALID[kind][name]
    with tempfile.TemporaryDirectory() as d:
        _write_mutated(Path(d), kind, name, raw)
        try:
            _read_everything(d, verify)
        except IokitError:
            return
        # It read back: then it must not have been a change a reader can detect.
        assert not (verify and changed and name.endswith(".bin")), \
            f"verify=True read a changed {name} without complaint"


@fuzz_settings(300)
@given(m=mutations(["blockfile"]), prefetch=st.booleans())
def test_mutated_block_files_raise_only_iokit_errors(m, prefetch):
    kind, name, raw = m
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(raw)
        try:
            with BlockReader(path) as r:
                got = b"".join(r.iter_blocks(prefetch=prefetch))
                r.read(100, 1000)
        except IokitError:
            return
        assert got == _original_block_data()


def _original_block_data() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.blk"
        path.write_bytes(VALID["blockfile"]["b.blk"])
        with BlockReader(path) as r:
            return r.read_all()


# ------------------------------------------------------------------ corpus readers

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)
_lines = st.one_of(
    st.binary(max_size=40),  # any bytes at all
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),  # raw surrogates too
    _json_values.map(lambda v: json.dumps(v).encode()),  # any JSON value
    st.dictionaries(st.sampled_from(["text", "id", "body"]), _json_values, max_size=3)
    .map(lambda d: json.dumps(d).encode()),
    st.text(max_size=30).map(lambda t: json.dumps({"text": t}).encode()),  # "\ud800" escapes
    st.text(max_size=30).map(lambda t: json.dumps({"text": t}, ensure_ascii=False)
                             .encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"  ", b"\r", b"\xef\xbb\xbf" + b'{"text": "bom"}']),
)


@fuzz_settings(200)
@given(lines=st.lists(_lines, min_size=1, max_size=8), end=st.sampled_from([b"", b"\n"]))
def test_jsonl_readers_raise_only_iokit_errors_and_agree(lines, end):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.jsonl"
        path.write_bytes(b"\n".join(lines) + end)
        outcomes = []
        for read in (
            lambda: [doc.text for doc in iter_documents(path)],
            lambda: [t for s in tasks.document_spans(path) for t in tasks.read_texts(path, s)],
            lambda: [t for s in tasks.document_spans(path, 1 << 20)
                     for t in tasks.read_texts(path, s)],
            lambda: naive_loop(path, Path(d) / "n.txt").documents,
            lambda: chunked_loop(path, Path(d) / "c.txt", chunk_size=7).documents,
        ):
            try:
                outcomes.append(read())
            except IokitError:
                outcomes.append(IokitError)
        texts = outcomes[0]
        # The same records are good or bad for every reader (an empty corpus is an error for
        # the reader of documents and the loops, an empty list for a worker's byte range).
        if texts is IokitError:
            empty = outcomes[1:3] == [[], []] and all(o in (0, IokitError) for o in outcomes[3:])
            assert empty or all(o is IokitError for o in outcomes[1:]), outcomes
        else:
            assert outcomes[1] == outcomes[2] == texts
            assert outcomes[3] == outcomes[4] == len(texts)
            assert (Path(d) / "n.txt").read_bytes() == (Path(d) / "c.txt").read_bytes()


@fuzz_settings(150)
@given(files=st.lists(st.binary(max_size=60), min_size=1, max_size=3))
def test_text_folders_raise_only_iokit_errors_and_come_in_clean(files):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "texts"
        folder.mkdir()
        for i, raw in enumerate(files):
            (folder / f"{i}.txt").write_bytes(raw)
        try:
            direct = [doc.text for doc in iter_documents(folder)]
        except IokitError:
            direct = None
        try:
            summary = ingest(folder, data_dir=Path(d) / "data", progress=False, warn=False)
        except IokitError:
            assert direct is None  # the reader and the conversion agree on what is bad
            return
        copy = [doc.text for doc in iter_documents(summary.path)]
        assert copy == direct
        assert summary.documents == len(copy) and summary.files == len(files)
        assert all("\r" not in t and not t.startswith("\ufeff") and t.strip() for t in copy)
