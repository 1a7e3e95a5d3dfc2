"""Scaling sweeps measure what they say: the bytes and items of every point."""

from iokit.scaling import corpus_sample, read_point, spans_bytes, tokenize_point
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
