"""Storage through fsspec and a real S3-protocol server on loopback (moto, started by the kit):
shard sets read from it equal the local ones byte for byte, raw and block-compressed; a window
of a compressed shard fetches only the blocks it touches; bad endpoints, credentials, keys and
objects that change while read get the kit's error naming the URL, within seconds."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from iokit.errors import FormatError, IokitError, StorageError
from iokit.loader import Loader, ShardBatches, open_loader
from iokit.shards import open_shards, write_shards
from iokit.storage import (
    FsspecStorage,
    LocalDisk,
    SimulatedStore,
    StoragePreset,
    as_url,
    is_url,
    open_storage,
)

fsspec = pytest.importorskip("fsspec", reason="the s3 extra: pip install -e '.[s3]'")
pytest.importorskip("s3fs", reason="the s3 extra: pip install -e '.[s3]'")
pytest.importorskip("moto.server", reason="the s3 extra: pip install -e '.[s3]'")

from iokit import remote  # noqa: E402


@pytest.fixture(scope="session")
def s3():
    """One loopback S3 server for the whole session."""
    with remote.loopback_s3() as ep:
        yield ep


@pytest.fixture(scope="module")
def shard_sets(tmp_path_factory):
    """A raw and a block-compressed shard set of the same documents (several shards each)."""
    tmp = tmp_path_factory.mktemp("remote-shards")
    rng = np.random.default_rng(7)
    docs = [rng.integers(0, 3000, size=int(rng.integers(1, 4000))) for _ in range(120)]
    write_shards(docs, tmp / "raw", vocab_size=3000, max_shard_bytes=150_000)
    write_shards(docs, tmp / "zstd", vocab_size=3000, max_shard_bytes=150_000, codec="zstd:3",
                 block_bytes=8192)
    return tmp


@pytest.fixture(scope="module")
def uploaded(s3, shard_sets):
    for name in ("raw", "zstd"):
        remote.upload(shard_sets / name, f"s3://{s3.bucket}/sets/{name}")
    return f"s3://{s3.bucket}/sets"


def test_urls_survive_path_and_file_urls_are_local(tmp_path):
    from pathlib import Path

    assert as_url(Path("s3://bucket/key")) == "s3://bucket/key"
    assert is_url(Path("memory://x")) and not is_url(tmp_path / "x")
    assert as_url(f"file://{tmp_path}/x") == f"{tmp_path}/x"


def test_fsspec_storage_reads_local_file_and_memory_urls_like_the_disk(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "blob").write_bytes(data)
    with fsspec.open("memory://iokit-test/blob", "wb") as f:
        f.write(data)
    store = open_storage("fsspec")
    for where in (tmp_path / "blob", f"file://{tmp_path}/blob", "memory://iokit-test/blob"):
        assert store.size(where) == len(data)
        assert store.read(where, 1000, 300) == data[1000:1300]
        assert b"".join(store.read_chunks(where, 70_000)) == data
    assert store.read("memory://iokit-test/blob", len(data) - 5, 100) == data[-5:]
    assert list(LocalDisk().read_chunks(f"file://{tmp_path}/blob", 70_000)) == \
        list(store.read_chunks(tmp_path / "blob", 70_000))


def test_the_simulated_store_wraps_any_storage_and_says_over_what():
    with fsspec.open("memory://iokit-test/sim", "wb") as f:
        f.write(b"x" * 5000)
    fast = StoragePreset("fast", 0.0, 1e12, 1e12, "")
    store = SimulatedStore(fast, inner=FsspecStorage())
    assert store.read("memory://iokit-test/sim", 10, 20) == b"x" * 20
    assert store.size("memory://iokit-test/sim") == 5000
    assert "over fsspec" in store.name and "simulated" in repr(store)
    assert "over" not in SimulatedStore(fast).name  # the local disk, as before


@pytest.mark.parametrize("name", ["raw", "zstd"])
def test_shards_from_s3_equal_the_local_ones_byte_for_byte(uploaded, shard_sets, name):
    store = FsspecStorage()
    local = open_shards(shard_sets / name)
    with open_shards(f"{uploaded}/{name}", verify=True) as far, local:
        assert len(far.shards) == len(local.shards) > 1
        for a, b in zip(far.shards, local.shards):
            assert store.read(a.bin_path, 0, a.bin_size) == b.bin_path.read_bytes()
            assert store.read(a.idx_path, 0, 10**9) == b.idx_path.read_bytes()
        assert np.array_equal(far.read(0, far.n_tokens), local.read(0, local.n_tokens))
        assert np.array_equal(far.document(57), local.document(57))
        rng = np.random.default_rng(1)
        x1, y1 = far.sample_batch(np.random.default_rng(3), 4, 300)
        x2, y2 = local.sample_batch(np.random.default_rng(3), 4, 300)
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
        for _ in range(5):
            a = int(rng.integers(0, far.n_tokens - 5000))
            assert np.array_equal(far.read(a, a + 5000), local.read(a, a + 5000))


def test_a_window_of_a_compressed_shard_fetches_only_the_blocks_it_touches(uploaded):
    store = FsspecStorage()
    with open_shards(f"{uploaded}/zstd") as probe:
        shard = probe.shards[0]
    from iokit.remote import open_remote_shards

    far = open_remote_shards(f"{uploaded}/zstd", store)
    table = far.shards[0].blocks
    per_block = 8192 // 2
    start, stop = per_block + 100, 3 * per_block + 5  # blocks 1, 2 and 3
    before = (store.requests, store.bytes_read)
    tokens = far.shards[0].read(start, stop)
    assert len(tokens) == stop - start
    assert store.requests - before[0] == 3
    assert store.bytes_read - before[1] == int(table.offsets[4] - table.offsets[1])
    assert table.n_blocks > 4 and shard.n_tokens == far.shards[0].n_tokens


def test_the_loader_reads_the_same_batches_from_s3(uploaded, shard_sets):
    def batches(loader):
        with loader:
            return [(b.index, b.x.copy()) for b in loader]

    for name in ("raw", "zstd"):
        local = batches(open_loader(shard_sets / name, batch_size=4, block_size=64, seed=2,
                                    limit=12))
        far = batches(open_loader(f"{uploaded}/{name}", storage="fsspec", batch_size=4,
                                  block_size=64, seed=2, limit=12))
        assert [i for i, _ in far] == [i for i, _ in local]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(far, local))
    store = SimulatedStore(StoragePreset("fast", 1e-4, 1e12, 1e12, ""), inner=FsspecStorage())
    source = ShardBatches(open_shards(f"{uploaded}/raw"), 4 * 65, store)
    with Loader(source, batch_size=4, block_size=64, workers=2, limit=3) as loader:
        assert len(list(loader)) == 3


# --------------------------------------------------------------------------- bad input


def _no_files_written(tmp_path):
    return list(tmp_path.iterdir()) == []


def test_an_unreachable_endpoint_is_an_error_within_seconds(monkeypatch, tmp_path):
    port = remote.free_port()  # nothing listens there
    dead = remote.S3Endpoint(f"http://127.0.0.1:{port}", "k", "s", None, "iokit", "test")
    monkeypatch.setattr(remote, "_active", [dead])
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        open_shards("s3://iokit/sets/raw")
    assert time.monotonic() - start < 30  # a bounded wait, not a hang
    msg = str(err.value)
    assert "s3://iokit/sets/raw" in msg and f"127.0.0.1:{port}" in msg
    assert "cannot reach the endpoint" in msg and "AWS_ENDPOINT_URL" in msg
    assert _no_files_written(tmp_path)


def test_wrong_credentials_are_refused_with_what_to_do(s3):
    with remote.loopback_s3(auth=True):  # a second server that checks credentials
        with pytest.raises(StorageError) as err:
            FsspecStorage().size("s3://iokit/anything.bin")
    msg = str(err.value)
    assert "s3://iokit/anything.bin" in msg and "access denied" in msg
    assert "AWS_ACCESS_KEY_ID" in msg


@pytest.mark.parametrize("url", ["s3://no-such-bucket-here/x.bin", "s3://iokit/no/such.bin"])
def test_a_missing_bucket_or_key_names_the_url(s3, url):
    with pytest.raises(StorageError, match="no such bucket or key") as err:
        FsspecStorage().read(url, 0, 10)
    assert url in str(err.value) and "upload" in str(err.value)


def test_a_missing_shard_set_names_the_url(s3):
    with pytest.raises(StorageError, match="no such bucket or key") as err:
        open_shards(f"s3://{s3.bucket}/nothing-uploaded-here")
    assert f"s3://{s3.bucket}/nothing-uploaded-here" in str(err.value)
    remote.upload(__file__, f"s3://{s3.bucket}/not-shards/x.py")
    with pytest.raises(FormatError, match="no shard-NNNNN.idx objects here"):
        open_shards(f"s3://{s3.bucket}/not-shards")


def _put(url, data):
    fs, path = remote.filesystem(url)
    fs.pipe_file(path, data)
    fs.invalidate_cache()


@pytest.mark.parametrize("change", ["same size", "shorter"])
def test_a_shard_that_changes_on_the_server_while_read_is_an_error(s3, shard_sets, change):
    url = f"s3://{s3.bucket}/changing-{change.replace(' ', '-')}"
    remote.upload(shard_sets / "raw", url)
    shards = open_shards(url)
    first = shards.shards[0]
    assert len(shards.read(0, 100)) == 100
    original = (shard_sets / "raw" / "shard-00000.bin").read_bytes()
    new = original[::-1] if change == "same size" else original[:1000]
    _put(first.bin_path, new)
    with pytest.raises(StorageError, match="changed on the server") as err:
        shards.read(0, 100)
    assert first.bin_path in str(err.value)


def test_a_shard_whose_size_or_checksum_no_longer_matches_its_index(s3, shard_sets):
    url = f"s3://{s3.bucket}/tampered"
    remote.upload(shard_sets / "raw", url)
    original = (shard_sets / "raw" / "shard-00001.bin").read_bytes()
    _put(f"{url}/shard-00001.bin", original[:-2])
    with pytest.raises(FormatError, match="field 'bin size'") as err:
        open_shards(url)
    assert f"{url}/shard-00001.bin" in str(err.value) and "upload" in str(err.value)
    _put(f"{url}/shard-00001.bin", bytes([original[0] ^ 1]) + original[1:])
    open_shards(url)  # the sizes agree again: opening reads no token
    with pytest.raises(FormatError, match="checksum mismatch") as err:
        open_shards(url, verify=True)
    assert f"{url}/shard-00001.bin" in str(err.value)


def test_without_the_extra_the_kit_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(IokitError, match=r"pip install -e '\.\[s3\]'"):
        FsspecStorage().read("s3://iokit/x.bin", 0, 1)
    with pytest.raises(IokitError, match=r"\.\[s3\]"):
        with remote.loopback_s3():
            pass


# --------------------------------------------------------------------------- the server process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent to reap it has ended too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_the_server_stops_after_the_with_block():
    with remote.loopback_s3(bucket="stops") as ep:
        pid = int(ep.about.rsplit(" ", 1)[1])
        assert _alive(pid)
    assert _wait_gone(pid)


def test_the_server_ends_with_its_parent_after_kill_9():
    code = ("import sys, time\nfrom iokit.remote import loopback_s3\n"
            "with loopback_s3(bucket='orphan') as ep:\n"
            "    print(ep.about.rsplit(' ', 1)[1], flush=True)\n    time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_gone(pid), "the loopback server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# --------------------------------------------------------------------------- measuring an endpoint


def test_interleaved_reads_on_a_simulated_store_over_fsspec_find_its_preset():
    from iokit.lab.chunks import interleaved_reads, sweep_checks

    with fsspec.open("memory://iokit-test/sweep", "wb") as f:
        f.write(b"y" * (1 << 20))
    preset = StoragePreset("test", 0.004, 100e6, 1e9, "")
    store = SimulatedStore(preset, inner=FsspecStorage())
    points, threads = interleaved_reads(store, "memory://iokit-test/sweep",
                                        [4096, 65536, 262144, 1 << 20], [1, 3],
                                        request_bytes=65536, requests_per_thread=2,
                                        max_calls=4, repeat=2, warmup=0)
    assert [(p.workers, p.items, p.nbytes) for p in threads] == [(1, 2, 131072),
                                                                 (3, 6, 393216)]
    assert [(p.chunk, p.calls, p.nbytes) for p in points] == [
        (4096, 4, 16384), (65536, 4, 262144), (262144, 4, 1 << 20), (1 << 20, 1, 1 << 20)]
    model, checks = sweep_checks(points, held_out=[65536])
    assert 0.5 < model.overhead_s / preset.latency < 2  # the known answer, loosely
    assert len(checks) == 1 and checks[0].kind == "fit"


def test_measure_endpoint_reads_the_corpus_back_from_the_loopback_server(s3, tmp_path):
    from iokit.lab.chunks import (
        endpoint_differences,
        matching_preset,
        measure_endpoint,
        threaded_checks,
    )
    from iokit.storage import get_preset

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'{"id": 1, "text": "hello"}\n' * 4000)
    run = measure_endpoint(corpus, [4096, 65536, 1 << 20], threads=[1, 2], max_calls=3,
                           requests_per_thread=2, repeat=1, warmup=0, object_bytes=2 << 20)
    assert run.url.startswith(f"s3://{s3.bucket}/") and "loopback" in run.about
    assert [p.calls for p in run.points] == [3, 3, 2]  # an object of 2 MiB
    assert [(p.workers, p.items) for p in run.threads] == [(1, 2), (2, 4)]
    assert all(p.nbytes == p.items * (256 << 10) for p in run.threads)
    model, _ = run.fit(held_out=[65536])
    threaded, checks = threaded_checks(model, run.threads, calibrate_on=2)
    assert [c.checked_on for c in checks] == ["1 threads, 256 KiB reads"]
    assert matching_preset(threaded).latency == model.overhead_s
    assert len(endpoint_differences(threaded, get_preset("object-store"))) == 4
    assert list(tmp_path.iterdir()) == [corpus]  # the repeated copy was temporary


def test_a_missing_memory_or_local_object_names_the_url(tmp_path):
    for url in ("memory://iokit-test/nothing-here", f"file://{tmp_path}/nothing-here"):
        with pytest.raises(StorageError, match="no such file or object") as err:
            FsspecStorage().read(url, 0, 10)
        assert "nothing-here" in str(err.value)


def test_your_own_endpoint_comes_from_the_standard_environment(s3, uploaded, shard_sets,
                                                               monkeypatch):
    monkeypatch.setattr(remote, "_active", [])  # as if no loopback server ran here
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    monkeypatch.setenv("IOKIT_S3_BUCKET", s3.bucket)
    assert remote.uses_own_endpoint()
    with remote.s3_endpoint() as ep:  # no server started: the environment's endpoint
        assert ep.url == s3.url and ep.bucket == s3.bucket and "AWS_ENDPOINT_URL" in ep.about
        with open_shards(f"{uploaded}/raw") as far, open_shards(shard_sets / "raw") as local:
            assert np.array_equal(far.read(0, far.n_tokens), local.read(0, local.n_tokens))


def test_http_urls_are_read_with_range_requests_too(s3, uploaded, shard_sets):
    # a public object: the S3 server answers plain HTTP GETs (with Range) as a web server would
    fs, path = remote.filesystem(f"{uploaded}/raw/shard-00000.bin")
    fs.chmod(path, acl="public-read")
    url = f"{s3.url}/{s3.bucket}/sets/raw/shard-00000.bin"
    local = (shard_sets / "raw" / "shard-00000.bin").read_bytes()
    store = FsspecStorage()
    assert store.size(url) == len(local)
    assert store.read(url, 1000, 5000) == local[1000:6000]
    assert store.requests == 1 and store.bytes_read == 5000
