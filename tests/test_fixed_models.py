"""The cost models fixed to carry their missing terms, each on synthetic runs or a simulated
store with a fake clock, where the right answer is known exactly (no timing thresholds)."""

import math

import numpy as np
import pytest

from iokit.costs import (
    Check,
    ClusterModel,
    GILThreadModel,
    LoopCostModel,
    RequestCostModel,
    SamplingCostModel,
    access_seconds,
    amdahl_speedup,
    fit_serial_fraction,
    list_schedule,
    median_abs_error,
    read_seconds,
)
from iokit.errors import ParameterError
from iokit.lab.loops import LoopResult
from iokit.lab.scaling import ScalingPoint
from iokit.storage import PRESETS, SimulatedStore, StoragePreset
from iokit.timing import Timing

# --------------------------------------------------------------------------- checks


def test_check_relative_error_and_median():
    low = Check("a", "x", "y", predicted=8.0, measured=10.0)
    high = Check("b", "x", "y", predicted=13.0, measured=10.0, kind="fit")
    assert low.rel_error == pytest.approx(-0.2) and high.rel_error == pytest.approx(0.3)
    assert "calibrated on x" in str(low) and "checked on y" in str(low) and "(fit)" in str(high)
    assert median_abs_error([low, high]) == pytest.approx(0.25)
    assert math.isnan(median_abs_error([]))


# --------------------------------------------------------------------------- the loop (01)


def _loop_run(model: LoopCostModel, name, bytes_in, docs, chunk):
    from iokit.lab.chunks import loop_calls

    reads, writes = loop_calls(bytes_in, chunk, docs)
    out = int(bytes_in * model.out_per_in)
    stages = model.stage_seconds(bytes_in, reads, writes, out)
    return LoopResult(name, bytes_in, out, docs, 0, stages, sum(stages.values()))


def test_loop_model_recovers_per_call_costs_and_bandwidths():
    from iokit.lab.chunks import LoopCalibration, fit_loop_model, loop_checks

    true = LoopCostModel(RequestCostModel(0.4e-6, 3e9), RequestCostModel(5e-6, 1.5e9),
                         8e6, 1.01)
    chunk = 256 << 10
    naive = _loop_run(true, "naive", 1_000_000, 220, None)
    chunked = _loop_run(true, f"chunked {chunk:,} B", 1_000_000, 220, chunk)
    got = fit_loop_model([naive], [chunked], chunk)
    assert got.read.overhead_s == pytest.approx(0.4e-6, rel=1e-6)
    assert got.read.bandwidth == pytest.approx(3e9, rel=1e-6)
    assert got.write.overhead_s == pytest.approx(5e-6, rel=1e-6)
    assert got.write.bandwidth == pytest.approx(1.5e9, rel=1e-6)
    assert got.process_bps == pytest.approx(8e6)
    # Checked on other runs: the whole corpus, naive and 1 MiB chunks.
    cal = LoopCalibration(got, 1_000_000, chunk)
    runs = [_loop_run(true, "naive", 64_000_000, 14_000, None),
            _loop_run(true, "chunked 1,048,576 B", 64_000_000, 14_000, 1 << 20)]
    checks = loop_checks(cal, runs)
    assert len(checks) == 6 and all(abs(c.rel_error) < 1e-9 for c in checks)
    assert all("256 KiB" in c.calibrated_on for c in checks)


def test_loop_fit_keeps_each_runs_term_when_runs_disagree():
    from iokit.lab.chunks import fit_loop_model

    # A chunked write slower per byte than the naive loop's: no non-negative exact solution;
    # the bandwidth comes from the chunked run, and the per-call cost cannot go below zero.
    stages = {"read": 1.0, "process": 1.0}
    naive = LoopResult("naive", 2_000_000, 2_000_000, 470, 0, {**stages, "write": 0.004}, 2)
    chunked = LoopResult("chunked", 2_000_000, 2_000_000, 470, 0,
                         {**stages, "read": 0.001, "write": 0.006}, 1)
    m = fit_loop_model([naive], [chunked], 4 << 20)
    assert m.write.bandwidth == pytest.approx(2e6 / 0.006) and m.write.overhead_s == 0.0


def test_loop_write_stage_charges_bytes_as_well_as_calls():
    m = LoopCostModel(RequestCostModel(1e-6, 1e9), RequestCostModel(1e-6, 1e9), 1e7)
    one_call = m.stage_seconds(10e6, read_calls=1, write_calls=1, bytes_out=10e6)
    assert one_call["read"] == pytest.approx(1e-6 + 0.01)
    assert one_call["write"] == pytest.approx(1e-6 + 0.01)  # not 1 µs: 10 MB must be copied


# ----------------------------------------------------------------------- threads and Amdahl (04)


def _points(kind, workers, seconds, t1):
    return [ScalingPoint(kind, n, 4, s, s, s, 10, 1000, t1) for n, s in zip(workers, seconds)]


def test_gil_model_recovers_cross_core_costs_and_predicts_held_out_counts():
    from iokit.lab.scaling import thread_checks

    true = GILThreadModel(t1=2.0, cross=0.5, crowd=2.0, cores=2)
    # one thread: no hand-overs; a thread per core: the cross-core cost; from twice the
    # cores on, the crowd's full share
    assert float(true.speedup(1)) == pytest.approx(1.0)
    assert float(true.seconds(2)) == pytest.approx(3.0)
    assert float(true.seconds(3)) == pytest.approx(2.0 * (1 + 0.5 + 1.0))
    assert float(true.seconds(4)) == float(true.seconds(8)) == pytest.approx(7.0)
    got = GILThreadModel.fit([2, 3], true.seconds([2, 3]), 2.0, cores=2)
    assert (got.cross, got.crowd) == (pytest.approx(0.5), pytest.approx(2.0))
    counts = [1, 2, 3, 4, 6]
    model, checks = thread_checks(_points("threads", counts, true.seconds(counts), 2.0),
                                  calibrate_on=(2, 4), cores=2)
    assert (model.cross, model.crowd) == (pytest.approx(0.5), pytest.approx(2.0))
    assert [c.checked_on for c in checks] == [
        "3 threads (more workers than the 2 cores: they take turns)",
        "6 threads (more workers than the 2 cores: they take turns)"]
    assert all(abs(c.rel_error) < 1e-9 and c.kind == "fit" for c in checks)
    # calibrated on a thread per core only, the crowd is not priced, and the output says so
    flat, flat_checks = thread_checks(_points("threads", counts, true.seconds(counts), 2.0),
                                      calibrate_on=(2,), cores=2)
    assert flat.crowd == 0.0 and "crowding not priced" in flat_checks[0].calibrated_on
    # Threads that never slow down fit no cost; with no 2-thread run, no fit.
    assert GILThreadModel.fit([2, 4], [2.0, 2.0], 2.0).cross == 0.0
    with pytest.raises(ParameterError):
        GILThreadModel.fit([1], [2.0], 2.0)
    with pytest.raises(ParameterError, match="2 to 2 threads"):
        GILThreadModel.fit([3, 4], [5.0, 7.0], 2.0, cores=2)


def test_amdahl_capped_at_cores_recovers_serial_fraction():
    from iokit.lab.scaling import amdahl_checks

    s, cores = 0.07, 4
    workers = np.arange(1, 13)
    speedups = amdahl_speedup(workers, s, cores)
    assert speedups[8] == pytest.approx(speedups[3])  # beyond the cores: no gain
    assert fit_serial_fraction(workers, speedups, cores) == pytest.approx(s)
    # Fitting the uncapped law to counts above the cores gets s wrong (the old mistake).
    assert fit_serial_fraction(workers[cores:], speedups[cores:]) > 2 * s
    pts = _points("processes", workers, 10.0 / speedups, 10.0)
    fitted, checks = amdahl_checks(pts, cores)
    assert fitted == pytest.approx(s)
    assert {c.checked_on.split()[0] for c in checks} == {str(n) for n in range(5, 13)}
    assert all("take turns" in c.checked_on for c in checks)
    assert all(abs(c.rel_error) < 1e-9 and c.kind == "fit" for c in checks)
    with pytest.raises(ParameterError, match="at most 2"):
        fit_serial_fraction([4, 8], [1.5, 1.5], cores=2)


# --------------------------------------------------------------------------- seeks (03)


class FakeClock:
    """time.monotonic and time.sleep for the simulated store: sleeping moves the clock."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, s):
        self.now += s

    def perf_counter(self):
        return self.now


def _elapsed(clock, store, path, offsets, size):
    start = clock.now
    for off in offsets:
        store.read(path, off, size)
    return clock.now - start


def test_hdd_seeks_only_on_random_reads(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    disk = StoragePreset("disk", 0.008, 1e6, 1e6, "test", sequential_latency=0.0)
    store = SimulatedStore(disk, state_file=tmp_path / "link.state")
    (tmp_path / "link.state").write_bytes(b"\0" * 8)
    import iokit.storage

    clock = FakeClock()  # one clock for the store and its shared link's state
    monkeypatch.setattr(iokit.storage, "time", clock)
    size = 1024
    sequential = _elapsed(clock, store, path, [i * size for i in range(8)], size)
    assert sequential == pytest.approx(0.008 + 8 * size / 1e6)  # one seek, then streaming
    store._ends.clear()
    shuffled = [5, 1, 7, 0, 3, 6, 2, 4]
    random = _elapsed(clock, store, path, [i * size for i in shuffled], size)
    assert random == pytest.approx(8 * 0.008 + 8 * size / 1e6)  # a seek every time
    assert access_seconds(disk, 8) == pytest.approx(0.008)
    assert access_seconds(disk, 8, sequential=False) == pytest.approx(0.064)
    # A network store pays its round trip on every request, sequential or not.
    assert access_seconds(PRESETS["network-fs"], 8) == pytest.approx(8 * 1e-3)
    assert PRESETS["hdd"].request_latency(sequential=True) == 0.0
    assert PRESETS["hdd"].request_latency(sequential=False) == PRESETS["hdd"].latency


def test_overlapped_read_pays_one_block_that_cannot_overlap():
    # 10 blocks: fetching takes 1 s in all, decoding 2 s in all: 10 × 0.2 + one fetch 0.1.
    assert read_seconds(1e9, 1e9, 1.0, 0.5e9, overlap=True, requests=10) == pytest.approx(2.1)
    assert read_seconds(1e9, 1e9, 1.0, 0.5e9, overlap=False, requests=10) == pytest.approx(3.0)


# ---------------------------------------------------------------------- epochs and sampling (02)


def test_epoch_and_sampling_checks_name_what_was_held_out():
    from iokit.costs import EpochCostModel
    from iokit.lab.epochs import SamplingResult, epoch_checks, sampling_checks

    model = EpochCostModel(preprocess_s=3.0, raw_epoch_s=2.0, shard_epoch_s=0.01)
    checks = epoch_checks(model, {"sample_bytes": 2e6}, raw_s=2.5, shard_s=0.01,
                          preprocess_s=3.0)
    assert [round(c.rel_error, 6) for c in checks] == [-0.2, 0.0, -0.2, 0.0]
    assert all("first 2.00 MB" in c.calibrated_on for c in checks)

    true = SamplingCostModel(5e-6, 0.5e-6, 6e9)
    results = []
    for b in (1, 16, 64, 256):
        for t in (16, 256, 2048):
            sec = float(true.seconds(b, t)) * 10
            results.append(SamplingResult(b, t, 10, Timing([sec] * 3), 2, False, 1.0))
    fitted, checks = sampling_checks(results)
    assert fitted.call_s == pytest.approx(5e-6) and fitted.bandwidth == pytest.approx(6e9)
    assert [c.checked_on for c in checks] == ["batch 16 × block 256", "batch 64 × block 16",
                                              "batch 256 × block 16"]
    assert all(c.kind == "fit" and abs(c.rel_error) < 1e-9 for c in checks)
    assert "16×256" not in checks[0].calibrated_on


# --------------------------------------------------------------------------- the cluster (06)


def test_cluster_model_recovers_per_task_cost_from_one_and_two_workers():
    true = ClusterModel(bytes_per_s=12e6, overhead_s=0.03, startup_s=0.2)
    pieces = [7.5e6] * 8
    runs = [(pieces, 1, true.predict(pieces, 1)), (pieces, 2, true.predict(pieces, 2))]
    got = ClusterModel.fit_runs(runs, bytes_per_s=12e6)
    assert got.overhead_s == pytest.approx(0.03) and got.startup_s == pytest.approx(0.2)
    # Held out: other piece counts on 2 workers.
    for n in (2, 3, 16, 64):
        sizes = [60e6 / n] * n
        assert got.predict(sizes, 2) == pytest.approx(true.predict(sizes, 2))
    # The old fit from 2 workers only could not tell start-up from per-task cost.
    assert list_schedule([1.0] * 8, 1, 0.03) == pytest.approx(8.24)


def test_cluster_forecast_capped_by_shared_storage():
    free = ClusterModel(10e6, 0.0, 0.0)
    capped = ClusterModel(10e6, 0.0, 0.0, storage_bandwidth=1e9)
    total, pieces = 1e12, 100_000
    slots = np.array([1, 10, 100, 1_000, 10_000])
    t_free = free.predict_even(total, pieces, slots)
    t_cap = capped.predict_even(total, pieces, slots)
    assert t_cap[:2] == pytest.approx(t_free[:2])  # few workers: each at its own 10 MB/s
    assert t_cap[-1] == pytest.approx(total / 1e9)  # many: the storage's 1 GB/s sets the pace
    assert t_free[-1] < total / 1e9
    assert "shared storage 1,000 MB/s" in str(capped)


def test_cluster_checks_skip_the_calibration_piece_count():
    from iokit.lab.scale_out import PiecePoint, cluster_checks

    m = ClusterModel(10e6, 0.01, 0.1)
    sweep = [PiecePoint(n, [8e6 / n] * n, Timing([m.predict([8e6 / n] * n, 2)] * 3))
             for n in (1, 4, 8, 16)]
    checks = cluster_checks(m, sweep, 2, "serial, dask 1 and 2 workers, 8 pieces",
                            skip_parts=(8,))
    assert [c.checked_on for c in checks] == ["1 pieces on 2 workers", "4 pieces on 2 workers",
                                              "16 pieces on 2 workers"]
    assert all(abs(c.rel_error) < 1e-12 for c in checks)


# --------------------------------------------------------------------------- the bench lines


def test_bench_model_error_lines():
    from iokit.app.bench import model_error_lines

    lines = model_error_lines([Check("loop naive read", "a", "b", 1.1, 1.0),
                               Check("amdahl at 4", "c", "d", 0.9, 1.0, kind="fit")])
    assert [r.name for r in lines[:2]] == ["model error loop naive read",
                                           "model error amdahl at 4"]
    assert all(r.unit == "relative" for r in lines)
    assert lines[0].value == pytest.approx(0.1) and lines[-1].value == pytest.approx(0.1)
    assert "calibrated on a; checked on b" in lines[0].note
    assert model_error_lines([]) == []


# --------------------------------------------------------------------------- on real runs


def test_loop_and_epoch_calibrations_say_what_they_sampled(tiny_corpus, tmp_path):
    """The calibrations run on a sample of the corpus and leave nothing behind (what they
    measure is not asserted: these are real timings)."""
    from iokit.lab.epochs import predict_epochs
    from iokit.lab.loops import predict_loop
    from iokit.tokenize import WordTokenizer

    folder = tiny_corpus.parent
    before = sorted(p.name for p in folder.iterdir())
    naive = predict_loop(tiny_corpus)
    chunked = predict_loop(tiny_corpus, 1 << 20, calibration=naive.calibration)
    assert chunked.calibration is naive.calibration
    assert set(naive.stage_seconds) == {"read", "process", "write"}
    assert all(s > 0 for s in naive.stage_seconds.values())
    assert naive.read_bandwidth > 0 and naive.write_bandwidth > 0
    assert naive.calibration.sample_bytes <= tiny_corpus.stat().st_size // 4 + 10_000
    tok = WordTokenizer.train(["the cat sat on the mat", "a dog"] * 50)
    model, facts = predict_epochs(tiny_corpus, tok, repeat=1)
    assert model.raw_epoch_s > 0 and model.shard_epoch_s > 0 and model.preprocess_s > 0
    assert 0 < facts["sample_bytes"] <= tiny_corpus.stat().st_size // 4 + 10_000
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_second_piece_count_tells_dispatch_from_start_up():
    # A scheduler that hands out tasks one after another (5 ms each, whatever the workers)
    # beside a per-task cost on the worker (30 ms) and a start-up (0.2 s).
    true = ClusterModel(bytes_per_s=12e6, overhead_s=0.03, startup_s=0.2, dispatch_s=0.005)
    eight, many = [7.5e6] * 8, [60e6 / 32] * 32
    one_count = [(eight, 1, true.predict(eight, 1)), (eight, 2, true.predict(eight, 2))]
    old = ClusterModel.fit_runs(one_count, bytes_per_s=12e6)
    # 8 pieces only: the dispatch of 8 tasks hides in the start-up (0.2 + 8 × 5 ms)
    assert old.dispatch_s == 0 and old.startup_s == pytest.approx(0.24)
    assert old.overhead_s == pytest.approx(0.03)
    two_counts = one_count + [(many, 2, true.predict(many, 2))]
    got = ClusterModel.fit_runs(two_counts, bytes_per_s=12e6)
    assert got.startup_s == pytest.approx(0.2) and got.overhead_s == pytest.approx(0.03)
    assert got.dispatch_s == pytest.approx(0.005)
    assert "5.00 ms per task in turn (dispatch)" in str(got)
    # held out: other piece counts; the one-count fit misses the many-piece ones
    for n in (1, 3, 4, 16, 64):
        sizes = [60e6 / n] * n
        assert got.predict(sizes, 2) == pytest.approx(true.predict(sizes, 2))
        assert got.predict_even(60e6, n, 2) == pytest.approx(true.predict_even(60e6, n, 2))
    sizes = [60e6 / 64] * 64
    assert old.predict(sizes, 2) < 0.95 * true.predict(sizes, 2)
    # the dispatch does not shrink with more machines: 1,000 machines cannot beat n × 5 ms
    assert got.predict_even(1e12, 10_000, 2_000) > 10_000 * 0.005
