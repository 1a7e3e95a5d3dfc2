"""The lab's runs on a real S3 endpoint beside the simulated presets (notebooks 05 and 06)."""

import numpy as np
import pytest

from iokit.errors import FormatError
from iokit.shards import write_shards

pytest.importorskip("s3fs", reason="the s3 extra: pip install -e '.[s3]'")
pytest.importorskip("moto.server", reason="the s3 extra: pip install -e '.[s3]'")

from iokit.lab.scale_out import REAL_ENDPOINT, rank_reads_by_storage, read_by_rank  # noqa: E402
from iokit.lab.training import endpoint_differences, runs_by_storage  # noqa: E402


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 3000, size=int(rng.integers(1, 3000))) for _ in range(80)]
    folder = tmp_path_factory.mktemp("endpoint") / "raw"
    write_shards(docs, folder, vocab_size=3000, max_shard_bytes=60_000)
    return folder


def test_ranks_read_the_same_bytes_from_the_endpoint_as_from_the_disk(shards):
    reads = rank_reads_by_storage(shards, 3, ["local-nvme"], window_tokens=2048)
    local = read_by_rank(shards, 3, "local", window_tokens=2048)
    assert list(reads) == ["simulated local-nvme", REAL_ENDPOINT]
    for got in reads.values():
        assert got.tokens.tolist() == local.tokens.tolist()
        assert got.requests.tolist() == local.requests.tolist()
        assert got.nbytes.tolist() == local.nbytes.tolist()


def test_shards_too_large_for_the_loopback_server_are_refused(shards):
    with pytest.raises(FormatError, match="max_shard_bytes"):
        rank_reads_by_storage(shards, 2, max_shard_bytes=1000)


def test_the_loader_trains_everywhere_and_the_difference_is_printed_from_the_runs(shards):
    runs = runs_by_storage(shards, max_shard_bytes=1 << 20, step_s=0.0, steps=4,
                           batch_size=4, block_size=64, limit=4, seed=0, storage="hdd",
                           workers=2, prefetch=2)
    assert list(runs)[-1] == REAL_ENDPOINT and len(runs) == 4
    assert all(r.steps == 4 and r.cpu_s > 0 for r in runs.values())
    text = endpoint_differences(runs)
    assert "simulated object store" in text and "CPU" in text
