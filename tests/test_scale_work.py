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
