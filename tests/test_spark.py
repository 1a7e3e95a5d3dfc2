"""Spark as an engine: the processes engine's shards, byte for byte, or none and the kit's error.

One Spark session serves the whole module (its JVM takes seconds to start). Without pyspark or
Java these tests are skipped with a line saying so, except in CI (``CI=true``), where that is a
failure: CI installs both (`.ci/run`, the ``spark`` extra).
"""

import json
import os
import time
from functools import partial

import pytest
from helpers import bad_corpus

from iokit.corpus import iter_documents
from iokit.engines import pretokenize_pieces, shard_checksums
from iokit.errors import CorpusError, ParameterError, StorageError, WorkerDiedError
from iokit.split import plan_pieces
from iokit.tokenize import WordTokenizer

PARTS = 6


def _need(what: str, why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}: CI must run the Spark tests ({what})", pytrace=False)
    pytest.skip(f"{why} ({what})")


@pytest.fixture(scope="module")
def spark():
    """This process's Spark session (local[2]), started once for the module."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _need("pip install -e '.[spark]'", "pyspark is not installed")
    from iokit import spark as spark_engine

    try:
        spark_engine.check_java()
    except ParameterError as exc:
        _need("apt-get install default-jre-headless", str(exc))
    sc = spark_engine.spark_context(None, 2, ui=False)
    yield sc
    spark_engine.stop_spark()


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus):
    return WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), vocab_size=4096)


@pytest.fixture(scope="module")
def processes(tiny_corpus, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("processes")
    pretokenize_pieces(plan_pieces(tiny_corpus, PARTS), tokenizer, folder, engine="processes",
                       workers=2, progress=False)
    return folder


def test_spark_writes_the_processes_engines_shards(spark, tiny_corpus, tokenizer, processes,
                                                   tmp_path):
    run = pretokenize_pieces(plan_pieces(tiny_corpus, PARTS), tokenizer, tmp_path,
                             engine="spark", workers=2, progress=False)
    assert shard_checksums(tmp_path) == shard_checksums(processes)
    assert run.engine == "spark" and run.workers == 2
    assert [t.index for t in run.tasks] == list(range(PARTS))
    assert len({t.worker for t in run.tasks}) >= 1 and run.tokens > 0
    again = pretokenize_pieces(plan_pieces(tiny_corpus, PARTS), tokenizer, tmp_path / "again",
                               engine="spark", workers=2, progress=False)
    assert shard_checksums(tmp_path / "again") == shard_checksums(processes)
    assert again.workers == 2


def test_the_session_is_reused(spark):
    from iokit import spark as spark_engine

    assert spark_engine.spark_context(None, 2) is spark
    assert spark_engine.spark_context("local[2]", 2) is spark


def test_a_bad_piece_names_the_file_and_offset_and_publishes_nothing(spark, tokenizer,
                                                                     tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"doc {i}."}) + "\n" for i in range(30)))
    out = tmp_path / "out"
    pretokenize_pieces(plan_pieces(good, 3), tokenizer, out, engine="spark", progress=False)
    before = shard_checksums(out)
    corpus, offset = bad_corpus(tmp_path, 25)
    with pytest.raises(CorpusError, match=rf"bad\.jsonl: the document at byte offset {offset} "
                       r"is malformed JSON .*fix or remove it") as caught:
        pretokenize_pieces(plan_pieces(corpus, 3), tokenizer, out, engine="spark",
                           progress=False)
    assert "Py4J" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert caught.value.__cause__ is None  # the kit's error, not Spark's wrapping
    assert shard_checksums(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging, no temp files
    # a failed first run leaves no folder at all
    with pytest.raises(CorpusError):
        pretokenize_pieces(plan_pieces(corpus, 2), tokenizer, tmp_path / "new", engine="spark",
                           progress=False)
    assert not (tmp_path / "new").exists()


def test_a_worker_that_dies_is_a_clear_error_and_spark_goes_on(spark):
    import helpers
    from pyspark import cloudpickle

    from iokit.progress import progress_bar
    from iokit.spark import spark_map

    cloudpickle.register_pickle_by_value(helpers)  # Spark's workers do not see tests/
    try:
        with progress_bar(total=3, disable=True) as bar, \
                pytest.raises(WorkerDiedError, match=r"a Spark worker died .*nothing was "
                              r"published.*smaller pieces"):
            spark_map(spark, partial(helpers.die_on, 1), [(0,), (1,), (2,)], bar)
        assert spark_map(spark, helpers.square, [(2,), (3,)]) == [4, 9]  # the session lives on
    finally:
        cloudpickle.unregister_pickle_by_value(helpers)


def test_an_unreachable_master_is_the_kits_error_at_once(tiny_corpus, tokenizer, tmp_path):
    from iokit.spark import check_master

    start = time.monotonic()
    with pytest.raises(StorageError, match=r"spark://127\.0\.0\.1:1: cannot reach a Spark "
                       r"master .*start one with"):
        pretokenize_pieces(plan_pieces(tiny_corpus, 2), tokenizer, tmp_path / "out",
                           engine="spark", master="spark://127.0.0.1:1", progress=False)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "out").exists()
    for bad in ("tcp://host:8786", "spark://host", "local[two]", "spark://host:99999"):
        with pytest.raises(ParameterError, match="Spark master|host:port"):
            check_master(bad)
    assert check_master("local[4]") == "local[4]"


def test_settings_fail_before_any_work(tiny_corpus, tokenizer, tmp_path, monkeypatch):
    import sys

    from iokit import spark as spark_engine

    pieces = plan_pieces(tiny_corpus, 2)
    with pytest.raises(ParameterError, match=r"master= is for engine='spark', not 'dask'"):
        pretokenize_pieces(pieces, tokenizer, tmp_path / "a", engine="dask",
                           master="local[2]")
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ParameterError, match=r"needs the optional 'spark' extra: pip install "
                       r"-e '\.\[spark\]'"):
        pretokenize_pieces(pieces, tokenizer, tmp_path / "b", engine="spark")
    monkeypatch.delitem(sys.modules, "pyspark")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    with pytest.raises(ParameterError, match=r"needs Java.*apt-get install "
                       r"default-jre-headless"):
        spark_engine.check_java()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_java_versions_are_read_from_java_dash_version(tmp_path, monkeypatch):
    from iokit import spark as spark_engine

    for text, major in (('openjdk version "17.0.15" 2025-04-15', 17),
                        ('java version "1.8.0_402"', 8), ('openjdk version "21" 2023-09-19', 21)):
        java = tmp_path / f"java{major}"
        java.write_text(f"#!/bin/sh\necho '{text}' >&2\n")
        java.chmod(0o755)
        assert spark_engine.java_version(str(java)) == major
    home = tmp_path / "old"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text((tmp_path / "java8").read_text())
    (home / "bin" / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(home))
    with pytest.raises(ParameterError, match=r"needs Java 17 or newer; .* is Java 8"):
        spark_engine.check_java()


def test_the_shards_command_runs_on_spark(spark, tiny_corpus, processes, tmp_path, capsys):
    from iokit.app.cli import main

    assert main(["shards", "--corpus", str(tiny_corpus), "--parts", str(PARTS), "--engine",
                 "spark", "--workers", "2", "--vocab-size", "4096", "--out",
                 str(tmp_path)]) == 0
    assert "spark with 2 worker(s): 6 shards" in capsys.readouterr().out
    assert shard_checksums(tmp_path) == shard_checksums(processes)


def test_a_master_that_does_not_answer_is_the_kits_error_in_bounded_time(spark):
    """Last in the module: it ends the module's session. Something listens on the port but
    never speaks Spark; Spark's own constructor would wait a minute or more."""
    import socket
    import threading

    from iokit import spark as spark_engine

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        held = []
        threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
        master = f"spark://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(StorageError, match=rf"{master}: no Spark master answered"):
            spark_engine.spark_context(master, 2, ui=False, timeout_s=3)
        assert time.monotonic() - start < 30  # 3 s, and a JVM start at most
    # the next session starts afresh
    sc = spark_engine.spark_context(None, 2, ui=False)
    assert spark_engine.spark_map(sc, int, [("7",)]) == [7]
    # a JVM that dies is a clear error too (and the next session would start a new one)
    from pyspark import SparkContext

    SparkContext._gateway.proc.kill()
    SparkContext._gateway.proc.wait()
    with pytest.raises(WorkerDiedError, match=r"Spark's JVM stopped answering .*nothing was "
                       r"published"):
        spark_engine.spark_map(sc, int, [("8",)])
    spark_engine.stop_spark()


def test_temporary_files_of_ended_processes_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    from iokit import spark as spark_engine

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = os.getpid()
    for name in (f"iokit-spark-{ended}-x1", f"iokit-spark-{mine}-x2"):
        (tmp_path / name / "blockmgr").mkdir(parents=True)
    for name in (f"iokit-spark-{ended}.log", f"iokit-spark-{mine}.log", "other.log"):
        (tmp_path / name).write_text("log")
    spark_engine._remove_stale()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"iokit-spark-{mine}-x2", f"iokit-spark-{mine}.log", "other.log"])
