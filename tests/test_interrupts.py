"""Interrupted writes leave only complete files (or none), and complete ones read back.

Every file the kit writes goes through :func:`iokit.atomic.atomic_write`, so the test wraps the
file objects it opens: after N bytes in all (N drawn by a seeded RNG) a write raises
KeyboardInterrupt or OSError(ENOSPC). Afterwards every file in the output folder must be
byte-identical to the same file from an uninterrupted run, with no temporary files left over,
and a shard set missing files must be refused by the reader.
"""

from __future__ import annotations

import errno
import itertools

import numpy as np
import pytest
from helpers import leftover_temp_files

from iokit import atomic
from iokit.corpus import generate_corpus
from iokit.errors import FormatError, StorageError
from iokit.shards import open_shard, open_shards, pretokenize, write_shards
from iokit.tokenize import WordTokenizer, load_tokenizer

SEEDS = range(8)


class _Budget:
    """Shared byte budget: the write that would cross it raises instead."""

    def __init__(self, n: int, exc: BaseException):
        self.left, self.exc, self.fired = n, exc, False

    def wrap(self, real_open):
        budget = self

        class Interrupting:
            def __init__(self, f):
                self.f = f

            def write(self, data):
                if len(data) > budget.left:
                    budget.fired = True
                    # write part of it first, as a real interrupted write() would
                    self.f.write(data[:budget.left])
                    budget.left = 0
                    raise budget.exc
                budget.left -= len(data)
                return self.f.write(data)

            def __getattr__(self, name):
                return getattr(self.f, name)

        return lambda *a, **k: Interrupting(real_open(*a, **k))


def _interrupt(monkeypatch, n: int, exc: BaseException) -> _Budget:
    budget = _Budget(n, exc)
    monkeypatch.setattr(atomic, "open", budget.wrap(open), raising=False)
    return budget


def _files(folder):
    if not folder.exists():  # a write that failed first removes the folder it made
        return {}
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _check_only_complete(out, reference: dict) -> None:
    got = _files(out)
    assert not out.exists() or leftover_temp_files(out) == []
    for name, data in got.items():
        assert name in reference, f"{name} is not a file an uninterrupted run writes"
        assert data == reference[name], f"{name} differs from the uninterrupted run's"
    if set(got) != set(reference) and any(n.endswith(".idx") for n in got):
        with pytest.raises(FormatError):  # an incomplete set is refused, not read short
            open_shards(out)
    for name in got:
        if name.endswith(".idx") and name[:-4] + ".bin" in got:
            open_shard(out / (name[:-4] + ".bin"), verify=True)  # complete pair reads back


def _cases(total: int, seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, total))
    exc = KeyboardInterrupt() if seed % 2 == 0 else OSError(errno.ENOSPC, "No space left")
    return n, exc


def _run(call, budget):
    expected = KeyboardInterrupt if isinstance(budget.exc, KeyboardInterrupt) else StorageError
    with pytest.raises(expected):
        call()
    assert budget.fired


# ------------------------------------------------------------------ corpus generation


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_interrupted_corpus_generation_leaves_nothing_or_the_whole_file(
        seed, tiny_corpus, tmp_path, monkeypatch):
    total = tiny_corpus.stat().st_size
    n, exc = _cases(total, seed)
    budget = _interrupt(monkeypatch, n, exc)
    _run(lambda: generate_corpus(tmp_path / "tiny.jsonl", "tiny", progress=False), budget)
    monkeypatch.undo()
    _check_only_complete(tmp_path, {"tiny.jsonl": tiny_corpus.read_bytes()})
    assert not (tmp_path / "tiny.jsonl").exists()


# ------------------------------------------------------------------ shards


def _arrays(seed=0, n=120):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 5000, size=int(rng.integers(1, 400))) for _ in range(n)]


@pytest.mark.parametrize("codec", [None, "zstd:3"])
@pytest.mark.parametrize("seed", SEEDS)
def test_interrupted_shard_writing_leaves_only_complete_files(
        codec, seed, tmp_path, monkeypatch):
    kw = dict(vocab_size=5000, max_shard_bytes=8192, codec=codec,
              block_bytes=1024 if codec else None)
    write_shards(_arrays(), tmp_path / "ref", **kw)
    reference = _files(tmp_path / "ref")
    n, exc = _cases(sum(map(len, reference.values())), seed)
    budget = _interrupt(monkeypatch, n, exc)
    _run(lambda: write_shards(_arrays(), tmp_path / "out", **kw), budget)
    monkeypatch.undo()
    _check_only_complete(tmp_path / "out", reference)


def test_keyboard_interrupt_from_the_tokenizer_mid_shards(tmp_path):
    write_shards(_arrays(), tmp_path / "ref", vocab_size=5000, max_shard_bytes=8192)
    reference = _files(tmp_path / "ref")

    def interrupted():
        yield from itertools.islice(_arrays(), 70)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(interrupted(), tmp_path / "out", vocab_size=5000, max_shard_bytes=8192)
    _check_only_complete(tmp_path / "out", reference)
    assert any(n.endswith(".idx") for n in _files(tmp_path / "out"))  # some shards finished


# ------------------------------------------------------------------ vocabulary + shards


@pytest.mark.filterwarnings("ignore::iokit.tokenize.TokenizerWarning")  # tiny on purpose
@pytest.mark.parametrize("seed", SEEDS)
def test_interrupted_pretokenize_and_vocabulary_saving(seed, tmp_path, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    lines = [f'{{"text": "doc {i} says {" ".join(str(j % 97) for j in range(i * 7))}"}}'
             for i in range(150)]
    corpus.write_text("\n".join(lines) + "\n")
    tok = WordTokenizer.train((str(i) for i in range(300)), vocab_size=400)
    pretokenize(corpus, tok, tmp_path / "ref", max_shard_bytes=4096, codec="zstd:1",
                block_bytes=512)
    reference = _files(tmp_path / "ref")
    n, exc = _cases(sum(map(len, reference.values())), seed)
    if seed < 2:
        n = int(np.random.default_rng(seed).integers(0, len(reference["vocab.json"])))
    budget = _interrupt(monkeypatch, n, exc)
    _run(lambda: pretokenize(corpus, tok, tmp_path / "out", max_shard_bytes=4096,
                             codec="zstd:1", block_bytes=512), budget)
    monkeypatch.undo()
    _check_only_complete(tmp_path / "out", reference)
    if (tmp_path / "out" / "vocab.json").exists():
        assert load_tokenizer(tmp_path / "out" / "vocab.json").fingerprint == tok.fingerprint


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_interrupted_parallel_pretokenize_leaves_only_complete_files_and_no_workers(
        seed, tmp_path, monkeypatch):
    import multiprocessing

    from iokit.preprocess import parallel_pretokenize

    corpus = tmp_path / "c.jsonl"
    words = [" ".join(f"w{j % 50}" for j in range(i)) for i in range(200)]
    corpus.write_text("".join(f'{{"text": "doc {i} {w}"}}\n' for i, w in enumerate(words)))
    tok = WordTokenizer.train((f"w{j}" for j in range(50)), vocab_size=60)
    pretokenize(corpus, tok, tmp_path / "ref", max_shard_bytes=2048)
    reference = _files(tmp_path / "ref")
    n, exc = _cases(sum(map(len, reference.values())), seed)
    budget = _interrupt(monkeypatch, n, exc)
    _run(lambda: parallel_pretokenize(corpus, tok, tmp_path / "out", workers=2, chunk_size=8,
                                      kind="processes", max_shard_bytes=2048), budget)
    monkeypatch.undo()
    _check_only_complete(tmp_path / "out", reference)
    assert multiprocessing.active_children() == []
