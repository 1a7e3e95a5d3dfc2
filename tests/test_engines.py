"""One task per piece, one shard per task: the same shards on every engine, or none at all."""

import hashlib
import json

import pytest
from helpers import bad_corpus, interrupt_at

from iokit import shards
from iokit.corpus import iter_documents
from iokit.engines import STAGING_PREFIX, pretokenize_pieces, shard_checksums
from iokit.errors import CorpusError, ParameterError
from iokit.split import plan_pieces, split_corpus
from iokit.tokenize import WordTokenizer

PARTS = 6


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus):
    return WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), vocab_size=4096)


@pytest.fixture(scope="module")
def pieces(tiny_corpus):
    return plan_pieces(tiny_corpus, PARTS)


@pytest.fixture(scope="module")
def serial(pieces, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serial")
    run = pretokenize_pieces(pieces, tokenizer, folder, engine="serial", progress=False)
    return folder, run


def test_each_piece_becomes_one_shard_and_the_stream_is_the_corpus(serial, tiny_corpus,
                                                                   tokenizer, tmp_path):
    folder, run = serial
    assert [p.name for p in run.bins] == [f"shard-{i:05d}.bin" for i in range(PARTS)]
    assert [t.index for t in run.tasks] == list(range(PARTS))
    whole = tmp_path / "whole"
    shards.pretokenize(tiny_corpus, tokenizer, whole)
    with shards.open_shards(folder, verify=True, tokenizer=folder / "vocab.json") as a, \
            shards.open_shards(whole) as b:
        assert len(a.shards) == PARTS and a.n_tokens == b.n_tokens == run.tokens
        assert (a.read(0, a.n_tokens) == b.read(0, b.n_tokens)).all()
        assert len(a) == len(b)


@pytest.mark.parametrize("engine,workers", [("threads", 2), ("processes", 2), ("processes", 3)])
def test_every_local_engine_writes_byte_identical_shards(serial, pieces, tokenizer, tmp_path,
                                                         engine, workers):
    run = pretokenize_pieces(pieces, tokenizer, tmp_path, engine=engine, workers=workers,
                             progress=False)
    assert shard_checksums(tmp_path) == shard_checksums(serial[0])
    assert run.workers == workers and len(run.tasks) == PARTS


def test_files_or_byte_ranges_give_the_same_shards(serial, tiny_corpus, tokenizer, tmp_path):
    split_corpus(tiny_corpus, tmp_path / "parts", PARTS)
    pretokenize_pieces(plan_pieces(tmp_path / "parts"), tokenizer, tmp_path / "out",
                       engine="processes", progress=False)
    assert shard_checksums(tmp_path / "out") == shard_checksums(serial[0])


def test_compressed_shards_are_identical_too(pieces, tokenizer, tmp_path):
    for engine in ("serial", "processes"):
        pretokenize_pieces(pieces, tokenizer, tmp_path / engine, engine=engine, codec="zstd:3",
                           block_bytes=65536, progress=False)
    assert shard_checksums(tmp_path / "serial") == shard_checksums(tmp_path / "processes")
    with shards.open_shards(tmp_path / "serial", verify=True) as s:
        assert all(sh.compressed for sh in s.shards)


def test_the_run_records_its_tasks(serial):
    run = serial[1]
    assert run.in_bytes == sum(p for p in (t.in_bytes for t in run.tasks))
    assert all(t.seconds >= 0 and t.docs > 0 and t.out_bytes > 0 for t in run.tasks)
    tl = run.timeline()
    assert len(tl.spans) == PARTS and {s.worker for s in tl.spans} == {"worker 1"}
    assert "serial with 1 worker(s): 6 shards" in str(run)


def test_dask_with_two_workers_writes_the_same_shards(serial, pieces, tokenizer, tmp_path):
    pytest.importorskip("dask.distributed", reason="the optional 'dask' extra is not "
                        "installed (pip install -e '.[dask]'); CI installs it")
    from iokit.engines import close_cluster, scale_cluster, start_local_cluster

    run = pretokenize_pieces(pieces, tokenizer, tmp_path / "own", engine="dask", workers=2,
                             progress=False)
    assert run.workers == 2
    assert shard_checksums(tmp_path / "own") == shard_checksums(serial[0])
    client = start_local_cluster(2, dashboard=False)
    try:
        for _ in range(2):  # a running cluster, used twice: the same shards each time
            run = pretokenize_pieces(pieces, tokenizer, tmp_path / "client", engine="dask",
                                     client=client, progress=False)
            assert shard_checksums(tmp_path / "client") == shard_checksums(serial[0])
        assert len({t.worker for t in run.tasks}) == 2
        scale_cluster(client, 1)
        run = pretokenize_pieces(pieces, tokenizer, tmp_path / "one", engine="dask",
                                 client=client, progress=False)
        assert run.workers == 1 and len({t.worker for t in run.tasks}) == 1
        assert shard_checksums(tmp_path / "one") == shard_checksums(serial[0])
    finally:
        close_cluster(client)


def test_without_dask_the_error_names_the_extra(pieces, tokenizer, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ParameterError, match=r"needs the optional 'dask' extra: pip install"):
        pretokenize_pieces(pieces, tokenizer, tmp_path / "out", engine="dask")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("engine", ["serial", "processes"])
def test_a_failed_task_leaves_the_old_shards_untouched(tmp_path, tokenizer, engine):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"doc {i}."}) + "\n" for i in range(30)))
    out = tmp_path / "out"
    pretokenize_pieces(plan_pieces(good, 3), tokenizer, out, engine=engine, progress=False)
    before = shard_checksums(out)
    corpus, offset = bad_corpus(tmp_path, 25)
    with pytest.raises(CorpusError, match=rf"bad\.jsonl: the document at byte offset {offset} "
                       r"is malformed JSON .*fix or remove it"):
        pretokenize_pieces(plan_pieces(corpus, 3), tokenizer, out, engine=engine, workers=2,
                           progress=False)
    assert shard_checksums(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging, no temp files


def test_a_failed_first_run_leaves_no_folder(tmp_path, tokenizer):
    corpus, _ = bad_corpus(tmp_path, 3)
    with pytest.raises(CorpusError):
        pretokenize_pieces(plan_pieces(corpus, 2), tokenizer, tmp_path / "out",
                           engine="serial", progress=False)
    assert not (tmp_path / "out").exists()


def test_ctrl_c_publishes_nothing(tmp_path, tokenizer, pieces, monkeypatch):
    from iokit import tasks

    interrupt_at(monkeypatch, tasks, "read_texts", 3)
    with pytest.raises(KeyboardInterrupt):
        pretokenize_pieces(pieces, tokenizer, tmp_path / "out", engine="serial",
                           progress=False)
    assert not (tmp_path / "out").exists()


def test_a_staging_folder_left_by_a_crash_is_removed(serial, pieces, tokenizer, tmp_path):
    stale = tmp_path / f"{STAGING_PREFIX}dead0000"
    stale.mkdir(parents=True)
    (stale / "shard-00000.bin").write_bytes(b"half")
    pretokenize_pieces(pieces, tokenizer, tmp_path, engine="serial", progress=False)
    assert not stale.exists()
    assert shard_checksums(tmp_path) == shard_checksums(serial[0])


def test_nonsense_settings_fail_before_any_work(pieces, tokenizer, tmp_path):
    out = tmp_path / "out"
    cases = [
        (dict(engine="ray"), r"unknown engine 'ray'; choose one of: dask, processes"),
        (dict(workers=0), r"workers must be > 0"),
        (dict(codec="zip"), r"unknown codec"),
        (dict(dtype="uint8"), r"unknown token dtype"),
        (dict(engine="threads", client=object()), r"client= is for engine='dask'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ParameterError, match=message):
            pretokenize_pieces(pieces, tokenizer, out, progress=False, **kwargs)
    with pytest.raises(ParameterError, match="no pieces to process"):
        pretokenize_pieces([], tokenizer, out)
    assert not out.exists()


def test_checksums_are_of_the_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / ".hidden").write_bytes(b"x")
    assert shard_checksums(tmp_path) == {"a": hashlib.blake2b(b"abc", digest_size=8).hexdigest()}


def test_a_bad_piece_on_dask_names_the_file_and_offset(tmp_path, tokenizer):
    pytest.importorskip("dask.distributed", reason="the optional 'dask' extra is not installed")
    corpus, offset = bad_corpus(tmp_path, 25)
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=rf"bad\.jsonl: the document at byte offset {offset} "):
        pretokenize_pieces(plan_pieces(corpus, 3), tokenizer, out, engine="dask", workers=2,
                           progress=False)
    assert not out.exists()


def test_a_dask_worker_that_dies_is_a_clear_error():
    pytest.importorskip("dask.distributed", reason="the optional 'dask' extra is not installed")
    from functools import partial

    import dask  # distributed first: its settings must be loaded before config.set restores
    from helpers import die_on

    from iokit.engines import _dask_map, close_cluster, start_local_cluster
    from iokit.errors import WorkerDiedError
    from iokit.progress import progress_bar

    # The worker dies on item 1; dask may blame any task the worker held at that moment.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        client = start_local_cluster(1, dashboard=False)
    try:
        with progress_bar(total=3, disable=True) as bar, \
                pytest.raises(WorkerDiedError, match=r"dask workers died while running "
                              r"'shard-0000[0-2]-.*nothing was published.*smaller pieces"):
            _dask_map(client, partial(die_on, 1), [(0, 0, False), (1, 1, False), (2, 2, True)],
                      bar)
    finally:
        close_cluster(client)


@pytest.mark.parametrize("engine", ["threads", "processes"])
def test_a_given_pool_is_reused_across_runs(serial, pieces, tokenizer, tmp_path, engine):
    from iokit.parallel import WorkerPool

    with WorkerPool(2, engine) as pool:
        runs = [pretokenize_pieces(pieces, tokenizer, tmp_path / f"run{i}", engine=engine,
                                   pool=pool, progress=False) for i in range(2)]
        assert pool._executor is not None  # still running after both runs
        pids = set(map(str, pool._executor._processes or ())) if engine == "processes" else ()
    if engine == "processes":  # both runs' tasks ran in the pool's two processes
        assert len(pids) == 2
        assert {t.worker.split(":")[1] for r in runs for t in r.tasks} <= pids
    for i in range(2):
        assert shard_checksums(tmp_path / f"run{i}") == shard_checksums(serial[0])


def test_a_failed_run_on_a_given_pool_leaves_it_usable(pieces, tokenizer, tmp_path):
    from iokit.parallel import WorkerPool

    corpus = tmp_path / "bad.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"doc {i}."}) + "\n" for i in range(20))
                      + '{"text": "broken\n')
    with WorkerPool(2, "processes") as pool:
        with pytest.raises(CorpusError):
            pretokenize_pieces(plan_pieces(corpus, 2), tokenizer, tmp_path / "bad",
                               engine="processes", pool=pool, progress=False)
        run = pretokenize_pieces(pieces, tokenizer, tmp_path / "good", engine="processes",
                                 pool=pool, progress=False)
    assert len(run.bins) == len(pieces)


def test_a_pool_of_another_kind_is_refused(pieces, tokenizer, tmp_path):
    from iokit.parallel import WorkerPool

    with WorkerPool(2, "threads") as pool, pytest.raises(ParameterError, match="threads pool"):
        pretokenize_pieces(pieces, tokenizer, tmp_path, engine="processes", pool=pool,
                           progress=False)
