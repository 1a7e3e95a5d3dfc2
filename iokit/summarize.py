"""An extractive summariser: the "model" of the batch job, with a real training and load cost.

::

    model = train_summarizer(iter_documents(corpus))     # term statistics of the corpus
    model.save("out/summarizer.model")                   # atomically
    model = load_summarizer("out/summarizer.model")      # parse + check: what a worker pays
    model.summarize(text)                                # -> its best sentences, in order

It scores each sentence of a document against term statistics learnt from the corpus: a word
counts ``tf × idf`` (how often it occurs in this document × how rare it is in the corpus), a
pair of adjacent words the corpus often repeats (a phrase) adds its own ``idf``, and the sum is
divided by the square root of the sentence's word count. The ``sentences`` best-scoring
sentences (ties: the earlier one) are the summary, in document order. It is deterministic
(same text and model file, same summary, on any machine and in any process) and CPU-bound
(pure Python), like a small language model's inference would be.

Loading it costs what loading a real model costs: a file of statistics (every term and the
most frequent word pairs, hundreds of thousands of lines) read, checked and parsed into
tables. That is the cost a batch job pays once per worker, or, done wrong, once per task.

The file format (text, UTF-8)::

    line 1     iokit-summarizer 1                          magic and version
    line 2     {"documents": N, "terms": T, "pairs": P,    a JSON header: what follows and the
                "sentences": k, "body_sha256": "..."}      SHA-256 of everything after line 2
    T lines    term<TAB>document frequency                 in the order training wrote them
    P lines    word word<TAB>document frequency

Every field is checked when loading; a damaged or truncated file is a :class:`FormatError`
naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from iokit.atomic import atomic_write
from iokit.errors import FormatError, ParameterError, check_positive, read_kit_file
from iokit.progress import progress_bar

MAGIC = "iokit-summarizer"
VERSION = 1
WORD = re.compile(r"\w+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
DEFAULT_SENTENCES = 3
DEFAULT_MAX_PAIRS = 300_000  # word pairs kept: most of the file, most of the load time
DEFAULT_TRAIN_BYTES = 16 << 20  # text trained on (the corpus's first documents)
MIN_PAIR_DOCS = 2  # a pair seen in one document only is no phrase


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: cut after ``.``, ``!`` or ``?`` followed by white space,
    and at blank lines; white space inside each is collapsed to single spaces."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        for s in SENTENCE_END.split(paragraph):
            s = " ".join(s.split())
            if s:
                out.append(s)
    return out


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (runs of letters and digits)."""
    return WORD.findall(text.lower())


@dataclass
class Summarizer:
    """Term statistics of a corpus, and the summary they give a document."""

    documents: int  # documents trained on
    term_df: dict[str, int]  # document frequency of each term
    pair_df: dict[str, int]  # document frequency of frequent adjacent word pairs ("a b")
    sentences: int = DEFAULT_SENTENCES
    idf: dict[str, float] = field(init=False, repr=False)
    pair_idf: dict[str, float] = field(init=False, repr=False)
    unknown_idf: float = field(init=False)

    def __post_init__(self):
        n = self.documents
        self.idf = {t: math.log((1 + n) / (1 + df)) + 1.0 for t, df in self.term_df.items()}
        self.pair_idf = {p: math.log((1 + n) / (1 + df)) + 1.0 for p, df in self.pair_df.items()}
        self.unknown_idf = math.log(1 + n) + 1.0  # a word the corpus never had: as rare as any

    def sentence_scores(self, sentences: list[str]) -> list[float]:
        """Each sentence's score: Σ tf × idf over its words, plus the idf of each known word
        pair in it, over √(its word count)."""
        per = [words(s) for s in sentences]
        tf = Counter(w for ws in per for w in ws)
        idf, pair_idf, unknown = self.idf, self.pair_idf, self.unknown_idf
        scores = []
        for ws in per:
            if not ws:
                scores.append(0.0)
                continue
            s = 0.0
            for w in ws:
                s += tf[w] * idf.get(w, unknown)
            for a, b in zip(ws, ws[1:]):
                s += pair_idf.get(f"{a} {b}", 0.0)
            scores.append(s / math.sqrt(len(ws)))
        return scores

    def summarize(self, text: str) -> str:
        """The ``sentences`` best sentences of ``text`` (ties: the earlier), in their order,
        joined by single spaces; the whole (tidied) text when it has no more sentences."""
        sentences = split_sentences(text)
        if len(sentences) <= self.sentences:
            return " ".join(sentences)
        scores = self.sentence_scores(sentences)
        best = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[:self.sentences]
        return " ".join(sentences[i] for i in sorted(best))

    # ----------------------------------------------------------------------- the file

    def body(self) -> bytes:
        lines = [f"{t}\t{df}\n" for t, df in self.term_df.items()]
        lines += [f"{p}\t{df}\n" for p, df in self.pair_df.items()]
        return "".join(lines).encode("utf-8")

    @property
    def fingerprint(self) -> str:
        """The first 16 hex digits of the SHA-256 of the statistics (the file's body)."""
        return hashlib.sha256(self.body()).hexdigest()[:16]

    def save(self, path) -> Path:
        """Write the model file atomically (see the module's format table)."""
        body = self.body()
        header = {"documents": self.documents, "terms": len(self.term_df),
                  "pairs": len(self.pair_df), "sentences": self.sentences,
                  "body_sha256": hashlib.sha256(body).hexdigest()}
        with atomic_write(path, "wb") as f:
            f.write(f"{MAGIC} {VERSION}\n{json.dumps(header, sort_keys=True)}\n".encode())
            f.write(body)
        return Path(path)

    def __str__(self) -> str:
        return (f"Summarizer({len(self.term_df):,} terms and {len(self.pair_df):,} word pairs "
                f"from {self.documents:,} documents, {self.sentences} sentences per summary, "
                f"fingerprint {self.fingerprint})")


def train_summarizer(texts: Iterable[str], *, sentences: int = DEFAULT_SENTENCES,
                     max_pairs: int = DEFAULT_MAX_PAIRS,
                     max_bytes: int | None = DEFAULT_TRAIN_BYTES,
                     progress: bool = False) -> Summarizer:
    """Learn term statistics from ``texts`` (at most their first ``max_bytes`` of text, at
    least one document; None: all): each term's document frequency, and the ``max_pairs``
    adjacent word pairs found in the most documents (at least two; ties in text order)."""
    sentences = check_positive("sentences", sentences, hint="Use e.g. 3.")
    max_pairs = check_positive("max_pairs", max_pairs, hint="Use e.g. 300000.")
    term_df: Counter = Counter()
    pair_df: Counter = Counter()
    n = seen = 0
    with progress_bar(total=max_bytes, unit="B", unit_scale=True, desc="training the summarizer",
                      disable=not progress) as bar:
        for text in texts:
            if max_bytes is not None and n and seen >= max_bytes:
                break
            ws = words(text)
            term_df.update(dict.fromkeys(ws, 1))
            pair_df.update(dict.fromkeys((f"{a} {b}" for a, b in zip(ws, ws[1:])), 1))
            n += 1
            seen += len(text.encode("utf-8"))
            bar.update(len(text.encode("utf-8")))
    if not n:
        raise ParameterError("the summarizer needs at least one document to train on.")
    frequent = [(p, df) for p, df in pair_df.items() if df >= MIN_PAIR_DOCS]
    frequent.sort(key=lambda item: -item[1])  # stable: ties stay in the order first seen
    return Summarizer(n, dict(term_df), dict(frequent[:max_pairs]), sentences)


def load_summarizer(path) -> Summarizer:
    """The model saved at ``path``, every field checked (a :class:`FormatError` names the file
    and the field, and says to train it again)."""
    raw = read_kit_file(path, "summarizer model file",
                        "train one with iokit.summarize.train_summarizer (or run "
                        "`iokit summarize`, which trains it when missing)")
    todo = "train the model again (delete the file and run `iokit summarize`)"
    first, _, rest = raw.partition(b"\n")
    if first != f"{MAGIC} {VERSION}".encode():
        raise FormatError(f"{path}: line 1 is {first[:40]!r}, not {MAGIC} {VERSION!r}: not an "
                          f"iokit summarizer model of this version; {todo}.")
    second, _, body = rest.partition(b"\n")
    try:
        header = json.loads(second)
        counts = {k: int(header[k]) for k in ("documents", "terms", "pairs", "sentences")}
        digest = str(header["body_sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{path}: line 2 (the JSON header) is damaged ({exc}); "
                          f"{todo}.") from None
    if hashlib.sha256(body).hexdigest() != digest:
        raise FormatError(f"{path}: field 'body_sha256' does not match the statistics after "
                          f"line 2: the file is truncated or damaged; {todo}.")
    lines = body.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    expected = counts["terms"] + counts["pairs"]
    if len(lines) != expected:
        raise FormatError(f"{path}: fields 'terms' + 'pairs' say {expected:,} lines of "
                          f"statistics, the file holds {len(lines):,}; {todo}.")
    try:
        table = [line.split("\t") for line in lines]
        term_df = {k: int(v) for k, v in table[:counts["terms"]]}
        pair_df = {k: int(v) for k, v in table[counts["terms"]:]}
    except ValueError as exc:
        raise FormatError(f"{path}: a statistics line is not 'term<TAB>count' ({exc}); "
                          f"{todo}.") from None
    if counts["documents"] < 1 or counts["sentences"] < 1:
        raise FormatError(f"{path}: fields 'documents' and 'sentences' must be >= 1, found "
                          f"{counts['documents']} and {counts['sentences']}; {todo}.")
    return Summarizer(counts["documents"], term_df, pair_df, counts["sentences"])
