"""The lab's sweeps choose work that suits the scale: fewer repeats for bigger corpora, and a
piece-count sweep warms its workers once, not once per count."""

import pytest

from iokit.lab import scale_out
from iokit.lab.scaling import SCALE_REPEATS, scale_repeat


def test_repeats_by_scale(monkeypatch):
    monkeypatch.setenv("IOKIT_SCALE", "tiny")
    assert scale_repeat() == SCALE_REPEATS["tiny"] == 3  # the notebooks' checked outputs
    monkeypatch.setenv("IOKIT_SCALE", "small")
    assert scale_repeat() == SCALE_REPEATS["small"] < 3
    assert scale_repeat(5) == 5  # asked for: kept


@pytest.mark.parametrize("scale, runs", [("tiny", 1 + 3 * 3), ("small", 1 + 3 * 2)])
def test_piece_sweep_warms_up_once(monkeypatch, tiny_corpus, tmp_path, scale, runs):
    monkeypatch.setenv("IOKIT_SCALE", scale)
    calls = []
    real = scale_out.pretokenize_pieces

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(scale_out, "pretokenize_pieces", counted)
    from iokit.corpus import iter_documents
    from iokit.tokenize import WordTokenizer

    tok = WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), vocab_size=512)
    points = scale_out.piece_sweep(tiny_corpus, tok, tmp_path / "s", [1, 2, 3], engine="serial")
    assert [p.parts for p in points] == [1, 2, 3]
    assert len(calls) == runs and calls[0] == 1  # one warm-up run, before the first count
    assert all(len(p.timing.seconds) == SCALE_REPEATS[scale] for p in points)


def test_corpus_head_is_whole_documents(tiny_corpus, tmp_path):
    from iokit.corpus import iter_documents
    from iokit.lab.scale_out import corpus_head

    assert corpus_head(tiny_corpus, tmp_path, None) == tiny_corpus
    assert corpus_head(tiny_corpus, tmp_path, 1 << 30) == tiny_corpus
    head = corpus_head(tiny_corpus, tmp_path / "h", 1 << 20)
    data = head.read_bytes()
    assert head.parent == tmp_path / "h" and 0 < len(data) <= 1 << 20
    assert tiny_corpus.read_bytes().startswith(data) and data.endswith(b"\n")
    assert len(list(iter_documents(head))) == data.count(b"\n")
    assert corpus_head(tiny_corpus, tmp_path / "h", 1 << 20) == head  # made once


def test_sweep_and_panel_slice_above_tiny_only(monkeypatch, tiny_corpus, tmp_path):
    pytest.importorskip("ipywidgets")
    from iokit.corpus import iter_documents
    from iokit.lab import widgets
    from iokit.tokenize import WordTokenizer

    tok = WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), vocab_size=512)
    monkeypatch.setitem(scale_out.SWEEP_BYTES, "small", 1 << 20)
    monkeypatch.setitem(widgets.PANEL_BYTES, "small", 1 << 20)
    sizes = {}
    for scale in ("tiny", "small"):
        monkeypatch.setenv("IOKIT_SCALE", scale)
        (p,) = scale_out.piece_sweep(tiny_corpus, tok, tmp_path / scale / "s", [2],
                                     engine="serial", repeat=1, warmup=0)
        panel = widgets.shard_count_panel(tiny_corpus, tok, tmp_path / scale, shard_counts=(2,),
                                          storage="local-nvme", window_tokens=4096)
        panel.run()
        (n, got), = panel.results
        sizes[scale] = (sum(p.piece_bytes), sum(got.shard_bytes))
    whole = tiny_corpus.stat().st_size
    assert sizes["tiny"][0] == whole
    assert sizes["small"][0] <= 1 << 20 < whole
    assert sizes["small"][1] < sizes["tiny"][1]  # the panel's shards hold the slice's tokens
    assert (tmp_path / "small" / "first-1MiB" / "shards-2").is_dir()
