"""The probe and the decision guide: verdicts from signals with known answers, the broken
pipelines diagnosed from their measurements, ``iokit probe`` on a learner's own script, and
the pipeline model's GIL term."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from iokit.costs import PipelineModel
from iokit.errors import ParameterError
from iokit.probe import (
    DECISION_TABLE,
    RULES,
    Signals,
    decision_table,
    diagnose,
    hold_gil,
    load_target,
    probe,
    simulated_step,
)

ROOT = Path(__file__).resolve().parents[1]


def signals(**kw):
    base = dict(steps=100, seconds=2.0, compute_s=0.5, wait_s=1.5, cores=2,
                nominal_step_s=0.005)
    base.update(kw)
    return Signals(**base)


# --------------------------------------------------------------------------- the verdict logic


def test_busy_loop_is_not_input_bound():
    v = diagnose(signals(seconds=0.52, wait_s=0.02))
    assert v.key == "none" and not v.input_bound


def test_storage_waits_are_latency_bound_with_the_models_forecast():
    # a simulated store with 20 ms per request, 5 ms steps, one batch in flight
    sig = signals(workers=1, prefetch=0, seconds=100 * 0.025, wait_s=100 * 0.020,
                  stage_s={"read": 0.020, "decompress": 0.0001, "batch": 0.0001},
                  stage_cpu_s={"read": 0.0002, "decompress": 0.0001},
                  bytes_per_token=2.0, itemsize=2)
    v = diagnose(sig)
    assert v.key == "latency"
    assert v.settings["workers"] >= 4  # L / S = 4.04 batches must be in flight
    m = PipelineModel(0.020, 0.0001, 0.0001, 0.005, workers=v.settings["workers"],
                      prefetch=v.settings["prefetch"])
    assert v.predicted_busy == pytest.approx(m.busy_fraction())
    assert v.predicted_busy > 0.95


def cpu_bound(**kw):
    return signals(workers=2, prefetch=4, seconds=100 * 0.012, wait_s=100 * 0.007,
                   stage_s={"read": 0.0001, "decompress": 0.010, "batch": 0.0001},
                   stage_cpu_s={"read": 0.0001, "decompress": 0.010},
                   run_stage_s={"decompress": 0.012}, process_cpu_s=1.1, **kw)


def test_cpu_bound_on_text_is_tokenizing():
    v = diagnose(cpu_bound(bytes_per_token=5.5, itemsize=2))
    assert v.key == "tokenize" and "02" in v.rule.notebook


def test_cpu_bound_on_compressed_bytes_is_decompression():
    v = diagnose(cpu_bound(bytes_per_token=1.4, itemsize=2))
    assert v.key == "decompress" and "03" in v.rule.notebook
    assert v.predicted_speedup > 1


def test_workers_beyond_the_cores():
    sig = cpu_bound(bytes_per_token=1.4, itemsize=2)
    sig.workers, sig.prefetch = 8, 8
    v = diagnose(sig)
    assert v.key == "oversubscribed" and v.settings["workers"] == 2


def test_loading_in_the_loops_own_thread_is_serial():
    # any iterable: the loop's thread was on the CPU for most of its waits
    v = diagnose(signals(inline_cpu_s=1.3, process_cpu_s=1.35))
    assert v.key == "serial"


def test_python_threads_on_one_core_are_the_gil():
    v = diagnose(signals(process_cpu_s=2.0, inline_cpu_s=0.01, kind="threads"))
    assert v.key == "gil"


def test_a_stretched_step_is_not_counted_as_computing():
    # steps of 5 ms took 10 ms each (waiting for the GIL): busy by the step's own time
    sig = signals(compute_s=1.0, wait_s=1.0)
    assert sig.stretch == pytest.approx(2.0)
    assert sig.busy == pytest.approx(0.25)


def test_the_decision_table_covers_every_verdict():
    assert set(RULES) == {r.key for r in DECISION_TABLE}
    text = decision_table()
    for r in DECISION_TABLE:
        assert r.bottleneck in text


# --------------------------------------------------------------------------- the probe


def test_probe_any_generator():
    def gen():
        for i in range(30):
            time.sleep(0.002)
            yield i
    report = probe(gen(), step_s=0.001, steps=20, warmup=1)
    assert report.signals.steps == 20
    assert report.input_bound
    assert "busy fraction" in str(report) and "batches/s" in str(report)


def test_probe_says_when_the_iterable_ends():
    report = probe(iter(range(5)), step_s=0.0, steps=50, warmup=0)
    assert report.signals.steps == 5
    assert any("ended after 5" in n for n in report.notes)


def test_probe_needs_a_step():
    with pytest.raises(ParameterError, match="training step"):
        probe([1, 2, 3], steps=2)


def test_load_target_errors(tmp_path):
    with pytest.raises(ParameterError, match="path/to/script.py:name"):
        load_target("no_colon")
    with pytest.raises(ParameterError, match="no such script"):
        load_target(str(tmp_path / "missing.py") + ":f")
    script = tmp_path / "s.py"
    script.write_text("def make():\n    return 42\n")
    with pytest.raises(ParameterError, match="defines make"):
        load_target(f"{script}:other")
    with pytest.raises(ParameterError, match="not an iterable"):
        load_target(f"{script}:make")


def test_probe_cli_on_a_learners_script(tmp_path):
    script = tmp_path / "my_train.py"
    script.write_text(textwrap.dedent("""\
        import time

        def make_loader():
            def batches():
                for i in range(400):
                    time.sleep(0.003)  # a slow store
                    yield [i] * 64
            return batches()

        if __name__ == "__main__":
            raise SystemExit("not run by the probe")
        """))
    assert "iokit" not in script.read_text()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IOKIT_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "iokit", "probe", f"{script}:make_loader",
                           "--step-ms", "1", "--steps", "40"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for line in ("batches/s", "busy fraction", "input-bound", "bottleneck", "advice",
                 "predicted"):
        assert line in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "iokit", "probe", f"{script}:nothing"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and "defines make_loader" in bad.stderr


# --------------------------------------------------------------------------- the GIL step


def test_hold_gil_spends_its_cpu_time():
    t0 = time.thread_time()
    hold_gil(0.02)
    assert time.thread_time() - t0 >= 0.02


def test_simulated_step_checks_its_share():
    with pytest.raises(ParameterError, match="gil_share"):
        simulated_step(0.01, 1.5)


def test_gil_term_known_cases():
    base = dict(read_s=0.0, decompress_s=0.008, batch_s=0.0, step_s=0.010, workers=2,
                prefetch=4, cores=2)
    # a step with no Python (a sleep): the GIL term is absent, as before
    assert PipelineModel(**base, loader_gil_s=0.008).period_s == pytest.approx(0.010)
    # half the step holds the GIL, no longer than the switch interval: the workers' 8 ms of
    # Python waits for the step's sleep, and only the 3 ms that do not fit there delay it
    threads = PipelineModel(**base, step_gil_s=0.005, loader_gil_s=0.008)
    assert threads.gil_cuts == 0
    assert threads.period_s == pytest.approx(0.013)
    assert "take turns" in threads.bottleneck
    # 2 ms of the workers' Python fit in the sleep: the step sets the pace, as with processes
    small = PipelineModel(**base, step_gil_s=0.005, loader_gil_s=0.002)
    assert small.period_s == pytest.approx(0.010)
    # process workers hold their own GIL: the step sets the pace (CPU: 13 ms on 2 cores)
    procs = PipelineModel(**base, step_gil_s=0.005, loader_gil_s=0.008, kind="processes")
    assert procs.period_s == pytest.approx(0.010) and procs.gil_cuts == 0
    # a step's Python of 7.5 ms outlasts the 5 ms interval once: the worker's 2 ms land in it
    cut = PipelineModel(**base, step_gil_s=0.0075, loader_gil_s=0.002)
    assert cut.gil_cuts == 1
    assert cut.period_s == pytest.approx(0.012)
    assert "cuts into" in cut.bottleneck
    # 15 ms of Python in a 20 ms step: cut twice, at most one interval each time
    long = PipelineModel(**{**base, "step_s": 0.020}, step_gil_s=0.015, loader_gil_s=0.012)
    assert long.gil_cuts == 2
    assert long.period_s == pytest.approx(max(0.020 + 0.010, 0.015 + 0.012))
    # a shorter switch interval lets the workers in sooner
    quick = PipelineModel(**base, step_gil_s=0.005, loader_gil_s=0.002, switch_interval_s=0.001)
    assert quick.gil_cuts == 4 and quick.period_s == pytest.approx(0.012)
    # one lock: a step that is all Python and as much Python per batch take turns
    full = PipelineModel(**{**base, "step_s": 0.008}, step_gil_s=0.008, loader_gil_s=0.008)
    assert full.period_s == pytest.approx(0.016)
    assert full.busy_fraction() == pytest.approx(0.5)
    assert full.steps_per_s() == pytest.approx(1 / 0.016)


# --------------------------------------------------------------------------- broken pipelines


@pytest.fixture(scope="module")
def lab(tiny_corpus, tmp_path_factory):
    from iokit.corpus import iter_documents
    from iokit.lab.diagnose import Lab
    from iokit.shards import pretokenize
    from iokit.tokenize import WordTokenizer

    work = tmp_path_factory.mktemp("diagnose")
    tok = WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), progress=False)
    pretokenize(tiny_corpus, tok, work / "shards")
    return Lab(tiny_corpus, tok, work / "shards", work)


@pytest.mark.parametrize("index", range(4))
def test_each_broken_pipeline_is_diagnosed_from_its_measurements(lab, index):
    from iokit.lab.diagnose import BROKEN, run_broken

    b = BROKEN[index]
    run = run_broken(lab, b, steps=30)
    assert run.verdict.key == b.expected, str(run.verdict)
    assert run.verdict.predicted_busy is not None


def test_process_loader_makes_the_thread_loaders_batches(lab, tmp_path):
    import numpy as np

    from iokit.lab.diagnose import ProcessTextLoader, TextBatches
    from iokit.loader import Loader

    vocab = lab.tokenizer.save(tmp_path / "vocab.json")
    with Loader(TextBatches(lab.corpus, lab.tokenizer, lab.tokens_per_batch), batch_size=16,
                block_size=256, workers=2, prefetch=2, shuffle=False, limit=6) as threads:
        a = [b.x for b in threads]
    with ProcessTextLoader(lab.corpus, vocab, workers=2, limit=6) as procs:
        b = [b.x for b in procs]
        assert {s.stage for s in procs.timeline.spans} == {"tokenize"}
    assert len(a) == len(b) == 6 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_probe_on_the_kits_loader_has_its_stages(lab):
    from iokit.loader import open_loader

    with open_loader(lab.folder, storage="local", workers=2, prefetch=2, limit=30) as loader:
        report = probe(loader, step_s=0.001, steps=20)
    s = report.signals
    assert (s.workers, s.prefetch, s.kind) == (2, 2, "threads")
    assert set(s.run_stage_s) == {"read", "decompress", "batch"}
    assert "stages" in str(report) and "the kit's loader" in str(report)
    rows = {sp.worker for sp in report.timeline.spans}
    # the stages are made by the workers, or by the loop itself when the batches are quicker
    # to make than to hand over (warm local shards): then the report says so
    assert "trainer" in rows and rows - {"trainer"} and \
        rows - {"trainer"} <= {"loop", "worker-0", "worker-1"}
    assert ("loop" in rows) == ("the loop made" in str(report))
    assert loader.timeline is None  # the timeline was lent for the run only


def test_probe_on_the_kits_loader_shows_its_workers_when_they_make_every_batch(lab):
    from iokit.loader import open_loader

    with open_loader(lab.folder, storage="local", workers=2, prefetch=2, limit=30,
                     adaptive=False) as loader:
        report = probe(loader, step_s=0.001, steps=20)
    rows = {sp.worker for sp in report.timeline.spans}
    assert "loop" not in rows and rows >= {"trainer", "worker-0"}


def test_probe_cli_on_the_kits_loader(tiny_corpus):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IOKIT_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "iokit", "probe", "--corpus", str(tiny_corpus),
                           "--storage", "local", "--workers", "2", "--prefetch", "2",
                           "--steps", "20", "--step-ms", "1"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "the kit's loader on local (2 workers, prefetch 2)" in proc.stdout
    assert "stages" in proc.stdout
