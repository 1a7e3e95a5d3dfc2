import json
import subprocess
import sys

import pytest

from iokit.app.cli import main


def test_data_command_makes_the_corpus_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IOKIT_DATA", str(tmp_path))
    assert main(["data", "--scale", "tiny"]) == 0
    first = capsys.readouterr().out
    assert "corpus-tiny-seed1234.jsonl" in first and "scale tiny" in first
    assert main(["data", "--scale", "tiny"]) == 0
    assert "already there" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["tour", "--scale", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iokit: error: unknown scale 'huge'") and err.count("\n") == 1
    assert main(["tour", "--corpus", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such corpus" in capsys.readouterr().err
    assert main(["tour", "--corpus", str(tmp_path), "--storage", "floppy"]) == 2
    err = capsys.readouterr().err
    assert "unknown storage 'floppy'" in err and "local, local-nvme" in err


def test_python_dash_m_works_and_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    proc = subprocess.run([sys.executable, "-m", "iokit", "tour", "--corpus", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "line 1, column 1: malformed JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tour_prints_the_table(tiny_corpus, capsys):
    assert main(["tour", "--corpus", str(tiny_corpus)]) == 0
    out = capsys.readouterr().out
    assert "naive loop" in out and "vs baseline" in out and "output identical to naive" in out
    assert "× faster" in out and "baseline: the chunked loop" in out


def test_tour_takes_a_folder_of_text_files_or_another_text_field(tmp_path, monkeypatch, capsys):
    from iokit.app.cli import _corpus, build_parser

    monkeypatch.setenv("IOKIT_DATA", str(tmp_path / "data"))
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("Hello, world.", encoding="utf-8")
    (folder / "b.txt").write_text("Second one.", encoding="utf-8")
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"content": "Hello, world."}\n{"content": "Second one."}\n')
    converted = []
    for argv in (["tour", "--corpus", str(folder)],
                 ["tour", "--corpus", str(mine), "--text-field", "content"]):
        path = _corpus(build_parser().parse_args(argv))
        assert path.parent == tmp_path / "data"
        converted.append([json.loads(line)["text"] for line in path.read_text().splitlines()])
    assert converted == [["Hello, world.", "Second one."]] * 2
    assert "converted" in capsys.readouterr().out
    # Two sentences are too few tokens for a batch: the tour says so in one line, before
    # any stage runs.
    assert main(["tour", "--corpus", str(mine), "--text-field", "content"]) == 2
    out, err = capsys.readouterr()
    assert "done:" not in out and err.count("\n") == 1
    assert err.startswith("iokit: error: ") and "need at least 4,112 tokens" in err
    assert "about 9" in err and "bigger corpus" in err


def test_shards_on_an_engine_and_from_a_folder_of_parts(tiny_corpus, tmp_path, capsys):
    from iokit.engines import shard_checksums
    from iokit.split import split_corpus

    assert main(["shards", "--corpus", str(tiny_corpus), "--parts", "3", "--engine", "serial",
                 "--vocab-size", "4096", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "serial with 1 worker(s): 3 shards" in out and f"shards: {tmp_path / 'a'}" in out
    split_corpus(tiny_corpus, tmp_path / "parts", 3)
    assert main(["shards", "--corpus", str(tmp_path / "parts"), "--engine", "processes",
                 "--workers", "2", "--vocab-size", "4096", "--out", str(tmp_path / "b")]) == 0
    assert shard_checksums(tmp_path / "a") == shard_checksums(tmp_path / "b")


def test_shards_on_a_running_dask_scheduler(tiny_corpus, tmp_path, capsys):
    pytest.importorskip("dask.distributed", reason="the optional 'dask' extra is not installed")
    from iokit.engines import close_cluster, start_local_cluster

    client = start_local_cluster(2, dashboard=False)
    try:
        assert main(["shards", "--corpus", str(tiny_corpus), "--parts", "4", "--engine", "dask",
                     "--scheduler", client.scheduler.address, "--vocab-size", "4096",
                     "--out", str(tmp_path)]) == 0
    finally:
        close_cluster(client)
    assert "dask with 2 worker(s): 4 shards" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--engine", "ray"], "unknown engine 'ray'; choose one of: dask, processes, serial, spark"),
    (["--parts", "0"], "parts must be > 0"),
    (["--scheduler", "tcp://nowhere:8786"], "--scheduler is the address of a dask scheduler"),
    (["--master", "local[2]"], "--master is the address of a Spark master"),
    (["--engine", "spark", "--master", "tcp://host:7077"], "is not a Spark master"),
    (["--engine", "spark", "--master", "spark://127.0.0.1:1"], "cannot reach a Spark master"),
])
def test_shards_refuses_nonsense_in_one_line(tiny_corpus, tmp_path, capsys, argv, message):
    assert main(["shards", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "x"),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iokit: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
