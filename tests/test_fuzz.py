"""Property-based tests: shard round trips, and readers fed mutated shards and block files.

Codec round trips over arbitrary bytes are in ``tests/test_codecs.py`` (and block-file reads in
``tests/test_blocks.py``), so they are not repeated here. The readers must let only iokit's own
errors escape from a truncated, bit-flipped or overwritten ``.bin``, ``.idx`` or block file:
never an IndexError, struct.error, numpy ValueError or a crash. A mutated shard either raises
an IokitError or reads back; with ``verify=True`` a changed ``.bin`` must raise.

Default example counts keep these under a minute in CI; set ``IOKIT_FUZZ_EXAMPLES`` (examples
per test) for longer local runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iokit.blocks import BlockReader, write_blocks
from iokit.errors import IokitError
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
