"""Three tokenizers measured on the same text: notebook 02's comparison.

:func:`compare_tokenizers` trains the word-level, byte-level BPE and spaCy tokenizers on the
corpus' first part and measures each on the documents that follow (text none of them was
trained on):

* **speed**: MB of text per second that ``encode`` turns into IDs on a first pass (spaCy
  remembers every string it has seen and starts afresh before each run: a pass over new text,
  as tokenizing once is) and again over the same text (all in turn, round after round, so a
  busy moment of the machine slows all alike); medians;
* **tokens per byte** of that text;
* **coverage**: the share of its tokens that are unknown (``<unk>``; byte-level BPE has none);
* **round trip**: the share of its documents that ``decode(encode(doc))`` gives back exactly;
* **one epoch** from text (read, parse, encode; a first pass, as on a corpus too large for
  spaCy to remember, or in loader workers made anew every epoch), tokenizing it once into
  shards (in turn with it), and one epoch from those shards: the
  :class:`~iokit.costs.EpochCostModel` of each tokenizer, so its break-even epoch count and
  the seconds every later epoch saves.

A tokenizer whose optional extra is missing is left out, with the reason in ``skipped``.

:func:`compare_chinese` runs the same comparison on text without spaces: the first nineteen
chapters of the *Daodejing* (public domain, shipped in ``iokit/data``), spaCy with
``lang="zh"`` (one token per character, no downloads), trained on the first chapters and
measured on the last quarter.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iokit.atomic import write_bytes_atomic
from iokit.corpus import decode_record, iter_documents, open_corpus
from iokit.costs import EpochCostModel
from iokit.errors import IokitError, check_positive
from iokit.shards import choose_dtype
from iokit.timing import Timing, measure, stopwatch

KINDS = ("word", "bpe", "spacy")
LOSES = {  # what decode(encode(text)) loses, as each tokenizer's module pins it down
    "word": "case, spacing and line breaks, and every word outside the vocabulary",
    "bpe": "nothing: the round trip gives back the exact text",
    "spacy": "only tokens outside the vocabulary (case, spaces and line breaks are kept)",
}


@dataclass
class TokenizerRow:
    """One tokenizer measured on the held-out text."""

    kind: str
    tokenizer: object
    train_s: float  # one run
    encode: Timing  # a first pass over the held-out documents (nbytes: their UTF-8 bytes)
    again: Timing  # the same documents encoded again (spaCy remembers what it has seen)
    tokens: int
    text_bytes: int
    unknown: int  # tokens that are <unk>
    exact_docs: int  # documents whose round trip is the identical text
    docs: int
    epochs: EpochCostModel  # on the held-out sample's JSONL: P, R and S
    chars: int = 0  # characters of the held-out text

    @property
    def tokens_per_char(self) -> float:
        return self.tokens / self.chars if self.chars else 0.0

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes of text per token."""
        return self.text_bytes / self.tokens if self.tokens else 0.0

    @property
    def dtype(self):
        """The ID width shards of this tokenizer get: ``uint16`` or ``uint32``."""
        return choose_dtype(self.tokenizer.vocab_size)

    @property
    def id_bytes_per_char(self) -> float:
        """Bytes on disk per character of text, as stored IDs."""
        return self.tokens_per_char * self.dtype.itemsize

    @property
    def mb_per_s(self) -> float:
        """MB/s of a first pass over text: what tokenizing once, or a corpus too large for
        spaCy to remember, pays."""
        return self.encode.mb_per_s

    @property
    def again_mb_per_s(self) -> float:
        """MB/s over text the tokenizer has just seen."""
        return self.again.mb_per_s

    @property
    def tokens_per_byte(self) -> float:
        return self.tokens / self.text_bytes

    @property
    def unk_share(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0

    @property
    def exact_share(self) -> float:
        return self.exact_docs / self.docs if self.docs else 0.0

    @property
    def loses(self) -> str:
        return LOSES[self.kind]


@dataclass
class TokenizerComparison:
    """The rows, what the text was, and the tokenizers left out (kind → why)."""

    rows: list[TokenizerRow]
    train_bytes: int
    train_docs: int
    sample_bytes: int  # the held-out JSONL's bytes (what an epoch reads)
    skipped: dict[str, str] = field(default_factory=dict)

    def row(self, kind: str) -> TokenizerRow:
        return next(r for r in self.rows if r.kind == kind)

    def scaled(self, kind: str, corpus_bytes: float) -> EpochCostModel:
        """``kind``'s epoch model scaled from the held-out sample to ``corpus_bytes`` of JSONL
        (every term grows with the bytes; the shard epoch's small fixed costs are ignored)."""
        e, k = self.row(kind).epochs, corpus_bytes / self.sample_bytes
        return EpochCostModel(e.preprocess_s * k, e.raw_epoch_s * k, e.shard_epoch_s * k)

    @property
    def slowest(self) -> str:
        """The kind that encoded the fewest MB/s."""
        return min(self.rows, key=lambda r: r.mb_per_s).kind

    def slowest_ties(self, within: float = 0.05) -> list[str]:
        """Other kinds measured within ``within`` (5 %) of the slowest: a tie, not a miss."""
        low = self.row(self.slowest).mb_per_s
        return [r.kind for r in self.rows
                if r.kind != self.slowest and r.mb_per_s <= low * (1 + within)]

    def table(self) -> str:
        """One line per tokenizer: speed, tokens per byte, unknown share, exact round trips,
        and the epoch cost model's numbers."""
        lines = [f"{'tokenizer':<26}{'MB/s':>7}{'again':>7}{'tok/byte':>10}{'<unk>':>8}"
                 f"{'exact':>7}{'text epoch':>12}{'once':>9}{'break-even':>12}"]
        for r in self.rows:
            e = r.epochs
            lines.append(f"{r.tokenizer.name:<26}{r.mb_per_s:>7.2f}{r.again_mb_per_s:>7.2f}"
                         f"{r.tokens_per_byte:>10.3f}"
                         f"{r.unk_share:>8.1%}{r.exact_share:>7.0%}{e.raw_epoch_s:>11.3f}s"
                         f"{e.preprocess_s:>8.3f}s{e.break_even:>12.2f}")
        return "\n".join(lines)


def unknown_ids(tokenizer) -> list[int]:
    """The IDs that stand for unknown tokens (none for byte-level BPE)."""
    return [i for i in (getattr(tokenizer, "unk_id", None),
                        getattr(tokenizer, "unk_space_id", None)) if i is not None]


def _split(corpus: Path, train_bytes: int, sample_bytes: int) -> tuple[list[str], bytes]:
    """The texts of the corpus' first ``train_bytes`` and the JSONL lines that follow, up to
    ``sample_bytes`` (at least one document each; at most a quarter of the corpus held out)."""
    size = corpus.stat().st_size
    sample_bytes = min(sample_bytes, max(size // 4, 1))
    train_bytes = min(train_bytes, size - sample_bytes)
    train, held, got = [], [], 0
    with open(corpus, "rb") as f:
        offset = 0
        for line in f:
            if got < train_bytes or not train:
                doc = decode_record(line, corpus, offset=offset)
                if doc is not None:
                    train.append(doc.text)
                got += len(line)
            elif sum(map(len, held)) < sample_bytes:
                held.append(line if line.endswith(b"\n") else line + b"\n")
            else:
                break
            offset += len(line)
    return train, b"".join(held)


def _fresh(tok):
    """Untimed set-up before a first pass: a tokenizer that remembers strings (spaCy) starts
    afresh, its new pipeline built on a few words; the others need nothing."""
    if not hasattr(tok, "forget"):
        return None

    def setup():
        tok.forget()
        tok.encode("a first word")

    return setup


def _alternate(plan, *, repeat: int, warmup: int = 0, nbytes: int | None = None
               ) -> list[Timing]:
    """Each ``(fn, setup)`` of ``plan`` timed in turn, ``warmup`` untimed rounds then
    ``repeat`` timed ones (``setup``, if any, runs untimed before its run), so a busy moment of
    the machine slows them alike: :func:`~iokit.timing.interleaved` with a set-up per run."""
    runs = [[measure(fn, repeat=1, warmup=0, setup=setup) for fn, setup in plan]
            for _ in range(warmup + repeat)][warmup:]
    return [Timing([r[i].seconds[0] for r in runs], nbytes) for i in range(len(plan))]


def _train(kind: str, texts: list[str], vocab_size: int | None, lang: str):
    from iokit.tokenize import train_tokenizer

    options = {"lang": lang} if kind == "spacy" else {}
    return train_tokenizer(kind, texts, vocab_size, progress=False, **options)


def compare_tokenizers(corpus, kinds=KINDS, *, train_bytes: int = 2 << 20,
                       sample_bytes: int = 512 << 10, vocab_sizes: dict | None = None,
                       lang: str = "en", repeat: int = 5) -> TokenizerComparison:
    """Train each of ``kinds`` on the corpus' first ``train_bytes`` and measure it on the
    documents that follow (``sample_bytes`` of JSONL, at most a quarter of the corpus).

    Encoding is timed in rounds (one warm-up, then ``repeat``): in each, every tokenizer in
    turn makes a first pass (after a fresh start, untimed) and a second over the same text.
    Then each tokenizer's epoch from text and its tokenizing once into shards (first passes,
    in turn, ``repeat`` rounds), on the held-out JSONL, and ``repeat`` epochs from those
    shards: its epoch cost model.
    """
    from iokit.lab.epochs import raw_epoch, shard_epoch
    from iokit.shards import open_shards, pretokenize

    repeat = check_positive("repeat", repeat)
    corpus = open_corpus(corpus, progress=False)
    texts, held = _split(corpus, check_positive("train_bytes", train_bytes),
                         check_positive("sample_bytes", sample_bytes))
    vocab_sizes = vocab_sizes or {}
    trained, skipped = {}, {}
    for kind in kinds:
        try:
            with stopwatch() as sw:
                tok = _train(kind, texts, vocab_sizes.get(kind), lang)
        except IokitError as exc:  # an extra that is not installed
            skipped[kind] = str(exc)
            continue
        trained[kind] = (tok, sw.seconds)
    rows = []
    with tempfile.TemporaryDirectory(dir=corpus.parent, prefix="iokit-tokenizers-") as tmp:
        sample = write_bytes_atomic(Path(tmp) / "held-out.jsonl", held)
        docs = [d.text for d in iter_documents(sample)]
        nbytes = sum(len(d.encode("utf-8")) for d in docs)
        # every tokenizer in turn: a first pass (after a fresh start), then the same text again
        plan = []
        for tok, _ in trained.values():
            encode = lambda t=tok: [t.encode(d) for d in docs]
            plan += [(encode, _fresh(tok)), (encode, None)]
        timings = _alternate(plan, repeat=repeat, warmup=1, nbytes=nbytes)
        for (kind, (tok, train_s)), first, seen in zip(trained.items(), timings[0::2],
                                                       timings[1::2]):
            ids = [tok.encode(d) for d in docs]
            unknown = int(sum(np.isin(a, unknown_ids(tok)).sum() for a in ids))
            exact = sum(tok.decode(a) == d for a, d in zip(ids, docs))
            out = Path(tmp) / f"shards-{kind}"
            fresh = _fresh(tok)
            raw, once = _alternate([(lambda t=tok: raw_epoch(sample, t), fresh),
                                    (lambda t=tok, o=out: pretokenize(sample, t, o), fresh)],
                                   repeat=repeat)
            with open_shards(out) as shards:
                epoch = measure(lambda s=shards: shard_epoch(s, len(held)), repeat=repeat)
            rows.append(TokenizerRow(kind, tok, train_s, first, seen, sum(len(a) for a in ids),
                                     nbytes, unknown, exact, len(docs),
                                     EpochCostModel(once.median, raw.median, epoch.median),
                                     sum(map(len, docs))))
    return TokenizerComparison(rows, sum(len(t.encode("utf-8")) for t in texts), len(texts),
                               len(held), skipped)


CHINESE_SAMPLE = "daodejing.txt"  # in iokit/data: one chapter a line, "#" lines are a header


def chinese_sample() -> list[str]:
    """The chapters of the Chinese sample shipped with the kit (real text, offline)."""
    from importlib.resources import files

    text = files("iokit").joinpath("data", CHINESE_SAMPLE).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def compare_chinese(kinds=KINDS, *, repeat: int = 3) -> TokenizerComparison:
    """:func:`compare_tokenizers` on :func:`chinese_sample`, spaCy with ``lang="zh"``: trained on
    the first chapters, measured on the last quarter of the JSONL (chapters never seen)."""
    chapters = chinese_sample()
    with tempfile.TemporaryDirectory(prefix="iokit-chinese-") as tmp:
        path = Path(tmp) / "daodejing.jsonl"
        lines = [json.dumps({"id": f"ch{i}", "text": t}, ensure_ascii=False)
                 for i, t in enumerate(chapters, 1)]
        write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
        size = path.stat().st_size
        return compare_tokenizers(path, kinds, train_bytes=size, sample_bytes=size, lang="zh",
                                  repeat=repeat)


def cjk_code_points() -> int:
    """How many code points the word tokenizer makes a token each (CJK ideographs with BERT's
    ranges, kana, hangul): the vocabulary that would cover them all."""
    import re

    from iokit.tokenize import CJK_CHARS

    return sum(ord(b) - ord(a) + 1 for a, b in re.findall(r"(.)-(.)", CJK_CHARS))
