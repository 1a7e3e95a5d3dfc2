"""Scaling sweeps measure what they say: the bytes and items of every point."""

from iokit.lab.scaling import corpus_sample, read_point, spans_bytes, tokenize_point
from iokit.storage import SimulatedStore


def test_corpus_sample_stops_at_the_byte_budget(tiny_corpus):
    spans = corpus_sample(tiny_corpus, 200_000)
    assert spans[0][0] == 0 and spans[-1][1] <= 200_000
    assert spans_bytes(spans) == spans[-1][1]
    assert corpus_sample(tiny_corpus, 1) == corpus_sample(tiny_corpus)[:1]


def test_tokenize_point_counts_the_sample(tiny_corpus):
    spans = corpus_sample(tiny_corpus, 50_000)
    p = tokenize_point(tiny_corpus, spans, "processes", 2, 3, repeat=1, warmup=0)
    assert (p.kind, p.workers, p.chunk_size, p.items) == ("processes", 2, 3, len(spans))
    assert p.nbytes == spans_bytes(spans) and p.min_seconds <= p.seconds <= p.max_seconds


def test_read_point_reads_every_request(tiny_corpus):
    store = SimulatedStore("network-fs")
    p = read_point(store, tiny_corpus, 4, 4096, 12, repeat=1)
    assert (p.kind, p.workers, p.items, p.nbytes) == ("threads", 4, 12, 12 * 4096)


def test_parallel_token_file_matches_the_naive_loop(tiny_corpus, tmp_path):
    import hashlib

    from iokit.lab.loops import chunked_loop
    from iokit.lab.scaling import parallel_token_file

    chunked_loop(tiny_corpus, tmp_path / "naive.txt")  # byte-identical to the naive loop
    want = hashlib.sha256((tmp_path / "naive.txt").read_bytes()).hexdigest()
    for workers, chunk in [(1, 1), (2, 5), (3, 64)]:
        out = tmp_path / f"par-{workers}-{chunk}.txt"
        bytes_in, bytes_out = parallel_token_file(tiny_corpus, out, workers, chunk)
        assert bytes_in == tiny_corpus.stat().st_size and bytes_out == out.stat().st_size
        assert hashlib.sha256(out.read_bytes()).hexdigest() == want


def test_tokenize_point_with_a_baseline_timed_in_turn(tiny_corpus):
    import pytest

    spans = corpus_sample(tiny_corpus, 30_000)
    p = tokenize_point(tiny_corpus, spans, "threads", 2, 4, repeat=2, warmup=0, baseline=True)
    assert p.baseline_seconds > 0
    assert p.speedup() == p.baseline_seconds / p.seconds
    bare = tokenize_point(tiny_corpus, spans, "threads", 2, 4, repeat=1, warmup=0)
    with pytest.raises(ValueError, match="no baseline"):
        bare.speedup()


def test_many_threads_on_a_fresh_store_do_not_deadlock(tiny_corpus):
    import threading

    done = []
    for _ in range(5):  # the first reads race to open the store's link file
        store = SimulatedStore("local-nvme")
        t = threading.Thread(target=lambda s=store: done.append(
            read_point(s, tiny_corpus, 16, 4096, 64, repeat=1)), daemon=True)
        t.start()
        t.join(timeout=60)
        assert not t.is_alive(), "threads deadlocked on the simulated store's lock"
    assert len(done) == 5 and all(p.nbytes == 64 * 4096 for p in done)
