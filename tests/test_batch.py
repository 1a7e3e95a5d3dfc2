"""The batch job: a summarizer model that round-trips through its file, output byte-identical
for 1, 2 and 4 workers and for every place the model is loaded, a run killed (SIGKILL, in a
subprocess) midway that resumes to the same bytes, bad input as the kit's errors, the pool's
initializer, and the cost model on cases whose answer is known."""

import json
import os
import subprocess
import sys

import helpers
import pytest

from iokit.app.cli import main
from iokit.batch import (
    MANIFEST_NAME,
    OUTPUT_NAME,
    chunk_per_worker,
    ensure_model,
    finished_pieces,
    plan_tasks,
    summarize_corpus,
    work_folder,
)
from iokit.corpus import iter_documents
from iokit.costs import BatchCostModel
from iokit.errors import CorpusError, FormatError, ParameterError
from iokit.lab.batch import kill_midway, wait_unlocked
from iokit.parallel import WorkerPool
from iokit.summarize import load_summarizer, split_sentences, train_summarizer


@pytest.fixture(scope="module")
def small_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus's first 200 documents (a quick batch)."""
    path = tmp_path_factory.mktemp("batch") / "docs.jsonl"
    with open(tiny_corpus, "rb") as src, open(path, "wb") as dst:
        for i, line in enumerate(src):
            if i == 200:
                break
            dst.write(line)
    return path


@pytest.fixture(scope="module")
def model_path(small_corpus):
    return ensure_model(small_corpus, small_corpus.parent / "model" / "summarizer.model")


@pytest.fixture(scope="module")
def reference(small_corpus, model_path, tmp_path_factory):
    """The output of a serial run, and the summaries computed here, one per document."""
    run = summarize_corpus(small_corpus, model_path, tmp_path_factory.mktemp("ref"),
                           kind="serial")
    return run.output.read_bytes()


# --------------------------------------------------------------------------- the model


def test_model_round_trips_and_summarizes_deterministically(small_corpus, model_path, tmp_path):
    texts = [d.text for d in iter_documents(small_corpus)]
    trained = train_summarizer(texts)
    loaded = load_summarizer(model_path)
    assert loaded.term_df == trained.term_df and loaded.pair_df == trained.pair_df
    assert loaded.fingerprint == trained.fingerprint
    for text in texts[:20]:
        summary = loaded.summarize(text)
        assert summary == trained.summarize(text)
        sentences = split_sentences(text)
        picked = split_sentences(summary)
        assert len(picked) == min(3, len(sentences))
        positions = [sentences.index(s) for s in picked]  # whole sentences, in their order
        assert positions == sorted(positions)
    # saved again, the same bytes (atomic, no temporary file left)
    again = trained.save(tmp_path / "again.model")
    assert again.read_bytes() == model_path.read_bytes()
    assert helpers.leftover_temp_files(tmp_path) == []


def test_short_text_is_its_own_summary():
    model = train_summarizer(["One. Two words here! And a third?"])
    assert model.summarize("Hello  there.\n\nSecond   one.") == "Hello there. Second one."


@pytest.mark.parametrize("damage, field", [
    (lambda b: b"iokit-summarizer 9" + b[18:], "line 1"),
    (lambda b: b[:-10], "body_sha256"),
    (lambda b: b.replace(b'"terms": ', b'"terms": 1', 1), "lines of statistics"),
    (lambda b: b.split(b"\n", 1)[0] + b"\n{not json\n" + b.split(b"\n", 2)[2], "line 2"),
])
def test_a_damaged_model_file_is_a_format_error_naming_what(model_path, tmp_path, damage,
                                                             field):
    bad = tmp_path / "bad.model"
    bad.write_bytes(damage(model_path.read_bytes()))
    with pytest.raises(FormatError, match=field) as err:
        load_summarizer(bad)
    assert str(bad) in str(err.value) and "train" in str(err.value)
    with pytest.raises(FormatError, match="no such summarizer model file"):
        load_summarizer(tmp_path / "missing.model")


# --------------------------------------------------------------------------- same bytes


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_output_is_identical_for_1_2_and_4_workers(small_corpus, model_path, reference,
                                                   tmp_path, workers):
    run = summarize_corpus(small_corpus, model_path, tmp_path / "out", workers=workers,
                           docs_per_task=7)
    assert run.output.read_bytes() == reference
    assert run.documents == 200 and run.tasks == len(plan_tasks(small_corpus, 7))
    assert not work_folder(tmp_path / "out").exists()  # published, work removed
    assert {p.name for p in (tmp_path / "out").iterdir()} == {OUTPUT_NAME}


@pytest.mark.parametrize("loads, docs", [("task", 40), ("fork", 16),
                                         ("worker", chunk_per_worker(200, 2))])
def test_where_the_model_loads_and_the_task_size_change_no_byte(small_corpus, model_path,
                                                               reference, tmp_path, loads,
                                                               docs):
    run = summarize_corpus(small_corpus, model_path, tmp_path, workers=2, loads=loads,
                           docs_per_task=docs)
    assert run.output.read_bytes() == reference
    assert run.loads_done == {"task": run.tasks, "fork": 1, "worker": 2}[loads]
    if loads == "task":
        assert all(p.load_s > 0 for p in run.pieces)


def test_output_lines_are_the_documents_summaries_in_order(small_corpus, model_path,
                                                          reference):
    model = load_summarizer(model_path)
    lines = [json.loads(line) for line in reference.splitlines()]
    docs = list(iter_documents(small_corpus))
    assert [r["id"] for r in lines] == [d.id for d in docs]
    assert all(r["summary"] == model.summarize(d.text) for r, d in zip(lines[:30], docs))


# --------------------------------------------------------------------------- resume


def test_a_run_killed_midway_resumes_to_the_same_bytes(small_corpus, model_path, reference,
                                                       tmp_path):
    out = tmp_path / "out"
    killed = kill_midway(small_corpus, model_path, out, workers=2, docs_per_task=2,
                         fraction=0.3)
    assert not killed.output_there  # nothing published by the killed run
    assert 0 < killed.finished < killed.tasks
    run = summarize_corpus(small_corpus, model_path, out, workers=2, docs_per_task=2)
    assert run.resumed == killed.finished
    assert len(run.pieces) == run.tasks - killed.finished  # only the rest was done
    assert run.output.read_bytes() == reference


def test_resume_redoes_what_it_cannot_trust(small_corpus, model_path, reference, tmp_path):
    out = tmp_path / "out"

    def stop_after_5(done):
        if len(finished_pieces(work_folder(out))) >= 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        summarize_corpus(small_corpus, model_path, out, docs_per_task=10, kind="serial",
                         on_piece=stop_after_5)
    work = work_folder(out)
    assert len(finished_pieces(work)) == 5 and not (out / OUTPUT_NAME).exists()
    (work / "piece-00001.jsonl").write_bytes(b"changed\n")  # a piece no longer as recorded
    with open(work / MANIFEST_NAME, "ab") as f:
        f.write(b'{"index": 7, "docs"')  # a line torn by a kill
    run = summarize_corpus(small_corpus, model_path, out, docs_per_task=10, kind="serial")
    assert run.resumed == 4
    assert run.output.read_bytes() == reference
    # other settings: the old pieces do not fit the new plan, and the run starts afresh
    with pytest.raises(KeyboardInterrupt):
        summarize_corpus(small_corpus, model_path, out, docs_per_task=10, kind="serial",
                         on_piece=stop_after_5)
    run = summarize_corpus(small_corpus, model_path, out, docs_per_task=9, kind="serial")
    assert run.resumed == 0 and run.output.read_bytes() == reference
    assert "pieces were discarded" in run.note


def test_a_second_run_into_the_same_folder_is_refused(small_corpus, model_path, tmp_path):
    from iokit.atomic import output_lock

    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out):
        code = subprocess.run(
            [sys.executable, "-m", "iokit", "summarize", "--corpus", str(small_corpus),
             "--out", str(out), "--model", str(model_path), "--workers", "1"],
            capture_output=True, text=True, env={**os.environ, "IOKIT_PROGRESS": "0"})
    assert code.returncode == 2
    assert f"process {os.getpid()}" in code.stderr and "iokit run" in code.stderr
    wait_unlocked(out)


# --------------------------------------------------------------------------- bad input


def test_a_bad_line_names_the_file_and_line(small_corpus, model_path, tmp_path):
    lines = small_corpus.read_bytes().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines[:30]) + b'{"text": broken\n' + b"".join(lines[30:40]))
    with pytest.raises(CorpusError, match=r"line 31") as err:
        summarize_corpus(bad, model_path, tmp_path / "out", workers=2, docs_per_task=4)
    assert str(bad) in str(err.value)
    assert not (tmp_path / "out" / OUTPUT_NAME).exists()


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers must be > 0"),
    (["--docs-per-task", "0"], "--docs-per-task must be > 0"),
    (["--loads", "everywhere"], "unknown --loads"),
    (["--corpus", "MISSING"], "no such corpus"),
    (["--out", "/proc/iokit-out"], "cannot create the output folder"),
    (["--corpus", "BAD"], "line 3"),
])
def test_the_command_says_what_is_wrong_in_one_line(small_corpus, model_path, tmp_path, capsys,
                                                    argv, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(small_corpus.read_bytes().split(b"\n", 2)[0] + b"\n\n[1, 2]\n")
    argv = [{"MISSING": str(tmp_path / "nope.jsonl"), "BAD": str(bad)}.get(a, a) for a in argv]
    base = ["summarize", "--corpus", str(small_corpus), "--out", str(tmp_path / "out"),
            "--model", str(model_path)]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iokit: error:") and message in err and "\n" not in err


def test_the_command_trains_the_model_once_and_writes_the_summaries(small_corpus, reference,
                                                                   tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["summarize", "--corpus", str(small_corpus), "--out", str(out), "--workers", "2"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "training the summarizer" in first and "200 documents" in first
    assert (out / OUTPUT_NAME).read_bytes() == reference  # same corpus, same model
    assert main(argv) == 0
    assert "(already there)" in capsys.readouterr().out


# --------------------------------------------------------------------------- the pool


def test_the_initializer_runs_once_per_worker_and_its_error_reaches_the_caller():
    with WorkerPool(2, "processes", initializer=helpers.remember_pid_at_start) as pool:
        pids = pool.map(helpers.started_pid, range(20))
    assert all(pid != 0 for pid in pids)  # every task saw its worker's initializer
    with WorkerPool(1, "serial", initializer=helpers.remember_pid_at_start) as pool:
        assert pool.map(helpers.started_pid, range(3)) == [os.getpid()] * 3
    with pytest.raises(ValueError, match="initializer failed") as err, \
            WorkerPool(2, "processes", initializer=helpers.failing_initializer) as pool:
        pool.map(helpers.square, range(4))
    notes = " ".join(getattr(err.value, "__notes__", []))
    assert "initializer" in notes or sys.version_info < (3, 11)
    with pytest.raises(ParameterError, match="initializer must be a function"):
        WorkerPool(2, "processes", initializer="load")


def test_a_model_not_loaded_in_the_worker_is_said(small_corpus, model_path, tmp_path):
    from iokit.batch import BatchTask, summarize_piece

    piece = plan_tasks(small_corpus, 5)[0]
    task = BatchTask(0, str(small_corpus), piece.start, piece.end, str(tmp_path / "other"),
                     str(tmp_path), "worker")
    with pytest.raises(ParameterError, match="initializer"):
        summarize_piece(task)


# --------------------------------------------------------------------------- the cost model


def test_cost_model_on_cases_worked_by_hand():
    m = BatchCostModel(load_s=0.5, bytes_per_s=1e6, task_s=0.1, startup_s=0.2, cores=2)
    eight = [1e6] * 8
    # per task: 4 waves of (1 s work + 0.5 s load + 0.1 s) on 2 slots, plus the start-up
    assert m.predict(eight, 2, "task") == pytest.approx(0.2 + 4 * 1.6)
    # per worker: both load at once (0.5 s), then 4 waves of 1.1 s
    assert m.predict(eight, 2, "worker") == pytest.approx(0.2 + 0.5 + 4 * 1.1)
    assert m.predict(eight, 2, "fork") == pytest.approx(0.2 + 0.5 + 4 * 1.1)
    # 4 workers on 2 cores: the loads take turns (2 × 0.5 s); the work still has 2 slots
    assert m.predict(eight, 4, "worker") == pytest.approx(0.2 + 1.0 + 4 * 1.1)
    # one big chunk per worker: the larger chunk decides
    assert m.predict([3e6, 5e6], 2, "worker") == pytest.approx(0.2 + 0.5 + 5.1)
    assert m.total_loads(2, "task", 8) == 8 and m.total_loads(2, "worker", 8) == 2
    with pytest.raises(ParameterError, match="unknown loads"):
        m.predict(eight, 2, "everywhere")


def test_cost_model_fit_recovers_known_costs():
    true = BatchCostModel(load_s=0.3, bytes_per_s=2e6, task_s=0.04, startup_s=0.15, cores=2)
    sizes = [[2e5 + 1e4 * (i % 5) for i in range(n)] for n in (10, 40)]
    runs = [(b, w, "worker", true.predict(b, w, "worker")) for b in sizes for w in (1, 2)]
    fitted = BatchCostModel.fit(0.3, 2e6, runs, cores=2)
    assert fitted.task_s == pytest.approx(0.04, rel=1e-6)
    assert fitted.startup_s == pytest.approx(0.15, rel=1e-6)
    # and it predicts the runs it was not fitted to
    for b in sizes:
        assert fitted.predict(b, 2, "task") == pytest.approx(true.predict(b, 2, "task"))


def test_sigterm_keeps_the_finished_pieces_in_one_line_and_the_run_resumes(
        small_corpus, model_path, reference, tmp_path):
    import signal
    import time

    from iokit.batch import manifest_path

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "iokit", "summarize", "--corpus", str(small_corpus), "--out",
         str(out), "--model", str(model_path), "--workers", "2", "--docs-per-task", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "IOKIT_PROGRESS": "0"})
    deadline = time.monotonic() + 120
    while not (manifest_path(out).is_file() and
               manifest_path(out).read_bytes().count(b"\n") >= 10):
        assert proc.poll() is None and time.monotonic() < deadline, "finished before the stop"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "terminated (SIGTERM)" in stderr and "run the same command again" in stderr
    assert not (out / OUTPUT_NAME).exists()
    wait_unlocked(out)
    kept = len(finished_pieces(work_folder(out)))
    run = summarize_corpus(small_corpus, model_path, out, workers=2, docs_per_task=2)
    assert run.resumed == kept >= 10
    assert run.output.read_bytes() == reference
