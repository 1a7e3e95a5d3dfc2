"""The parallel map: order, start methods, errors, dead workers, Ctrl-C, parameters."""

import json
import multiprocessing
import os
import signal
import threading
import traceback
from functools import partial

import helpers
import pytest
from helpers import leftover_temp_files

from iokit import tasks
from iokit.atomic import atomic_write
from iokit.errors import IokitError, ParameterError, WorkerDiedError
from iokit.parallel import WorkerPool, chunked, parallel_map


def jitter(x):
    """x * x after a pause that differs by item, so tasks finish out of order."""
    return helpers.slow_square(0.001 * ((x * 7) % 5), x)


@pytest.mark.parametrize("kind", ["serial", "threads", "processes"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_input_order(kind, workers):
    items = list(range(40))
    expected = [x * x for x in items]
    with WorkerPool(workers, kind, start_method="fork") as pool:
        for chunk_size in (1, 3, 7, 100):
            assert pool.map(helpers.square, items, chunk_size) == expected
        assert pool.map(jitter, items, 1) == expected  # tasks finish out of order


def test_threads_finish_out_of_order_but_map_keeps_order():
    items = list(range(30))
    assert parallel_map(partial(helpers.slow_square, 0.0), items, workers=4, chunk_size=1) == \
        [x * x for x in items]
    assert parallel_map(jitter, items, workers=4, kind="threads") == [x * x for x in items]


def test_imap_streams_from_a_generator():
    gen = (x for x in range(1000))
    with WorkerPool(2, "threads") as pool:
        out = pool.imap(helpers.square, gen, chunk_size=10)
        assert [next(out) for _ in range(5)] == [0, 1, 4, 9, 16]
        out.close()


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_every_start_method(method):
    items = list(range(25))
    with WorkerPool(2, "processes", start_method=method) as pool:
        assert pool.map(helpers.square, items, chunk_size=4) == [x * x for x in items]
        pids = set(pool.map(helpers.pid_of, range(8)))
    assert os.getpid() not in pids


def test_a_function_that_cannot_be_sent_is_explained():
    with pytest.raises(ParameterError, match="top level of a module"):
        parallel_map(lambda x: x, [1, 2], workers=2, kind="processes")


def test_a_notebook_function_is_explained_for_spawn(monkeypatch):
    import sys
    import types

    fake_main = types.ModuleType("__main__")  # like a notebook kernel: no __file__
    monkeypatch.setitem(sys.modules, "__main__", fake_main)

    def cell_function(x):
        return x

    cell_function.__module__ = "__main__"
    cell_function.__qualname__ = "cell_function"
    fake_main.cell_function = cell_function
    with pytest.raises(ParameterError, match="notebook cell"):
        parallel_map(cell_function, [1, 2], workers=2, kind="processes", start_method="spawn")


@pytest.mark.parametrize("kind", ["serial", "threads", "processes"])
def test_a_worker_exception_reaches_the_caller_with_its_traceback(kind):
    with pytest.raises(ValueError, match="item 7 is bad") as info:
        parallel_map(partial(helpers.fail_on, 7), range(20), workers=2, kind=kind, chunk_size=3)
    text = "".join(traceback.format_exception(info.value))
    assert "in fail_on" in text  # the worker's own frame
    assert 'raise ValueError(f"item {x!r} is bad")' in text
    assert any("failed on item 7" in n for n in getattr(info.value, "__notes__", [])) or \
        "failed on item 7" in text


def test_a_killed_worker_gives_a_clear_error_not_a_hang():
    with pytest.raises(WorkerDiedError, match="SIGKILL") as info:
        parallel_map(partial(helpers.die_on, 5), range(40), workers=2, kind="processes",
                     chunk_size=2)
    assert isinstance(info.value, IokitError)
    assert multiprocessing.active_children() == []


def _interrupt_soon(seconds):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.parametrize("kind,method", [("threads", None), ("processes", "fork"),
                                         ("processes", "spawn")])
def test_ctrl_c_stops_workers_and_leaves_no_half_written_output(tmp_path, kind, method):
    out = tmp_path / "results.jsonl"
    done = []
    timer = None
    try:
        with pytest.raises(KeyboardInterrupt):
            with WorkerPool(2, kind, start_method=method) as pool, \
                    atomic_write(out, "w") as f:
                for r in pool.imap(partial(helpers.slow_square, 0.05), range(400)):
                    done.append(r)
                    if timer is None:  # Ctrl-C a little after the first result
                        timer = _interrupt_soon(0.2)
                    f.write(json.dumps(r) + "\n")
    finally:
        if timer is not None:
            timer.cancel()
    assert 0 < len(done) < 400  # stopped early, after doing some work
    assert not out.exists()
    assert leftover_temp_files(tmp_path) == []
    assert multiprocessing.active_children() == []
    threading.Event().wait(0.1)  # threads end after their current item (50 ms)
    assert [t for t in threading.enumerate() if t.name.startswith("iokit")] == []


@pytest.mark.parametrize("kwargs,match", [
    ({"workers": 0}, "workers must be > 0"),
    ({"workers": -2}, "workers must be > 0"),
    ({"chunk_size": 0}, "chunk size must be > 0"),
    ({"chunk_size": -1}, "chunk size must be > 0"),
    ({"workers": 1.5}, "workers must be a whole number"),
    ({"kind": "fibres"}, "unknown kind 'fibres'"),
    ({"kind": "processes", "start_method": "teleport"}, "unknown start method"),
])
def test_bad_parameters_raise_parameter_error(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        parallel_map(helpers.square, [1, 2, 3], **kwargs)


def test_chunked_keeps_every_item():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []


@pytest.fixture
def small_corpus(tmp_path):
    path = tmp_path / "c.jsonl"
    texts = [f"Doc {i}: hello, world! Tokens {'x ' * i}end." for i in range(30)]
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return path, texts


@pytest.mark.parametrize("target", [1, 100, 1000, 10**9])
def test_spans_cover_the_file_in_order(small_corpus, target):
    path, texts = small_corpus
    spans = tasks.document_spans(path, target)
    assert spans[0][0] == 0 and spans[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert [t for s in spans for t in tasks.read_texts(path, s)] == texts


def test_tokenizing_spans_in_parallel_equals_tokenizing_texts(small_corpus):
    path, texts = small_corpus
    spans = tasks.document_spans(path, 200)
    counts = parallel_map(partial(tasks.tokenize_span, str(path)), spans, workers=2,
                          kind="processes", chunk_size=2)
    assert [int(c) for arr in counts for c in arr] == list(tasks.tokenize_texts(texts))


def test_imap_checks_its_arguments_at_once():
    pool = WorkerPool(2, "processes")
    with pytest.raises(ParameterError, match="chunk size"):
        pool.imap(helpers.square, [1], chunk_size=0)
    with pytest.raises(ParameterError, match="top level of a module"):
        pool.imap(lambda x: x, [1])
    pool.close()
