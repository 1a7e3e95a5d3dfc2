"""Splitting a corpus into pieces and files: whole lines, about equal sizes, nothing lost."""

import json

import pytest

from iokit.corpus import iter_documents
from iokit.errors import CorpusError, ParameterError
from iokit.split import Piece, plan_pieces, split_corpus


def _read(piece: Piece) -> bytes:
    with open(piece.path, "rb") as f:
        f.seek(piece.start)
        return f.read(piece.nbytes)


@pytest.mark.parametrize("parts", [1, 2, 3, 8, 50])
def test_pieces_are_whole_lines_that_cover_the_file_in_order(tiny_corpus, parts):
    pieces = plan_pieces(tiny_corpus, parts)
    assert len(pieces) == parts
    assert pieces[0].start == 0 and pieces[-1].end == tiny_corpus.stat().st_size
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert b"".join(_read(p) for p in pieces) == tiny_corpus.read_bytes()
    for p in pieces:
        data = _read(p)
        assert data.endswith(b"\n") and json.loads(data.splitlines()[0])["text"]
    sizes = [p.nbytes for p in pieces]
    mean = sum(sizes) / parts
    assert max(sizes) < mean + 2 * max(len(line) for line in tiny_corpus.open("rb"))


def test_the_plan_depends_only_on_the_bytes_and_the_part_count(tiny_corpus, tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(tiny_corpus.read_bytes())
    a = [(p.start, p.end) for p in plan_pieces(tiny_corpus, 7)]
    b = [(p.start, p.end) for p in plan_pieces(copy, 7)]
    assert a == b


def test_as_many_pieces_as_documents_and_no_more(tmp_path):
    corpus = tmp_path / "five.jsonl"
    corpus.write_text("".join(json.dumps({"text": "x" * (i * 100 + 1)}) + "\n" for i in range(5)))
    assert [p.nbytes > 0 for p in plan_pieces(corpus, 5)] == [True] * 5
    with pytest.raises(ParameterError, match=r"five\.jsonl holds 5 documents, too few for 6 "
                       r"pieces; use at most 5 parts"):
        plan_pieces(corpus, 6)


def test_bad_requests_say_what_to_do(tmp_path):
    with pytest.raises(CorpusError, match=r"nothing\.jsonl: no such corpus"):
        plan_pieces(tmp_path / "nothing.jsonl", 2)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(CorpusError, match=r"empty\.jsonl: the corpus is empty"):
        plan_pieces(tmp_path / "empty.jsonl", 2)
    with pytest.raises(ParameterError, match="parts must be > 0"):
        plan_pieces(tmp_path / "empty.jsonl", 0)
    (tmp_path / "folder").mkdir()
    with pytest.raises(CorpusError, match=r"folder: no \.jsonl files in this folder"):
        plan_pieces(tmp_path / "folder")


def test_split_files_read_back_as_the_corpus(tiny_corpus, tmp_path):
    paths = split_corpus(tiny_corpus, tmp_path / "parts", 6)
    assert [p.name for p in paths] == [f"part-{i:05d}.jsonl" for i in range(6)]
    assert b"".join(p.read_bytes() for p in paths) == tiny_corpus.read_bytes()
    docs = [d.text for p in paths for d in iter_documents(p)]
    assert docs == [d.text for d in iter_documents(tiny_corpus)]
    pieces = plan_pieces(tmp_path / "parts")  # a folder: one piece per file, in name order
    assert [p.path for p in pieces] == paths and all(p.start == 0 for p in pieces)
    with pytest.raises(ParameterError, match="one piece per file"):
        plan_pieces(tmp_path / "parts", 3)


def test_splitting_again_into_fewer_parts_removes_the_extra_files(tiny_corpus, tmp_path):
    split_corpus(tiny_corpus, tmp_path, 6)
    split_corpus(tiny_corpus, tmp_path, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"part-{i:05d}.jsonl"
                                                          for i in range(4)]
    assert b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir())) == \
        tiny_corpus.read_bytes()
