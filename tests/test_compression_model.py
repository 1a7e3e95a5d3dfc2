"""The break-even model: its algebra, and its predicted winner against a measured one."""

import math

import pytest

from iokit.corpus import iter_documents
from iokit.costs import (
    CodecProfile,
    break_even_bandwidth,
    predict_read_seconds,
    predict_winner,
    read_seconds,
)
from iokit.lab.compression import (
    block_bytes_sweep,
    measure_codecs,
    pareto_front,
    profile_codecs,
    stream_seconds,
    write_codec_files,
)
from iokit.storage import SimulatedStore, StoragePreset

MB = 1e6


def test_read_seconds_serial_and_overlapped():
    assert read_seconds(100 * MB, 10 * MB) == pytest.approx(10)
    assert read_seconds(100 * MB, 10 * MB, 4, 50 * MB) == pytest.approx(2.5 + 2)
    assert read_seconds(100 * MB, 10 * MB, 4, 50 * MB, overlap=True) == pytest.approx(2.5)
    assert read_seconds(100 * MB, 10 * MB, 4, 20 * MB, overlap=True) == pytest.approx(5)
    assert read_seconds(1 * MB, 1e12, requests=10, latency=0.01) == pytest.approx(0.1, rel=1e-3)


def test_break_even_bandwidth_is_where_the_times_cross():
    r, d = 2.8, 700 * MB
    b = break_even_bandwidth(r, d)
    assert b == pytest.approx(d * (1 - 1 / r))
    assert read_seconds(1e9, b) == pytest.approx(read_seconds(1e9, b, r, d))
    assert break_even_bandwidth(r, d, overlap=True) == d
    assert break_even_bandwidth(1.0, d) == 0.0
    b2 = break_even_bandwidth(r, d, plain_decode_bps=2000 * MB)
    assert read_seconds(1e9, b2, 1, 2000 * MB) == pytest.approx(read_seconds(1e9, b2, r, d))
    assert break_even_bandwidth(r, 3000 * MB, plain_decode_bps=2000 * MB) == math.inf


def test_predict_winner_moves_from_high_ratio_to_no_codec_as_bandwidth_grows():
    profiles = [CodecProfile("none", 1.0, math.inf), CodecProfile("zstd:3", 2.8, 700 * MB),
                CodecProfile("zstd:19", 3.6, 300 * MB)]
    assert predict_winner(profiles, 1 * MB) == "zstd:19"
    assert predict_winner(profiles, 300 * MB) == "zstd:3"
    assert predict_winner(profiles, 10_000 * MB) == "none"
    times = predict_read_seconds(profiles, 1e9, 300 * MB)
    assert min(times, key=times.get) == "zstd:3"


@pytest.fixture(scope="module")
def text(tiny_corpus):
    out = bytearray()
    for doc in iter_documents(tiny_corpus):
        out += doc.text.encode() + b"\n"
        if len(out) > 600_000:
            return bytes(out)
    return bytes(out)


def test_predicted_winner_is_the_measured_winner_on_the_simulated_store(text, tmp_path):
    paths = write_codec_files(tmp_path, text, ["none", "zlib:1", "zstd:3"], block_bytes=65536)
    profiles = profile_codecs(paths)
    n_requests = -(-len(text) // 65536)
    for bandwidth in (2 * MB, 30 * MB, 20_000 * MB):
        store = SimulatedStore(StoragePreset(f"test-{bandwidth:g}", 0.0, bandwidth, bandwidth,
                                             "for the test"))
        predicted = predict_read_seconds(profiles, len(text), bandwidth)
        measured = {name: min(stream_seconds(p, store) for _ in range(3))
                    for name, p in paths.items()}
        ranked = sorted(predicted, key=predicted.get)
        assert predicted[ranked[1]] > 1.1 * predicted[ranked[0]], (bandwidth, predicted)
        assert min(measured, key=measured.get) == ranked[0], (bandwidth, predicted, measured)
        store.close()
    assert n_requests > 5


def test_measure_codecs_and_pareto_front(text):
    results = list(measure_codecs(["none", "lzw", "zlib:6", "zstd:1", "zstd:19"], text,
                                  slow_sample=20_000, repeat=1))
    by = {r.name: r for r in results}
    assert by["none"].ratio == 1 and by["lzw"].raw_bytes == 20_000
    assert by["zstd:19"].ratio > by["zstd:1"].ratio > 2
    front = pareto_front(results)
    assert front[-1].name == "zstd:19"
    for r in results:  # nothing off the front beats a front point on both axes
        if r not in front:
            assert any(f.ratio >= r.ratio and f.decompress_mb_s >= r.decompress_mb_s
                       for f in front)


def test_small_blocks_compress_worse_and_a_dictionary_wins_it_back(text):
    half = len(text) // 2
    pts = list(block_bytes_sweep(text[half:], [1024, 65536], train_on=text[:half]))
    ratio = {(p.codec, p.block_bytes): p.ratio for p in pts}
    assert ratio[("zstd:3", 1024)] < ratio[("zstd:3", 65536)]
    assert ratio[("zstd-dict:3", 1024)] > ratio[("zstd:3", 1024)] * 1.1
