"""Parallel preprocessing writes the same shards as one process, whatever the settings."""

import hashlib
import json

import numpy as np
import pytest
from helpers import interrupt_at, leftover_temp_files

from iokit import shards
from iokit.corpus import iter_documents
from iokit.engines import shard_checksums
from iokit.errors import CorpusError
from iokit.preprocess import parallel_pretokenize
from iokit.tokenize import WordTokenizer

MAX_SHARD = 200_000  # small, so the tiny corpus makes several shards


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus):
    return WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), vocab_size=4096)


@pytest.fixture(scope="module")
def serial_hashes(tiny_corpus, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serial")
    shards.pretokenize(tiny_corpus, tokenizer, folder, max_shard_bytes=MAX_SHARD)
    return _hashes(folder)


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("workers,chunk_size", [(1, 1), (2, 1), (2, 7), (3, 64), (2, 10**6)])
def test_shards_are_byte_identical_to_one_process(tiny_corpus, tokenizer, serial_hashes,
                                                  tmp_path, workers, chunk_size):
    parallel_pretokenize(tiny_corpus, tokenizer, tmp_path, workers=workers,
                         chunk_size=chunk_size, max_shard_bytes=MAX_SHARD)
    got = _hashes(tmp_path)
    assert len([n for n in got if n.endswith(".bin")]) > 1  # several shards
    assert got == serial_hashes


@pytest.mark.parametrize("kind,method", [("threads", None), ("serial", None),
                                         ("processes", "spawn")])
def test_every_kind_of_worker_gives_the_same_shards(tiny_corpus, tokenizer, serial_hashes,
                                                    tmp_path, kind, method):
    parallel_pretokenize(tiny_corpus, tokenizer, tmp_path, workers=2, chunk_size=16,
                         kind=kind, start_method=method, max_shard_bytes=MAX_SHARD)
    assert _hashes(tmp_path) == serial_hashes


def test_a_folder_of_text_files(tmp_path, tokenizer):
    src = tmp_path / "docs"
    src.mkdir()
    for i in range(9):
        (src / f"{i}.txt").write_text(f"Document {i}: the cat sat on the mat. " * (i + 1))
    shards.pretokenize(src, tokenizer, tmp_path / "one")
    parallel_pretokenize(src, tokenizer, tmp_path / "two", workers=2, chunk_size=2)
    assert _hashes(tmp_path / "one") == _hashes(tmp_path / "two")


def test_a_bad_line_in_a_worker_names_the_file_and_offset(tmp_path, tokenizer):
    corpus = tmp_path / "bad.jsonl"
    lines = [json.dumps({"text": f"doc {i}"}) for i in range(20)]
    lines[13] = '{"text": "broken'
    corpus.write_text("\n".join(lines) + "\n")
    offset = sum(len(line) + 1 for line in lines[:13])
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=rf"bad\.jsonl: the document at byte offset {offset}"):
        parallel_pretokenize(corpus, tokenizer, out, workers=2, chunk_size=3)
    assert not out.exists()  # nothing left behind: no shard, no temporary file, no vocabulary


def test_ctrl_c_leaves_no_half_written_shard(tiny_corpus, tokenizer, tmp_path, monkeypatch):
    from iokit import tasks
    from iokit.errors import FormatError

    interrupt_at(monkeypatch, tasks, "encode_span", 300)  # while document 300 is encoded
    with pytest.raises(KeyboardInterrupt):
        parallel_pretokenize(tiny_corpus, tokenizer, tmp_path, workers=2, chunk_size=4,
                             kind="threads", max_shard_bytes=MAX_SHARD)
    assert leftover_temp_files(tmp_path) == []
    assert not (tmp_path / shards.VOCAB_FILE).exists()  # written only after the last shard
    assert len(list(tmp_path.glob("*.bin"))) >= 1  # complete shards before the interruption
    with pytest.raises(FormatError):  # but the set has no last shard, and says so
        shards.open_shards(tmp_path)


def test_rewrite_shards_keeps_every_document_and_comes_back_byte_identical(tmp_path):
    from iokit.preprocess import rewrite_shards
    from iokit.shards import open_shards, write_shards

    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 1000, size=int(rng.integers(1, 300))) for _ in range(40)]
    write_shards(docs, tmp_path / "plain", vocab_size=1000, fingerprint=7, max_shard_bytes=4096)
    rewrite_shards(tmp_path / "plain", tmp_path / "z", codec="zstd:3", block_bytes=1024,
                   max_shard_bytes=4096)
    with open_shards(tmp_path / "z") as z:
        assert z.shards[0].compressed and z.fingerprint == 7
        assert all(np.array_equal(z.document(i), d) for i, d in enumerate(docs))
    rewrite_shards(tmp_path / "z", tmp_path / "back", codec=None, max_shard_bytes=4096)
    assert shard_checksums(tmp_path / "back") == shard_checksums(tmp_path / "plain")


def test_task_spans_cover_the_file_at_line_ends(tiny_corpus, tmp_path):
    from iokit.tasks import read_texts, task_spans

    data = tiny_corpus.read_bytes()
    for size in (1, 1000, 100_000, 10**9):
        spans = task_spans(tiny_corpus, size)
        assert spans[0][0] == 0 and spans[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(data[e - 1:e] == b"\n" for _, e in spans)
        assert all(e - s >= size for s, e in spans[:-1])
    texts = [t for span in task_spans(tiny_corpus, 50_000) for t in read_texts(tiny_corpus,
                                                                                span)]
    assert texts == [d.text for d in iter_documents(tiny_corpus)]
    odd = tmp_path / "odd.jsonl"  # blank lines, no newline at the end, one long line
    odd.write_bytes(b'\n\n{"text": "a"}\n\n' + b'{"text": "' + b"b" * 200_000 + b'"}')
    spans = task_spans(odd, 5)
    assert spans[-1][1] == odd.stat().st_size
    assert [t for s in spans for t in read_texts(odd, s)] == ["a", "b" * 200_000]


def test_task_size_follows_the_corpus():
    from iokit.preprocess import MAX_TASK_BYTES, MIN_TASK_BYTES, choose_task_bytes

    assert choose_task_bytes(10, 2) == MIN_TASK_BYTES
    assert choose_task_bytes(10**12, 2) == MAX_TASK_BYTES
    assert choose_task_bytes(64 << 20, 2) == (64 << 20) // 32


@pytest.mark.parametrize("task_bytes", [1, 4096, 10**9])
def test_any_task_size_gives_the_same_shards(tiny_corpus, tokenizer, serial_hashes, tmp_path,
                                             task_bytes):
    parallel_pretokenize(tiny_corpus, tokenizer, tmp_path, workers=2, task_bytes=task_bytes,
                         max_shard_bytes=MAX_SHARD)
    assert _hashes(tmp_path) == serial_hashes


def test_task_size_settings_are_checked(tiny_corpus, tokenizer, tmp_path):
    from iokit.errors import ParameterError

    with pytest.raises(ParameterError, match="not both"):
        parallel_pretokenize(tiny_corpus, tokenizer, tmp_path, chunk_size=4, task_bytes=10)
    with pytest.raises(ParameterError, match="task_bytes"):
        parallel_pretokenize(tiny_corpus, tokenizer, tmp_path, task_bytes=0)
    assert not any(tmp_path.iterdir())


def test_uint32_shards_are_identical_too(tiny_corpus, tokenizer, tmp_path):
    shards.pretokenize(tiny_corpus, tokenizer, tmp_path / "one", dtype="uint32")
    parallel_pretokenize(tiny_corpus, tokenizer, tmp_path / "two", workers=2, dtype="uint32")
    assert _hashes(tmp_path / "one") == _hashes(tmp_path / "two")


@pytest.mark.parametrize("task_bytes", [50_000, 300_000])
def test_byte_range_tasks_with_a_tapered_end_give_the_same_shards(
        tiny_corpus, tokenizer, serial_hashes, tmp_path, task_bytes):
    parallel_pretokenize(tiny_corpus, tokenizer, tmp_path, workers=2, task_bytes=task_bytes,
                         max_shard_bytes=MAX_SHARD)
    assert _hashes(tmp_path) == serial_hashes


def test_tapered_task_spans_cover_the_file_in_order_at_line_ends(tiny_corpus):
    from iokit import tasks

    data = tiny_corpus.read_bytes()
    plain = tasks.task_spans(tiny_corpus, 100_000)
    tapered = tasks.task_spans(tiny_corpus, 100_000, taper=3)
    assert tapered[:len(plain) - 3] == plain[:-3]
    assert len(tapered) > len(plain)
    assert tapered[0][0] == 0 and tapered[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(tapered, tapered[1:]))
    assert all(data[end - 1:end] == b"\n" for _, end in tapered[:-1])


def test_packed_results_unpack_to_the_documents_arrays(tiny_corpus, tokenizer, tmp_path):
    from iokit import tasks

    vocab = tokenizer.save(tmp_path / "vocab.json")
    span = tasks.task_spans(tiny_corpus, 200_000)[1]
    arrays = tasks.encode_span(vocab, tiny_corpus, span, dtype="uint16")
    ids, lengths = tasks.encode_span_packed(vocab, tiny_corpus, span, dtype="uint16")
    assert ids.dtype == np.uint16 and len(lengths) == len(arrays)
    got = list(tasks.unpack((ids, lengths)))
    assert [a.tolist() for a in got] == [a.tolist() for a in arrays]
    with tasks.share_tokenizer(vocab, tokenizer):  # forked workers find this very object
        assert tasks.load_tokenizer_once(vocab) is tokenizer
    assert tasks.load_tokenizer_once(vocab) is not tokenizer  # loaded from the file again
