import pytest

from iokit.errors import CorpusError, ParameterError
from iokit.lab.loops import chunked_loop, naive_loop


def test_naive_and_chunked_loops_write_identical_output(tiny_corpus, tmp_path):
    naive = naive_loop(tiny_corpus, tmp_path / "naive.txt")
    out = {}
    for chunk in (1, 100, 1 << 20):
        r = chunked_loop(tiny_corpus, tmp_path / f"c{chunk}.txt", chunk_size=chunk)
        out[chunk] = (tmp_path / f"c{chunk}.txt").read_bytes()
        assert (r.documents, r.tokens, r.bytes_in, r.bytes_out) == \
            (naive.documents, naive.tokens, naive.bytes_in, naive.bytes_out)
    reference = (tmp_path / "naive.txt").read_bytes()
    assert all(v == reference for v in out.values())
    assert naive.bytes_in == tiny_corpus.stat().st_size
    assert set(naive.stage_seconds) == {"read", "process", "write"}
    assert reference.count(b"\n") == naive.documents


def test_loops_stop_early_when_asked(tiny_corpus, tmp_path):
    r = naive_loop(tiny_corpus, tmp_path / "n.txt", limit_bytes=100_000)
    c = chunked_loop(tiny_corpus, tmp_path / "c.txt", chunk_size=4096, limit_bytes=100_000)
    assert r.documents == c.documents < 100
    assert (tmp_path / "n.txt").read_bytes() == (tmp_path / "c.txt").read_bytes()


def test_bad_line_names_the_line_and_leaves_no_output(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "fine"}\n{"text": nope}\n')
    for run in (lambda: naive_loop(src, tmp_path / "out.txt"),
                lambda: chunked_loop(src, tmp_path / "out.txt", chunk_size=7)):
        with pytest.raises(CorpusError, match="line 2, column 10: malformed JSON"):
            run()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_chunk_size_must_be_positive(tiny_corpus, tmp_path):
    with pytest.raises(ParameterError, match="chunk size must be > 0"):
        chunked_loop(tiny_corpus, tmp_path / "x.txt", chunk_size=0)
