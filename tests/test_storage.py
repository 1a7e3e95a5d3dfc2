import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from iokit.errors import ParameterError, StorageError
from iokit.storage import (
    PRESETS,
    LocalDisk,
    SimulatedStore,
    StoragePreset,
    drop_cache,
    get_preset,
    open_storage,
    resident_fraction,
)


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "blob.bin"
    p.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return p


def test_local_disk_reads_exact_bytes_in_chunks(data_file):
    disk = LocalDisk()
    assert disk.read(data_file, 10, 5) == bytes(range(10, 15))
    pieces = list(disk.read_chunks(data_file, 300_000))
    assert [len(p) for p in pieces] == [300_000, 300_000, 300_000, 148_576]
    assert b"".join(pieces) == data_file.read_bytes()
    assert sum(map(len, disk.read_chunks(data_file, 4096, limit=10_000))) == 10_000


def test_cold_read_is_reported_honestly(data_file):
    if not drop_cache(data_file):
        pytest.skip("this OS cannot drop a file from the page cache")
    assert resident_fraction(data_file) == 0.0
    data_file.read_bytes()
    assert resident_fraction(data_file) == 1.0


def test_simulated_store_says_it_is_simulated(data_file):
    store = SimulatedStore("hdd")
    assert store.simulated and "simulated" in store.name and "simulated" in repr(store)
    assert store.read(data_file, 0, 4) == bytes(range(4))


def test_simulated_request_pays_latency_and_stream_bandwidth(data_file):
    preset = StoragePreset("test", 0.02, 50e6, 1e9, "")
    store = SimulatedStore(preset)
    start = time.perf_counter()
    for _ in range(5):
        store.read(data_file, 0, 500_000)
    per_request = (time.perf_counter() - start) / 5
    expected = 0.02 + 500_000 / 50e6  # 30 ms
    assert expected <= per_request < expected * 1.5


def _timed_reads(store, path, n, size):
    start = time.monotonic()
    for _ in range(n):
        store.read(path, 0, size)
    return time.monotonic() - start


def test_aggregate_bandwidth_is_shared_between_threads(data_file):
    # Latency hidden by threads; one 10 MB/s link shared by 4 readers of 100 kB each x 5.
    preset = StoragePreset("link", 0.001, 1e9, 10e6, "")
    store = SimulatedStore(preset)
    start = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda _: _timed_reads(store, data_file, 5, 100_000), range(4)))
    elapsed = time.monotonic() - start
    assert elapsed >= 4 * 5 * 100_000 / 10e6  # 0.2 s: the link, not the streams, limits


def test_aggregate_bandwidth_is_shared_between_processes(data_file):
    preset = StoragePreset("link", 0.001, 1e9, 10e6, "")
    store = SimulatedStore(preset)
    start = time.monotonic()
    with ProcessPoolExecutor(2) as ex:
        list(ex.map(_timed_reads, [store] * 2, [data_file] * 2, [5] * 2, [200_000] * 2))
    assert time.monotonic() - start >= 2 * 5 * 200_000 / 10e6  # 0.2 s


def test_threads_hide_latency_until_the_link_is_full(data_file):
    preset = StoragePreset("lat", 0.02, 1e9, 1e9, "")
    store = SimulatedStore(preset)
    start = time.monotonic()
    threads = [threading.Thread(target=_timed_reads, args=(store, data_file, 5, 1000))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 requests of 20 ms: 0.8 s one at a time, about 0.1 s on 8 threads.
    assert time.monotonic() - start < 0.4


def test_presets_and_errors(data_file, tmp_path):
    assert set(PRESETS) == {"local-nvme", "hdd", "network-fs", "object-store"}
    assert isinstance(open_storage("local"), LocalDisk)
    with pytest.raises(ParameterError, match="unknown storage preset 's3'.*object-store"):
        get_preset("s3")
    with pytest.raises(StorageError, match="no such file"):
        LocalDisk().read(tmp_path / "missing", 0, 1)
    with pytest.raises(ParameterError, match="chunk size must be > 0"):
        list(LocalDisk().read_chunks(data_file, 0))
    with pytest.raises(ParameterError, match="chunk size must be > 0"):
        list(SimulatedStore("hdd").read_chunks(data_file, -5))
