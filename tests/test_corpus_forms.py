"""One way in for a corpus: every form, the hygiene on the way in, the copy keyed by its
source, and the one record decoder behind every reader of JSONL."""

from __future__ import annotations

import json
import multiprocessing
import os
import re

import pytest

from iokit import tasks
from iokit.app import cli
from iokit.corpus import (
    CorpusWarning,
    clean_text,
    count_scripts,
    decode_record,
    ingest,
    iter_documents,
    looks_like_html,
    open_corpus,
)
from iokit.errors import CorpusError
from iokit.lab.epochs import raw_epoch
from iokit.lab.loops import chunked_loop, naive_loop, predict_loop
from iokit.lab.scaling import corpus_sample, parallel_token_file, tokenize_point
from iokit.preprocess import parallel_pretokenize
from iokit.shards import open_shards, pretokenize
from iokit.split import plan_pieces
from iokit.tokenize import WordTokenizer


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Converted copies go to a folder of this test's own."""
    folder = tmp_path / "data"
    monkeypatch.setenv("IOKIT_DATA", str(folder))
    return folder


def _texts_folder(root, files: dict) -> object:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return root


def _jsonl_texts(path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines()]


FILES = {"b.txt": "The second document.", "a.txt": "The first document, first.",
         "sub/deeper/c.txt": "A nested third é.", "notes.md": "not a document",
         "image.png": b"\x89PNG\r\n", ".hidden/x.txt": "hidden", ".ipynb_checkpoints/a.txt": "old"}


# ---------------------------------------------------------------- every form


def test_a_jsonl_file_with_a_text_field_is_used_as_it_is(tmp_path, data_dir):
    p = tmp_path / "mine.jsonl"
    p.write_text('{"text": "one"}\n\n{"text": "two"}\n')
    assert open_corpus(p) == p
    assert not data_dir.exists()  # nothing copied
    assert not ingest(p).converted


def test_jsonl_with_another_text_field_becomes_a_copy(tmp_path, data_dir):
    p = tmp_path / "mine.jsonl"
    p.write_text('{"id": 7, "body": "one\\r\\ntwo"}\n{"body": "three"}\n')
    copy = open_corpus(p, text_field="body")
    assert copy.parent == data_dir and copy.name.startswith("own-mine-")
    assert _jsonl_texts(copy) == ["one\ntwo", "three"]  # line ends normalised too
    assert [d.id for d in iter_documents(copy)] == ["7", "line-2"]


def test_a_folder_of_text_files_nested_in_path_order_others_reported(tmp_path):
    folder = _texts_folder(tmp_path / "texts", FILES)
    s = ingest(folder)
    assert s.converted and s.form == "folder of .txt files"
    copy = open_corpus(folder)
    assert _jsonl_texts(copy) == ["The first document, first.", "The second document.",
                                  "A nested third é."]
    assert [d.id for d in iter_documents(copy)] == ["a.txt", "b.txt", "sub/deeper/c.txt"]
    assert sorted(s.ignored) == ["image.png", "notes.md"]  # hidden files are not even listed
    assert "not read (not .txt): 2 files: image.png, notes.md" in str(s)
    # Reading the folder directly gives the same documents as the copy.
    assert [d.text for d in iter_documents(folder)] == _jsonl_texts(copy)


def test_a_single_text_file_is_one_document(tmp_path):
    p = tmp_path / "book.txt"
    p.write_text("Chapter one.\n\nIt was a dark night.\n")
    assert [d.text for d in iter_documents(p)] == ["Chapter one.\n\nIt was a dark night.\n"]
    assert _jsonl_texts(open_corpus(p)) == ["Chapter one.\n\nIt was a dark night.\n"]


def test_a_folder_of_jsonl_parts_reads_in_name_order(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "part-00001.jsonl").write_text('{"text": "second"}\n')
    (tmp_path / "parts" / "part-00000.jsonl").write_text('{"text": "first"}\n')
    assert _jsonl_texts(open_corpus(tmp_path / "parts")) == ["first", "second"]


def test_every_function_that_takes_a_corpus_takes_a_folder_or_a_text_file(tmp_path):
    folder = _texts_folder(tmp_path / "texts", {f"{i:02d}.txt": f"Document {i}, the cat. " * (i + 1)
                                                for i in range(12)})
    single = tmp_path / "one.txt"
    single.write_text("Just one document, with words.")
    copy = open_corpus(folder)
    ref = naive_loop(copy, tmp_path / "ref.txt")
    for corpus in (folder, single):
        naive_loop(corpus, tmp_path / "n.txt")
        chunked_loop(corpus, tmp_path / "c.txt", chunk_size=64)
        assert (tmp_path / "n.txt").read_bytes() == (tmp_path / "c.txt").read_bytes()
    r = naive_loop(folder, tmp_path / "n.txt")
    assert (r.documents, (tmp_path / "n.txt").read_bytes()) == (12, (tmp_path / "ref.txt")
                                                                .read_bytes())
    assert ref.documents == 12
    assert len(corpus_sample(folder)) == 12
    p = predict_loop(folder, sample_bytes=1000)
    assert p.stage_seconds["read"] > 0  # the copy's bytes, not a folder's size
    assert tokenize_point(folder, corpus_sample(folder), "threads", 1, repeat=1).items == 12
    tok = WordTokenizer.train(d.text for d in iter_documents(folder))
    assert raw_epoch(folder, tok).tokens == raw_epoch(copy, tok).tokens
    pretokenize(folder, tok, tmp_path / "s1")
    parallel_pretokenize(folder, tok, tmp_path / "s2", workers=2, kind="threads")
    with open_shards(tmp_path / "s1") as a, open_shards(tmp_path / "s2") as b:
        assert len(a) == len(b) == 12
        assert a.read(0, a.n_tokens).tolist() == b.read(0, b.n_tokens).tolist()
    assert sum(p.nbytes for p in plan_pieces(folder, 3)) == copy.stat().st_size
    assert parallel_token_file(folder, tmp_path / "t.txt", workers=1, kind="threads")[0] == \
        copy.stat().st_size


def test_a_folder_without_text_files_is_an_error_not_a_result(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("hello")
    for call in (lambda: predict_loop(tmp_path / "empty"), lambda: open_corpus(tmp_path / "empty"),
                 lambda: corpus_sample(tmp_path / "empty"),
                 lambda: naive_loop(tmp_path / "empty", tmp_path / "o.txt")):
        with pytest.raises(CorpusError, match=r"empty: no \.jsonl files in this folder, and no "
                           r"\.txt files"):
            call()


# ---------------------------------------------------------------- hygiene


def test_clean_text_removes_a_bom_and_normalises_line_ends():
    assert clean_text("\ufeffa\r\nb\rc\n") == ("a\nb\nc\n", ["bom", "crlf", "cr"])
    assert clean_text("plain\n") == ("plain\n", [])
    assert clean_text("a\r\n")[0] == "a\n"  # CRLF is one line end, not two


def test_the_summary_counts_what_was_read_and_changed(tmp_path):
    files = {"bom.txt": b"\xef\xbb\xbfHello there.\n", "crlf.txt": b"One\r\nTwo\r\n",
             "cr.txt": b"Old\rMac\r", "empty.txt": b"", "blank.txt": b"  \r\n\n",
             "page.txt": "<!DOCTYPE html>\n<html><body><p>Hi</p></body></html>",
             "zh.txt": "我们今天去北京。", "ru.txt": "Привет мир"}
    folder = _texts_folder(tmp_path / "mix", files)
    with pytest.warns(CorpusWarning) as caught:
        s = ingest(folder)
    messages = [str(w.message) for w in caught]
    assert any("2 empty files skipped" in m and "blank.txt, empty.txt" in m for m in messages)
    assert any("looks like an HTML page" in m and "page.txt" in m for m in messages)
    assert (s.files, s.documents) == (8, 6)
    assert s.source_bytes == sum(len(v if isinstance(v, bytes) else v.encode()) for v in
                                 files.values())
    assert (s.boms_removed, s.crlf_documents, s.cr_documents) == (1, 1, 1)
    assert s.empty_files == ["blank.txt", "empty.txt"] and s.html_like == ["page.txt"]
    assert s.scripts["CJK"] == 7 and s.scripts["Cyrillic"] == 9
    assert s.scripts["Latin"] == len(re.findall("[A-Za-z]", "".join(
        v.decode() if isinstance(v, bytes) else v for v in files.values())))
    texts = _jsonl_texts(open_corpus(folder))
    assert s.text_bytes == sum(len(t.encode()) for t in texts)
    assert not any("\r" in t or "\ufeff" in t for t in texts)
    assert "Hello there.\n" in texts and "One\nTwo\n" in texts and "Old\nMac\n" in texts
    assert "1 byte-order mark(s) removed" in str(s) and "CJK" in str(s)


def test_scripts_and_html_detection():
    assert count_scripts("abc Ωμέγα Жук 漢字 かな 한글 ไทย", {}) == {
        "Latin": 3, "Greek": 5, "Cyrillic": 3, "CJK": 2, "Kana": 2, "Hangul": 2, "Thai": 3}
    assert looks_like_html("  <html lang=en><body>x</body></html>")
    assert not looks_like_html("Use the <b> key and 3 < 4.")


def test_a_corpus_of_only_empty_files_is_an_error(tmp_path):
    folder = _texts_folder(tmp_path / "void", {"a.txt": "", "b.txt": "\r\n"})
    with pytest.raises(CorpusError, match=r"void: the corpus is empty \(every \.txt file is "
                       "empty\\)"):
        open_corpus(folder)


def test_a_utf16_text_file_says_so(tmp_path):
    folder = _texts_folder(tmp_path / "u", {"w.txt": "hello".encode("utf-16")})
    with pytest.raises(CorpusError, match=r"w\.txt: is not valid UTF-8 \(byte offset 0.*UTF-16"):
        open_corpus(folder)


# ---------------------------------------------------------------- the copy and its source


def test_two_folders_with_the_same_name_get_their_own_copies(tmp_path):
    a = _texts_folder(tmp_path / "a" / "corpus", {"x.txt": "from a"})
    b = _texts_folder(tmp_path / "b" / "corpus", {"x.txt": "from b"})
    ca, cb = open_corpus(a), open_corpus(b)
    assert ca != cb and ca.name.startswith("own-corpus-") and cb.name.startswith("own-corpus-")
    assert (_jsonl_texts(ca), _jsonl_texts(cb)) == (["from a"], ["from b"])
    assert _jsonl_texts(open_corpus(a)) == ["from a"]


def test_the_copy_is_made_once_and_remade_when_the_source_changes(tmp_path, data_dir):
    folder = _texts_folder(tmp_path / "t", {"x.txt": "first version"})
    s1 = ingest(folder)
    copy = open_corpus(folder)
    stamp = copy.stat().st_mtime_ns
    s2 = ingest(folder)
    assert (s1.reused, s2.reused) == (False, True)
    assert s2.path == s1.path and copy.stat().st_mtime_ns == stamp  # not written again
    assert s2.documents == s1.documents and "reusing its copy" in str(s2)
    # Same size, new content and time: a new copy, and the old one is gone.
    (folder / "x.txt").write_text("other version")
    st = (folder / "x.txt").stat()
    os.utime(folder / "x.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    s3 = ingest(folder)
    assert not s3.reused and s3.path != s1.path
    assert _jsonl_texts(open_corpus(folder)) == ["other version"]
    assert not copy.exists()
    assert len(list(data_dir.glob("own-t-*.jsonl"))) == 1
    # Only the modification time changes: a new copy too (identity is checked, not guessed).
    os.utime(folder / "x.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000))
    assert ingest(folder).path != s3.path


def test_a_copy_whose_record_names_another_source_is_not_used(tmp_path):
    folder = _texts_folder(tmp_path / "t", {"x.txt": "the real text"})
    copy = open_corpus(folder)
    meta = copy.with_suffix(".source.json")
    record = json.loads(meta.read_text())
    record["identity"]["source"] = "/somewhere/else"
    meta.write_text(json.dumps(record))
    copy.write_text('{"id": "x", "text": "the wrong text!"}\n')
    s = ingest(folder)
    assert not s.reused
    assert _jsonl_texts(copy) == ["the real text"]
    # A copy cut short (its size differs from the recorded one) is made again as well.
    copy.write_text("")
    assert not ingest(folder).reused and _jsonl_texts(copy) == ["the real text"]


def test_a_source_changing_during_conversion_is_an_error(tmp_path, data_dir, monkeypatch):
    import iokit.corpus as corpus

    folder = _texts_folder(tmp_path / "t", {"x.txt": "text"})
    real, calls = corpus._identity, []

    def moving(*args):
        calls.append(1)
        identity = real(*args)
        return {**identity, "files": []} if len(calls) > 1 else identity

    monkeypatch.setattr(corpus, "_identity", moving)
    with pytest.raises(CorpusError, match=r"t: changed while it was being converted; run again"):
        open_corpus(folder)
    assert list(data_dir.iterdir()) == []


def _convert(args):
    folder, data = args
    os.environ["IOKIT_DATA"] = data
    path = open_corpus(folder, progress=False)
    return str(path), _jsonl_texts(path)


def test_concurrent_conversions_in_two_processes(tmp_path, data_dir):
    big = {f"{i:03d}.txt": f"document {i} " * 2000 for i in range(60)}
    a = _texts_folder(tmp_path / "a" / "corpus", big)
    b = _texts_folder(tmp_path / "b" / "corpus", {"x.txt": "from b"})
    jobs = [(str(a), str(data_dir)), (str(a), str(data_dir)), (str(b), str(data_dir)),
            (str(a), str(data_dir))]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_convert, jobs)
    expected_a = [big[k] for k in sorted(big)]
    assert results[0] == results[1] == results[3] and results[0][1] == expected_a
    assert results[2][1] == ["from b"] and results[2][0] != results[0][0]
    assert ingest(a).reused and ingest(b).reused
    assert sorted(p.suffix for p in data_dir.iterdir()) == [".json", ".json", ".jsonl",
                                                            ".jsonl"]  # no temporary files


# ---------------------------------------------------------------- one decoder, every reader

GOOD = [json.dumps({"text": f"good document {i}."}) for i in range(40)]
BAD_RECORDS = [
    ('{"text": 3}', r"field 'text' is int, not a string"),
    ('{"text": null}', r"field 'text' is null, not a string"),
    ('{"text": ["a"]}', r"field 'text' is list, not a string"),
    ('{"text": ""}', r"field 'text' is empty"),
    ('{"text": "  \\n "}', r"field 'text' is empty"),
    ('{"body": "x"}', r"no 'text' field \(found: body\)"),
    ('["text"]', r"a JSON list, not an object"),
    ('"just a string"', r"a JSON string, not an object"),
    ('7', r"a JSON int, not an object"),
    ('{"text": "bad \\ud800 escape"}', r"lone surrogate escape \(\\ud800"),
    ('{"text": "ok", "id": "\\udfff"}', r"field 'id' holds a lone surrogate"),
    ('{"text": "cut', r"malformed JSON"),
]


def _bad_corpus(tmp_path, record: str):
    """40 good documents with blank lines among them, then the bad record on line 43."""
    lines = GOOD[:20] + ["", "   "] + GOOD[20:] + [record] + GOOD[:3]
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    offset = sum(len(line.encode()) + 1 for line in lines[:42])
    return p, offset


@pytest.mark.parametrize("record,message", BAD_RECORDS, ids=[r for r, _ in BAD_RECORDS])
def test_every_reader_checks_every_record_the_same_way(tmp_path, record, message):
    corpus, offset = _bad_corpus(tmp_path, record)
    at_line = r"bad\.jsonl: line 43\b"
    with pytest.raises(CorpusError, match=at_line + r".*" + message):
        list(iter_documents(corpus))
    for loop in (naive_loop, lambda c, o: chunked_loop(c, o, chunk_size=100)):
        with pytest.raises(CorpusError, match=at_line + r".*" + message):
            loop(corpus, tmp_path / "out.txt")
    # Workers reading byte ranges: from the start of the file the line is known ...
    size = corpus.stat().st_size
    with pytest.raises(CorpusError, match=at_line + r".*" + message):
        tasks.read_texts(corpus, (0, size))
    # ... from the middle, the byte offset is named, and the line counted when reporting.
    start = tasks.document_spans(corpus)[10][0]
    with pytest.raises(CorpusError, match=rf"bad\.jsonl: the document at byte offset {offset}"
                       r"( \(line 43\))?.*(line 43, )?.*" + message) as info:
        tasks.read_texts(corpus, (start, size))
    assert "line 43" in str(info.value)


def test_valid_surrogate_pairs_and_a_leading_bom_are_fine(tmp_path):
    p = tmp_path / "ok.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "smile \\ud83d\\ude00"}\n{"text": "next"}\n')
    assert [d.text for d in iter_documents(p)] == ["smile \U0001F600", "next"]
    assert tasks.read_texts(p, (0, p.stat().st_size)) == ["smile \U0001F600", "next"]
    assert naive_loop(p, tmp_path / "o.txt").documents == 2
    assert decode_record(b"  \r\n", p, lineno=5) is None  # blank lines are skipped


def test_blank_lines_are_skipped_by_every_reader(tmp_path):
    p = tmp_path / "gaps.jsonl"
    p.write_text('\n{"text": "a b"}\n\n\n{"text": "c"}\n  \n{"text": "d e f"}\n\n')
    texts = [d.text for d in iter_documents(p)]
    assert texts == ["a b", "c", "d e f"]
    spans = tasks.document_spans(p)
    assert len(spans) == 3 and spans[-1][1] == p.stat().st_size
    assert [t for s in spans for t in tasks.read_texts(p, s)] == texts
    assert naive_loop(p, tmp_path / "n.txt").documents == 3
    assert chunked_loop(p, tmp_path / "c.txt", chunk_size=5).documents == 3
    assert (tmp_path / "n.txt").read_bytes() == (tmp_path / "c.txt").read_bytes() == \
        b"a b\nc\nd e f\n"


@pytest.mark.parametrize("command", ["shards", "tour"])
@pytest.mark.parametrize("record,message", [BAD_RECORDS[0], BAD_RECORDS[1], BAD_RECORDS[9]],
                         ids=["int", "null", "surrogate"])
def test_the_command_line_exits_2_with_one_line(tmp_path, capsys, command, record, message):
    corpus, _ = _bad_corpus(tmp_path, record)
    argv = [command, "--corpus", str(corpus)]
    if command == "shards":
        argv += ["--engine", "serial", "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iokit: error: ")
    assert re.search(rf"bad\.jsonl: .*line 43.*{message}", err), err
    assert not (tmp_path / "out").exists()


def test_blank_lines_are_accepted_by_shards_and_tour_alike(tmp_path, capsys):
    from iokit.app.tour import run_tour, stage_chunked, stage_naive

    lines = []
    for i in range(300):
        lines += [json.dumps({"text": f"Document {i} has some words in it."}), ""]
    p = tmp_path / "gaps.jsonl"
    p.write_text("\n".join(lines) + "\n")
    assert cli.main(["shards", "--corpus", str(p), "--engine", "serial", "--parts", "2",
                     "--out", str(tmp_path / "s")]) == 0
    with open_shards(tmp_path / "s") as s:
        assert len(s) == 300
    rows, _ = run_tour(p, stages=[stage_naive, stage_chunked])
    assert rows[1].note == "output identical to naive"


def test_show_corpus_prints_what_was_read_and_returns_the_copy(tmp_path, monkeypatch, capsys):
    from iokit.lab.own_data import show_corpus

    monkeypatch.setenv("IOKIT_DATA", str(tmp_path / "data"))
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"\xef\xbb\xbfone line\r\nand another\r\n")
    (folder / "b.txt").write_text("a second document", encoding="utf-8")
    path = show_corpus(folder)
    shown = capsys.readouterr().out
    docs = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert docs == ["one line\nand another\n", "a second document"]
    assert "2 documents" in shown
