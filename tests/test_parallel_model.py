"""The models of parallel work: threaded reads against latency, Amdahl's law and its fit."""

import pytest


def test_threaded_read_model_caps_at_aggregate_bandwidth():
    from iokit.costs import ThreadedReadModel

    m = ThreadedReadModel(latency=0.02, stream_bandwidth=80e6, aggregate_bandwidth=1e9)
    c = 1 << 20
    one = c / (0.02 + c / 80e6)
    assert float(m.per_stream(c)) == pytest.approx(one)
    assert float(m.throughput(4, c)) == pytest.approx(4 * one)
    assert float(m.throughput(1000, c)) == pytest.approx(1e9)
    n = m.best_workers(c)
    assert float(m.throughput(n, c)) == pytest.approx(1e9)
    assert float(m.throughput(n - 1, c)) < 1e9
    assert m.seconds(100, 1, c) == pytest.approx(100 * (0.02 + c / 80e6))


def test_threaded_read_model_from_preset():
    from iokit.costs import ThreadedReadModel
    from iokit.storage import get_preset

    p = get_preset("object-store")
    m = ThreadedReadModel.from_preset("object-store")
    assert (m.latency, m.stream_bandwidth, m.aggregate_bandwidth) == \
        (p.latency, p.stream_bandwidth, p.aggregate_bandwidth)


def test_amdahl_fit_recovers_the_serial_fraction():
    import numpy as np

    from iokit.costs import amdahl_speedup, fit_serial_fraction

    workers = np.array([1, 2, 3, 4, 8, 16])
    for s in (0.0, 0.05, 0.2, 0.6):
        fitted = fit_serial_fraction(workers, amdahl_speedup(workers, s))
        assert fitted == pytest.approx(s, abs=1e-9)
    rng = np.random.default_rng(0)
    noisy = amdahl_speedup(workers, 0.1) * rng.normal(1, 0.02, len(workers))
    assert fit_serial_fraction(workers, noisy) == pytest.approx(0.1, abs=0.03)
    assert amdahl_speedup(10**9, 0.25) == pytest.approx(4.0)


def test_serial_fraction_from_two_timings():
    from iokit.costs import amdahl_speedup, serial_fraction_from_timings

    t1 = 10.0
    tn = t1 / float(amdahl_speedup(4, 0.3))
    assert serial_fraction_from_timings(t1, tn, 4) == pytest.approx(0.3)
    assert serial_fraction_from_timings(10.0, 2.0, 4) == 0.0  # superlinear clips to 0


def test_amdahl_fit_needs_a_parallel_run():
    from iokit.costs import fit_serial_fraction

    with pytest.raises(ValueError, match="more than one worker"):
        fit_serial_fraction([1, 1], [1.0, 1.0])
