import math

import numpy as np
import pytest

from iokit.costs import RequestCostModel, fit_request_model
from iokit.errors import ParameterError
from iokit.lab.chunks import chunk_sweep, fit_sweep, powers_of_two
from iokit.storage import SimulatedStore, StoragePreset
from iokit.timing import (
    Timeline,
    Timing,
    format_bytes,
    format_seconds,
    interleaved,
    measure,
    stopwatch,
)


def test_measure_runs_warmup_then_repeats_and_reports_median():
    calls = []
    t = measure(lambda: calls.append(1), repeat=5, warmup=2, nbytes=1_000_000)
    assert len(calls) == 7 and len(t.seconds) == 5
    assert t.min <= t.median <= t.max
    assert t.mb_per_s == pytest.approx(1.0 / t.median)


def test_measure_calls_setup_before_every_run():
    order = []
    measure(lambda: order.append("run"), repeat=2, warmup=1, setup=lambda: order.append("setup"))
    assert order == ["setup", "run"] * 3


def test_timing_summary_has_units():
    t = Timing([0.002, 0.001, 0.003], nbytes=2_000_000, label="read")
    assert str(t) == "read: 2.00 ms (min 1.00 ms, max 3.00 ms, 3 runs), 1,000.0 MB/s"
    assert t.spread == pytest.approx(1.0)
    assert format_seconds(12e-6) == "12.0 µs" and format_seconds(3.5) == "3.50 s"


def test_measure_rejects_nonsense():
    with pytest.raises(ParameterError, match="repeat must be > 0"):
        measure(lambda: None, repeat=0)


def test_timeline_records_spans_per_stage_and_worker():
    tl = Timeline()
    with tl.span("read", worker="w0"):
        pass
    tl.add("process", 1.0, 3.0, worker="w1")
    tl.add("process", 4.0, 5.0, worker="w1")
    assert [s.stage for s in tl.spans] == ["read", "process", "process"]
    assert tl.totals()["process"] == 3.0
    assert tl.spans[1].worker == "w1"


def test_request_model_predicts_and_has_a_knee():
    m = RequestCostModel(overhead_s=0.01, bandwidth=100e6)
    assert m.seconds(1e6, 1e5) == pytest.approx(10 * 0.01 + 0.01)
    assert m.knee == pytest.approx(1e6)
    assert m.throughput(1e6) == pytest.approx(50e6)  # half the bandwidth at the knee


def test_fit_recovers_known_parameters_from_noisy_runs():
    rng = np.random.default_rng(0)
    true = RequestCostModel(2e-6, 5e9)
    chunks = np.array(powers_of_two(1, 1 << 24))
    nbytes = np.minimum(chunks * 10_000, 64 << 20)
    calls = np.ceil(nbytes / chunks)
    seconds = np.array([true.seconds(b, c) for b, c in zip(nbytes, chunks)])
    seconds *= rng.uniform(0.95, 1.05, len(seconds))
    fit = fit_request_model(calls, nbytes, seconds)
    assert fit.overhead_s == pytest.approx(2e-6, rel=0.1)
    assert fit.bandwidth == pytest.approx(5e9, rel=0.1)


def test_fit_keeps_parameters_non_negative():
    fit = fit_request_model([1, 1, 1], [1e6, 2e6, 4e6], [0.001, 0.002, 0.004])
    assert fit.overhead_s == 0.0 and fit.bandwidth == pytest.approx(1e9)
    fit = fit_request_model([10, 20], [1, 2], [1.0, 2.0])
    assert math.isinf(fit.bandwidth) and fit.overhead_s == pytest.approx(0.1)


def test_sweep_on_simulated_store_recovers_the_preset(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (2 << 20))
    store = SimulatedStore(StoragePreset("t", 0.005, 100e6, 1e9, ""))
    points = list(chunk_sweep(path, powers_of_two(1 << 12, 1 << 21), store, max_calls=8,
                              repeat=1, warmup=0))
    assert [p.chunk for p in points] == powers_of_two(1 << 12, 1 << 21)
    assert all(p.calls <= 8 for p in points)
    fit = fit_sweep(points)
    assert fit.overhead_s == pytest.approx(0.005, rel=0.15)
    assert fit.bandwidth == pytest.approx(100e6, rel=0.15)


def test_powers_of_two_and_byte_formatting():
    assert powers_of_two(1, 16) == [1, 2, 4, 8, 16]
    assert powers_of_two(3, 20) == [4, 8, 16]
    assert format_bytes(1) == "1 B" and format_bytes(65536) == "64 KiB"
    assert format_bytes(16 << 20) == "16 MiB"
    with pytest.raises(ParameterError, match="smallest chunk must be > 0"):
        powers_of_two(0, 8)


def test_interleaved_runs_the_sides_in_turn():
    calls = []
    a, b = interleaved(lambda: calls.append("a"), lambda: calls.append("b"), repeat=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert len(a.seconds) == len(b.seconds) == 3


def test_interleaved_checks_its_counts():
    with pytest.raises(ParameterError, match="repeat"):
        interleaved(lambda: None, repeat=0)


def test_stopwatch_stops_when_the_block_ends():
    with stopwatch() as sw:
        running = sw.seconds
    done = sw.seconds
    assert 0 <= running <= done == sw.seconds


def test_a_fit_without_enough_runs_is_the_kits_error():
    from iokit.costs import fit_serial_fraction

    with pytest.raises(ParameterError, match="at least two runs"):
        fit_request_model([1], [100], [0.1])
    with pytest.raises(ParameterError, match="one speedup per worker count"):
        fit_serial_fraction([1, 2], [1.0])
