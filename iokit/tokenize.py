"""Tokenizers: text to tokens, and with a vocabulary, to integer IDs and back.

The word-level tokenizer is nltk's ``WordPunctTokenizer`` (runs of letters and digits, runs of
punctuation), which needs no downloaded nltk data. Call it per document or per chunk, never on
a whole file at once: nltk runs its pattern with a time limit per call. Scripts written without
spaces would give it whole clauses as "words", so, as BERT's basic tokenizer does for CJK
ideographs, every CJK ideograph, kana and hangul character is a token of its own (text without
them is split exactly as before).

Two tokenizers turn text into IDs, with the same small interface (``encode``, ``decode``,
``vocab_size``, ``eod_id``, ``fingerprint``, ``save``):

* :class:`WordTokenizer` — nltk's WordPunct pattern plus a vocabulary of the most frequent
  (lower-cased) words of the corpus, an unknown-word ID and an end-of-document ID, saved as a
  small JSON file. Its round trip is **lossy**, and exactly so::
      decode(encode(text)) == normalize(text)

  where ``normalize`` lower-cases every token, replaces words outside the vocabulary by
  ``<unk>``, and joins the tokens with single spaces (so all spacing and line breaks become
  one space, and punctuation gets a space before it: ``"Hi, you."`` → ``"hi , you ."``).
  To keep tokenization fast, it runs nltk's pattern with Python's own ``re`` engine (several
  times faster than nltk's time-limited ``regex`` call; the tokens are the same). nltk itself
  is imported only by :func:`word_tokenize`, so a worker process that encodes never loads it.
* :class:`BPETokenizer` — a byte-level BPE tokenizer (the kind GPT-2 and most LLMs use),
  trained on the corpus with Hugging Face ``tokenizers`` (the optional ``bpe`` extra). Its round
  trip is lossless: ``decode(encode(text)) == text`` for any text.

Both also have ``encode_many(texts)``, one ID array per text: the word tokenizer looks its
words up in one C-level pass per text, and BPE encodes a whole batch in one call of Hugging
Face's batch encoder, which spreads the texts over its Rust threads (one per core).
:func:`load_tokenizer` reads any kind back from its JSON file (spaCy's tokenizer, the third
kind, is in :mod:`iokit.tokenize_spacy`); :func:`encode_corpus` turns
documents into one ID array each, ending with the end-of-document ID, encoding them in batches
of about :data:`BATCH_CHARS` characters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from iokit.atomic import write_bytes_atomic
from iokit.errors import FormatError, ParameterError, check_positive, read_kit_file
from iokit.progress import progress_bar


@lru_cache(maxsize=1)
def _word_punct():
    from nltk.tokenize import WordPunctTokenizer  # nltk loads many modules: only when used

    return WordPunctTokenizer()


# nltk's WordPunct pattern and flags (a test checks they still match nltk's own).
WORD_PUNCT_PATTERN = r"\w+|[^\w\s]+"
WORD_PUNCT_FLAGS = re.UNICODE | re.MULTILINE | re.DOTALL


# Characters that are each a token of their own: CJK ideographs (BERT's ranges), kana, hangul.
CJK_CHARS = ("\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
             "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f")
_CJK = re.compile(f"[{CJK_CHARS}]")
# WordPunct's pattern with those characters taken out of the word runs, one token each.
_CJK_PATTERN = re.compile(f"[{CJK_CHARS}]|[^\\W{CJK_CHARS}]+|[^\\w\\s]+")


def word_tokenize(text: str) -> list[str]:
    """Split ``text`` into words and punctuation runs with nltk (no downloads needed); each
    CJK ideograph, kana or hangul character is a token of its own."""
    if not text.isascii() and _CJK.search(text):
        return _CJK_PATTERN.findall(text)
    return _word_punct().tokenize(text)


def token_line(text: str, tokenize=word_tokenize) -> bytes:
    """One document as the loops of notebook 01 write it: its tokens, space-separated, a newline."""
    return (" ".join(tokenize(text)) + "\n").encode("utf-8")


@lru_cache(maxsize=1)
def _fast_pattern() -> re.Pattern:
    # nltk's WordPunct pattern, compiled with the standard ``re``.
    return re.compile(WORD_PUNCT_PATTERN, WORD_PUNCT_FLAGS)


def fast_word_tokenize(text: str) -> list[str]:
    """The same tokens as :func:`word_tokenize`, faster (standard ``re`` engine, no nltk)."""
    if not text.isascii() and _CJK.search(text):
        return _CJK_PATTERN.findall(text)
    return _fast_pattern().findall(text)


# The same pattern over ASCII bytes, faster than over str: for an ASCII character, \w is
# [A-Za-z0-9_] either way, and str's \s also matches the separators \x1c-\x1f, which bytes'
# \s leaves out, so they are named (a test checks all 128 characters).
_ASCII_WORD_PUNCT = re.compile(rb"\w+|[^\w\s\x1c-\x1f]+")


SLICE_CHARS = 1 << 18  # a long text is tokenized in slices of about this many characters
# Where a slice may end without changing any token (word-level or byte-level BPE): before ASCII
# whitespace that follows a non-space, or between a letter/digit and punctuation that neither
# pattern joins to it (text without spaces, such as Chinese, still has these).
_CUT = re.compile(r"(?<=\S)[ \t\n\r\f\v]"
                  r"|(?<=[^\W_])[,;!?()\[\]{}<>\"/|#%&*+=@~，。、；！？（）「」]")


def text_slices(text: str, size: int = SLICE_CHARS) -> Iterator[str]:
    """``text`` in consecutive slices of about ``size`` characters, cut only where no token
    spans the cut: tokenizing the slices one by one gives the tokens of the whole text, while
    the tokens in memory at once are those of one slice (a 200 MB document in one line is
    tokenized in bounded memory). A text of at most ``size`` characters is one slice."""
    start = 0
    while len(text) - start > size:
        m = _CUT.search(text, start + size)
        if m is None:
            break
        yield text[start:m.start()]
        start = m.start()
    yield text[start:] if start else text


def _fingerprint(data: bytes) -> int:
    """A 64-bit fingerprint of a vocabulary, stored in shard indexes to match them up."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


# --------------------------------------------------------------------------- word level


class TokenizerWarning(UserWarning):
    """A tokenizer was trained, but it will not serve this text well (the message says why)."""


ONE_OFF_SHARE = 0.8  # warn when more of the vocabulary than this was seen only once ...
UNK_RATE = 0.15  # ... or when more of the training text's tokens than this are <unk>


@dataclass(frozen=True)
class TrainingStats:
    """What a word vocabulary's training saw: tokens, distinct words, entries kept (and how
    many of those were seen once), and the share of training tokens that become ``<unk>``."""

    tokens: int
    distinct: int
    entries: int
    one_off_entries: int
    unk_rate: float

    @property
    def one_off_share(self) -> float:
        return self.one_off_entries / self.entries if self.entries else 0.0

    def warnings(self) -> list[str]:
        """The kit's warnings about this vocabulary (none for ordinary text)."""
        out = []
        if self.entries >= 200 and self.one_off_share > ONE_OFF_SHARE:
            out.append(
                f"word vocabulary: {self.one_off_share:.0%} of its {self.entries:,} entries were "
                "seen only once in the training text, so it will rarely match new text (a "
                "script written without spaces, or too little text?); the byte-level BPE "
                "tokenizer (tokenizer 'bpe', --tokenizer bpe) suits such text.")
        if self.tokens >= 1000 and self.unk_rate > UNK_RATE:
            out.append(
                f"word vocabulary: {self.unk_rate:.0%} of the training text's tokens are {UNK} "
                f"(outside its {self.entries:,} entries); raise the vocabulary size or use the "
                "byte-level BPE tokenizer (--tokenizer bpe), which has no unknown tokens.")
        return out


def _with_bar(texts: Iterable[str], desc: str, progress: bool) -> Iterator[str]:
    """``texts``, counted by a progress bar (documents) while they are read."""
    with progress_bar(desc=desc, unit=" docs", disable=not progress) as bar:
        for text in texts:
            yield text
            bar.update()

UNK = "<unk>"
EOD = "<eod>"
WORD_FORMAT = "iokit-word-vocab"
WORD_FORMAT_VERSION = 1


class WordTokenizer:
    """Word-level tokenizer: lower-cased WordPunct tokens looked up in a fixed vocabulary.

    ID 0 is ``<unk>`` (any word not in the vocabulary), ID 1 is ``<eod>`` (end of document);
    words follow, most frequent first. Build one with :meth:`train`.
    """

    kind = "word"

    def __init__(self, words: list[str]):
        self.tokens = [UNK, EOD, *words]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ParameterError("the vocabulary lists a word twice; every word must be unique.")
        self.unk_id, self.eod_id = 0, 1
        self._table = np.array(self.tokens, dtype=object)
        self._lookup = _IdsOrUnk(self.ids)  # a word's ID, 0 for a word outside
        self._byte_lookup: _IdsOrUnk | None = None  # the same keyed by UTF-8 bytes, when used
        self.training: TrainingStats | None = None  # set by train()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 32_768, *, progress: bool = True
              ) -> WordTokenizer:
        """The ``vocab_size`` - 2 most frequent words of ``texts`` (ties broken alphabetically).

        What training saw is kept in ``training`` (:class:`TrainingStats`); a vocabulary made
        mostly of one-off entries, or a training text with many ``<unk>`` tokens, gives a
        :class:`TokenizerWarning` pointing to BPE. ``progress`` shows a bar (documents read).
        """
        vocab_size = check_positive("vocab_size", vocab_size)
        if vocab_size < 3:
            raise ParameterError(f"vocab_size must be at least 3 (<unk>, <eod> and one word), "
                                 f"got {vocab_size}.")
        counts: Counter = Counter()
        for text in _with_bar(texts, "word vocabulary", progress):
            for piece in text_slices(text):
                counts.update(fast_word_tokenize(piece.lower()))
        counts.pop(UNK, None)
        counts.pop(EOD, None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = ranked[: vocab_size - 2]
        tok = cls([w for w, _ in kept])
        total = sum(counts.values())
        tok.training = TrainingStats(
            tokens=total, distinct=len(counts), entries=len(kept),
            one_off_entries=sum(1 for _, n in kept if n == 1),
            unk_rate=(total - sum(n for _, n in kept)) / total if total else 0.0)
        for message in tok.training.warnings():
            warnings.warn(message, TokenizerWarning, stacklevel=2)
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def name(self) -> str:
        return f"word-level ({self.vocab_size:,} IDs)"

    def encode(self, text: str) -> np.ndarray:
        """The IDs of ``text``'s tokens (``uint32``; unknown words get ID 0)."""
        parts = [self._encode_piece(piece.lower()) for piece in text_slices(text)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def encode_many(self, texts: Iterable[str]) -> list[np.ndarray]:
        """``[encode(t) for t in texts]``."""
        return [self.encode(t) for t in texts]

    def _encode_piece(self, piece: str) -> np.ndarray:
        # One regular-expression pass, then every lookup in one C-level loop (map over the
        # dict's __getitem__; a missing word costs one call of __missing__). ASCII text is
        # matched as bytes, which is faster and gives the same tokens.
        if piece.isascii():
            if self._byte_lookup is None:
                self._byte_lookup = _IdsOrUnk({w.encode("utf-8", "surrogatepass"): i
                                               for w, i in self.ids.items()})
            words = _ASCII_WORD_PUNCT.findall(piece.encode("ascii"))
            lookup = self._byte_lookup
        else:
            words, lookup = fast_word_tokenize(piece), self._lookup
        return np.fromiter(map(lookup.__getitem__, words), dtype=np.uint32, count=len(words))

    def decode(self, ids) -> str:
        """The tokens of ``ids`` joined by single spaces (see :meth:`normalize`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids[(ids < 0) | (ids >= self.vocab_size)][0])
            raise ParameterError(f"ID {bad} is outside this vocabulary (0 to "
                                 f"{self.vocab_size - 1}); were the IDs made with another one?")
        return " ".join(self._table[ids].tolist())

    def normalize(self, text: str) -> str:
        """Exactly what a round trip gives back: ``decode(encode(text)) == normalize(text)``."""
        ids = self.ids
        return " ".join(w if w in ids else UNK for w in fast_word_tokenize(text.lower()))

    def to_json(self) -> str:
        return json.dumps({"format": WORD_FORMAT, "version": WORD_FORMAT_VERSION,
                           "lowercase": True, "specials": [UNK, EOD],
                           "words": self.tokens[2:]}, ensure_ascii=False, indent=0)

    @property
    def fingerprint(self) -> int:
        return _fingerprint(json.dumps(self.tokens, ensure_ascii=False).encode("utf-8"))

    def save(self, path) -> Path:
        """Write the vocabulary as JSON (atomically) and return the path."""
        return write_bytes_atomic(path, self.to_json().encode("utf-8"))

    def __repr__(self) -> str:
        return f"WordTokenizer({self.vocab_size:,} IDs, fingerprint {self.fingerprint:016x})"


class _IdsOrUnk(dict):
    """A vocabulary's word → ID map that gives ID 0 (``<unk>``) for any other word."""

    def __missing__(self, word) -> int:
        return 0


def _word_from_json(data: dict, path: Path) -> WordTokenizer:
    version = data.get("version")
    if version != WORD_FORMAT_VERSION:
        raise FormatError(f"{path}: field 'version' is {version!r}, this iokit reads version "
                          f"{WORD_FORMAT_VERSION}; rebuild the vocabulary with this iokit.")
    if data.get("specials") != [UNK, EOD]:
        raise FormatError(f"{path}: field 'specials' must be {[UNK, EOD]!r}, found "
                          f"{data.get('specials')!r}; rebuild the vocabulary.")
    words = data.get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise FormatError(f"{path}: field 'words' must be a list of strings; rebuild the "
                          "vocabulary.")
    try:
        return WordTokenizer(words)
    except ParameterError as exc:
        raise FormatError(f"{path}: field 'words': {exc}") from None


# --------------------------------------------------------------------------- byte-level BPE

BPE_EOD = "<|endoftext|>"


def require_tokenizers():
    """Hugging Face ``tokenizers``, or a ParameterError naming the extra to install."""
    try:
        import tokenizers
    except ImportError:
        raise ParameterError(
            "the BPE tokenizer needs the optional 'bpe' extra (Hugging Face tokenizers): "
            "pip install -e '.[bpe]'  (or: pip install tokenizers)"
        ) from None
    return tokenizers


_require_tokenizers = require_tokenizers  # the older name


class BPETokenizer:
    """Byte-level BPE (Hugging Face ``tokenizers``): lossless, any text, no unknown words.

    Build one with :meth:`train`; the end-of-document ID is ``<|endoftext|>``'s, as in GPT-2.
    """

    kind = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer
        eod = tokenizer.token_to_id(BPE_EOD)
        if eod is None:
            raise ParameterError(f"this BPE tokenizer has no {BPE_EOD} token; train it with "
                                 "iokit.tokenize.BPETokenizer.train.")
        self.eod_id = eod

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8_192, *, progress: bool = True
              ) -> BPETokenizer:
        """Train byte-level BPE merges on ``texts`` up to ``vocab_size`` IDs (``progress``: a
        bar of the documents read)."""
        tk = require_tokenizers()
        from tokenizers import decoders, models, pre_tokenizers, trainers

        vocab_size = check_positive("vocab_size", vocab_size)
        tok = tk.Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[BPE_EOD], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(_with_bar(texts, "BPE vocabulary", progress), trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def name(self) -> str:
        return f"byte-level BPE ({self.vocab_size:,} IDs)"

    def encode(self, text: str) -> np.ndarray:
        parts = [np.array(self._tok.encode(piece, add_special_tokens=False).ids,
                          dtype=np.uint32) for piece in text_slices(text)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def encode_many(self, texts: Iterable[str]) -> list[np.ndarray]:
        """``[encode(t) for t in texts]`` (the same IDs), with the texts' slices encoded in
        batches of about :data:`BATCH_CHARS` characters by the batch encoder, which runs on
        its Rust threads (``TOKENIZERS_PARALLELISM`` and ``RAYON_NUM_THREADS`` set them) and
        skips the character offsets that :meth:`encode` computes and throws away."""
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)  # >= 0.21
        parts: list[list[np.ndarray]] = []
        batch: list[str] = []
        owner: list[int] = []  # which text each slice of the batch belongs to
        size = 0

        def flush() -> None:
            for k, enc in zip(owner, encode(batch, add_special_tokens=False)):
                parts[k].append(np.array(enc.ids, dtype=np.uint32))
            batch.clear()
            owner.clear()

        for text in texts:
            parts.append([])
            for piece in text_slices(text):
                batch.append(piece)
                owner.append(len(parts) - 1)
                size += len(piece)
                if size >= BATCH_CHARS:
                    flush()
                    size = 0
        if batch:
            flush()
        return [p[0] if len(p) == 1 else np.concatenate(p) if p else np.empty(0, np.uint32)
                for p in parts]

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in np.asarray(ids).ravel()],
                                skip_special_tokens=False)

    def normalize(self, text: str) -> str:
        """A byte-level BPE round trip loses nothing: the text itself."""
        return text

    def to_json(self) -> str:
        return self._tok.to_str()

    @property
    def fingerprint(self) -> int:
        return _fingerprint(self.to_json().encode("utf-8"))

    def save(self, path) -> Path:
        """Write the tokenizer (HF ``tokenizer.json`` format) atomically and return the path."""
        return write_bytes_atomic(path, self.to_json().encode("utf-8"))

    def __repr__(self) -> str:
        return f"BPETokenizer({self.vocab_size:,} IDs, fingerprint {self.fingerprint:016x})"


# --------------------------------------------------------------------------- both

# spaCy's tokenizer lives in its own module, which builds on this one (imported here, at the
# end, so either module may be imported first; it imports spaCy only when it tokenizes).
from iokit.tokenize_spacy import SPACY_FORMAT, SpacyTokenizer, spacy_from_json  # noqa: E402

TOKENIZERS = {"word": WordTokenizer, "bpe": BPETokenizer, "spacy": SpacyTokenizer}
DEFAULT_VOCAB_SIZES = {"word": 32_768, "bpe": 8_192, "spacy": 32_768}


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int | None = None, *,
                    progress: bool = True, **options):
    """Train a ``"word"``, ``"bpe"`` or ``"spacy"`` tokenizer on ``texts`` (default sizes
    32,768 / 8,192 / 32,768); ``options`` go to its ``train`` (spaCy's ``lang="en"``)."""
    if kind not in TOKENIZERS:
        raise ParameterError(f"unknown tokenizer {kind!r}; choose one of: "
                             f"{', '.join(sorted(TOKENIZERS))}.")
    size = DEFAULT_VOCAB_SIZES[kind] if vocab_size is None else vocab_size
    return TOKENIZERS[kind].train(texts, size, progress=progress, **options)


def load_tokenizer(path):
    """Read a tokenizer saved by ``save``: a word or spaCy vocabulary, or a BPE
    ``tokenizer.json``."""
    path = Path(path)
    raw = read_kit_file(path, "vocabulary file",
                        "build one with iokit.tokenize.train_tokenizer and save it")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a JSON vocabulary file ({exc}); it may be truncated: "
                          "rebuild it.") from None
    if isinstance(data, dict) and data.get("format") == WORD_FORMAT:
        return _word_from_json(data, path)
    if isinstance(data, dict) and data.get("format") == SPACY_FORMAT:
        return spacy_from_json(data, path)
    if isinstance(data, dict) and "model" in data:
        tk = require_tokenizers()
        try:
            return BPETokenizer(tk.Tokenizer.from_str(raw.decode("utf-8")))
        except Exception as exc:  # tokenizers raises plain Exceptions on bad files
            raise FormatError(f"{path}: not a valid BPE tokenizer file ({exc}).") from None
    raise FormatError(f"{path}: field 'format' is missing: neither an iokit word or spaCy "
                      "vocabulary nor a tokenizers BPE file.")


BATCH_CHARS = 1 << 20  # characters of text encoded per batch call


def _text_batches(docs: Iterable, chars: int) -> Iterator[list[str]]:
    """The texts of ``docs`` in lists of about ``chars`` characters (a longer text alone)."""
    batch: list[str] = []
    size = 0
    for doc in docs:
        text = doc if isinstance(doc, str) else doc.text
        batch.append(text)
        size += len(text)
        if size >= chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def encode_corpus(docs: Iterable, tokenizer) -> Iterator[np.ndarray]:
    """One ID array per document (``Document``s or strings), each ending with ``eod_id``.

    Documents are read and encoded in batches of about :data:`BATCH_CHARS` characters with
    the tokenizer's ``encode_many`` (its ``encode`` one by one if it has none). The arrays
    depend only on the documents and the tokenizer, so shards written from them are the same
    however (and in how many processes) the encoding was done.
    """
    eod = np.array([tokenizer.eod_id], dtype=np.uint32)
    many = getattr(tokenizer, "encode_many", None)
    if many is None:
        for doc in docs:
            text = doc if isinstance(doc, str) else doc.text
            yield np.concatenate([tokenizer.encode(text), eod])
        return
    for batch in _text_batches(docs, BATCH_CHARS):
        for ids in many(batch):
            yield np.concatenate([ids, eod])


@contextmanager
def quiet_fork():
    """While worker processes start: ``TOKENIZERS_PARALLELISM=false`` (unless the caller set
    it), which the children inherit, so each worker encodes BPE on one thread: the worker
    processes are the parallelism (two workers of two threads each would only take turns on
    two cores). It also tells the library its threads were configured, so a parent that used
    them forks without the warning some versions print in every child. The parent's own
    setting (threads on) comes back when the block ends.
    """
    name = "TOKENIZERS_PARALLELISM"
    before = os.environ.get(name)
    if before is None:
        os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
