"""The text corpus: a deterministic synthetic one, or the learner's own.

The default corpus is generated from a seed, so every learner (and CI) gets byte-identical data
without downloading anything. It is JSONL, one document per line, ``{"id": ..., "text": ...}``,
the format real pretraining corpora ship in, and it is built to look like English where the kit
cares: a Zipf word-frequency law over tens of thousands of plausible words (short words common,
long words rare), sentences and paragraphs with punctuation, a long tail of document lengths,
and no repetition that would flatter a compressor.

Scales: ``tiny`` (~3 MB, CI and tests), ``small`` (~64 MB, workshops), ``large`` (~1 GB, demos),
chosen by argument, else the ``IOKIT_SCALE`` environment variable, else ``small``.

The learner's own data comes in through one door, :func:`open_corpus` (:func:`ingest` also
says what it read): a JSONL file (any text field), a ``.txt`` file, or a folder of ``.txt``
files (one document per file) becomes the JSONL file every other part of the kit reads; forms
other than JSONL with a ``text`` field are converted once into a copy keyed by what it was made
from, cleaned on the way in (byte-order marks, line ends) with a summary of what was read.
Every JSONL line anywhere in the kit is checked by one decoder, :func:`decode_record`.
Readers stream with bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import zstandard

from iokit.atomic import atomic_write, make_folder, write_bytes_atomic
from iokit.errors import CorpusError, check_choice
from iokit.progress import progress_bar
from iokit.tokenize import word_tokenize

SCALES = {"tiny": 3 * 2**20, "small": 64 * 2**20, "large": 2**30}
DEFAULT_SCALE = "small"
DEFAULT_SEED = 1234

# The most frequent English words, most frequent first: they take the top Zipf ranks, as they do
# in real text, so the generated prose reads like English at a glance.
FUNCTION_WORDS = (
    "the of and to a in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "more no can will its who so said about other into than them what some could these two "
    "may first then do any like my now over such our man me even most made after also did "
    "many before must through back years where much your way well down should because each "
    "just those people how too little state good very make world still own see men work long "
    "get here between both life being under never day same another know while last might us "
    "great old year off come since against go came right used take three"
).split()
# A few loanwords with accents, so the corpus is real UTF-8 (bytes != characters).
LOANWORDS = "café naïve façade résumé über déjà fiancée crème rôle coöperate señor piñata".split()

_ONSETS = (
    "b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p ph pl pr qu r s sc sh sk sl sm sn sp "
    "st str sw t th tr tw v w wh wr y z"
).split() + [""] * 6
_VOWELS = "a e i o u a e i o ea ee ai ou oo ie y io ua".split()
_CODAS = "- - - - n r s t l m d nd nt st rt ng ck ll ss rn ld mp sh ch th x ght".split()
_SUFFIXES = "- - - - - - - - s ed ing er ly tion ment ness able ous al ive ist ity".split()

VOCAB_SIZE = 60_000  # distinct words the generator draws from
N_PHRASES = 20_000  # frequent multi-word phrases drawn like words
PHRASE_ZIPF_EXPONENT = 1.15  # which words phrases are made of
ZIPF_EXPONENT = 1.12  # word frequency ~ 1 / rank**s (English is close to 1)
WORDS_PER_DOC_MEDIAN = 400
WORDS_PER_DOC_SIGMA = 1.0  # lognormal spread: a long tail of long documents
WORDS_PER_DOC_MAX = 60_000
DOCS_PER_BATCH = 256  # documents generated per random stream (results do not depend on it)


@dataclass(frozen=True)
class Document:
    """One document of a corpus: its id (or file name) and its text."""

    id: str
    text: str


def resolve_scale(scale: str | None = None) -> str:
    """The scale to use: the argument, else ``$IOKIT_SCALE``, else ``small``."""
    scale = scale or os.environ.get("IOKIT_SCALE") or DEFAULT_SCALE
    return check_choice("scale", scale, SCALES)


def default_data_dir() -> Path:
    """Where generated data goes: ``$IOKIT_DATA``, else the repository's ``data/`` folder."""
    if os.environ.get("IOKIT_DATA"):
        return Path(os.environ["IOKIT_DATA"])
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").exists():
        return repo / "data"
    return Path.cwd() / "data"


def corpus_path(scale: str | None = None, data_dir=None, seed: int = DEFAULT_SEED) -> Path:
    """The file name of the generated corpus for a scale and seed."""
    scale = resolve_scale(scale)
    return Path(data_dir or default_data_dir()) / f"corpus-{scale}-seed{seed}.jsonl"


# --------------------------------------------------------------------------- generation


def make_vocabulary(seed: int = DEFAULT_SEED, size: int = VOCAB_SIZE) -> list[str]:
    """Plausible English-like words and phrases, most frequent first (short ones rank high)."""
    rng = np.random.default_rng([seed, 0])
    words = list(dict.fromkeys(FUNCTION_WORDS))
    seen = set(words)
    invented = []
    while len(seen) < size + len(LOANWORDS):
        n_syll = 1 + rng.poisson(0.9)
        parts = []
        for _ in range(n_syll):
            parts.append(_ONSETS[rng.integers(len(_ONSETS))])
            parts.append(_VOWELS[rng.integers(len(_VOWELS))])
            parts.append(_CODAS[rng.integers(len(_CODAS))].strip("-"))
        parts.append(_SUFFIXES[rng.integers(len(_SUFFIXES))].strip("-"))
        word = "".join(parts)
        if 2 <= len(word) <= 18 and word not in seen:
            seen.add(word)
            invented.append(word)
    # Zipf's law of abbreviation: shorter words are more frequent. Sort by length with noise.
    noise = rng.random(len(invented)) * 3.0
    order = np.argsort([len(w) + n for w, n in zip(invented, noise)], kind="stable")
    words += [invented[i] for i in order]
    # Loanwords sit in the middle of the frequency range.
    for i, w in enumerate(LOANWORDS):
        words.insert(2_000 + 150 * i, w)
    words = words[:size]
    # Collocations ("of the", "in the world"): real English repeats short phrases, which is
    # much of what a compressor finds in it. Phrases are built from frequent words and take
    # ranks among them, so they are drawn as often as frequent words are.
    phrases = []
    cdf = np.cumsum(np.arange(1, 20_001, dtype=np.float64) ** -PHRASE_ZIPF_EXPONENT)
    cdf /= cdf[-1]
    for _ in range(N_PHRASES):
        picks = np.searchsorted(cdf, rng.random(2 + rng.poisson(1.2)))
        phrases.append(" ".join(words[i] for i in picks))
    slots = np.sort(rng.choice(np.arange(20, 40_000), size=N_PHRASES, replace=False))
    for offset, (slot, phrase) in enumerate(zip(slots, phrases)):
        words.insert(int(slot) + offset, phrase)
    return words


# What may follow a word: (text, probability). Sentence ends are decided separately.
_AFTER_WORD = [(" ", 0.913), (", ", 0.07), ("; ", 0.005), (": ", 0.004), (" - ", 0.008)]
_SENTENCE_ENDS = [(". ", 0.86), ("? ", 0.06), ("! ", 0.04), ('." ', 0.04)]
SENTENCE_WORDS_MEAN = 17
SENTENCES_PER_PARAGRAPH_MEAN = 5


def _batch_texts(words: list[str], seed: int, batch: int) -> list[str]:
    """The texts of one batch of documents, from a random stream of its own."""
    rng = np.random.default_rng([seed, 1, batch])
    n_docs = DOCS_PER_BATCH
    lengths = np.minimum(
        rng.lognormal(np.log(WORDS_PER_DOC_MEDIAN), WORDS_PER_DOC_SIGMA, n_docs).astype(np.int64)
        + 20,
        WORDS_PER_DOC_MAX,
    )
    total = int(lengths.sum())
    # Zipf-distributed word ranks by inverse-CDF sampling over the finite vocabulary.
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-ZIPF_EXPONENT)
    cdf /= cdf[-1]
    ids = np.minimum(np.searchsorted(cdf, rng.random(total)), len(words) - 1)

    # Separators after each word.
    seps = np.array([s for s, _ in _AFTER_WORD], dtype=object)
    sep_p = np.array([p for _, p in _AFTER_WORD])
    after = seps[rng.choice(len(seps), size=total, p=sep_p / sep_p.sum())]
    # Sentence ends: sentence lengths of at least 4 words, geometric beyond that.
    sentence_lengths = 3 + rng.geometric(1.0 / (SENTENCE_WORDS_MEAN - 3), size=total // 4 + 1)
    end_at = np.cumsum(sentence_lengths) - 1
    sentence_end = np.zeros(total, dtype=bool)
    sentence_end[end_at[end_at < total]] = True
    ends = np.array([s for s, _ in _SENTENCE_ENDS], dtype=object)
    end_p = np.array([p for _, p in _SENTENCE_ENDS])
    n_ends = int(sentence_end.sum())
    end_text = ends[rng.choice(len(ends), size=n_ends, p=end_p / end_p.sum())]
    paragraph = rng.random(n_ends) < 1.0 / SENTENCES_PER_PARAGRAPH_MEAN
    end_text = np.where(paragraph, np.char.rstrip(end_text.astype(str)).astype(object) + "\n\n",
                        end_text)
    after[sentence_end] = end_text
    # Document boundaries end a sentence too.
    doc_last = np.cumsum(lengths) - 1
    after[doc_last] = "."
    # Capitalize the first word of every sentence (and of every document).
    starts = np.zeros(total, dtype=bool)
    starts[0] = True
    starts[1:] = sentence_end[:-1]
    starts[doc_last[:-1] + 1] = True
    vocab = np.array(words, dtype=object)
    capital = np.array([w[:1].upper() + w[1:] for w in words], dtype=object)
    tokens = np.where(starts, capital[ids], vocab[ids])

    texts = []
    begin = 0
    for n in lengths:
        end = begin + int(n)
        pieces = np.empty(2 * (end - begin), dtype=object)
        pieces[0::2] = tokens[begin:end]
        pieces[1::2] = after[begin:end]
        texts.append(_tidy("".join(pieces.tolist())))
        begin = end
    return texts


def _tidy(text: str) -> str:
    """Drop separators that would dangle before a document's final full stop."""
    return text.replace(" - .", ".").replace(", .", ".").replace("; .", ".").replace(": .", ".")


def iter_generated(scale: str | None = None, seed: int = DEFAULT_SEED) -> Iterator[Document]:
    """The documents of the generated corpus, without writing them anywhere."""
    target = SCALES[resolve_scale(scale)]
    words = make_vocabulary(seed)
    written = 0
    batch = 0
    n = 0
    while written < target:
        for text in _batch_texts(words, seed, batch):
            yield Document(f"doc-{n:07d}", text)
            n += 1
            written += len(text.encode("utf-8")) + 32
            if written >= target:
                return
        batch += 1


def generate_corpus(path, scale: str | None = None, seed: int = DEFAULT_SEED,
                    progress: bool = True) -> Path:
    """Write the generated corpus for ``scale`` to ``path`` (atomically) and return the path."""
    scale = resolve_scale(scale)
    path = Path(path)
    make_folder(path.parent, "the data folder")
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f, progress_bar(
        total=SCALES[scale], unit="B", unit_scale=True, desc=f"corpus {scale}", disable=not progress
    ) as bar:
        for doc in iter_generated(scale, seed):
            line = json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n"
            f.write(line)
            bar.update(len(line.encode("utf-8")))
    return path


def ensure_corpus(scale: str | None = None, data_dir=None, seed: int = DEFAULT_SEED,
                  progress: bool = True) -> Path:
    """The generated corpus for ``scale``, made now unless a complete file already exists.

    Files are written atomically, so an existing file under the final name is complete.
    """
    path = corpus_path(scale, data_dir, seed)
    if path.is_file():
        return path
    return generate_corpus(path, scale, seed, progress=progress)


# --------------------------------------------------------------------------- one record

BOM = "\ufeff"
# A \uD800-\uDFFF escape: JSON allows it, but alone it stands for no character.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = {type(None): "null", bool: "boolean", int: "int", float: "float", str: "string",
               list: "list", dict: "object"}


def _line_of(path, offset: int) -> int | None:
    """The line number of byte ``offset`` in ``path`` (counted only when an error is reported)."""
    try:
        with open(path, "rb") as f:
            count, left = 1, offset
            while left > 0:
                block = f.read(min(left, 1 << 20))
                if not block:
                    return None
                count += block.count(b"\n")
                left -= len(block)
            return count
    except OSError:
        return None


_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2",
          b"\xfd7zXZ": "xz", b"PK\x03\x04": "zip"}


def _compressed(raw: bytes) -> str | None:
    """The compression format whose magic bytes ``raw`` starts with, if any."""
    return next((name for magic, name in _MAGIC.items() if raw.startswith(magic)), None)


def decode_record(line: bytes, path, *, lineno: int | None = None, offset: int | None = None,
                  text_field: str = "text", id_field: str = "id") -> Document | None:
    """The document on one JSONL line, checked; ``None`` for a blank line.

    Every reader of JSONL in the kit (:func:`iter_documents`, the loops of notebook 01, the
    workers that read byte ranges) decodes its lines here, so every record is checked the same
    way: valid UTF-8 (a byte-order mark before the first record is dropped), one JSON object,
    a text field holding a non-empty string, no lone surrogate escape such as ``"\\ud800"``.
    Blank lines are skipped everywhere. A bad record raises :class:`CorpusError` naming the
    file and the line (``lineno``), or, for a reader that started mid-file, the byte
    ``offset`` of the line (and its line number, counted then), and saying what to do.
    """
    if not line.strip():
        return None
    start = lineno == 1 or offset == 0
    try:
        return _decode(line, path, lineno, offset, text_field, id_field, start)
    except _BadRecord as bad:
        raise CorpusError(bad.message(path, lineno, offset)) from None


_WHERE, _LINE_AT = "\x00where\x00", "\x00line-at\x00"  # filled in when a record is reported


class _BadRecord(Exception):
    """What is wrong with a record; its position is written in only when it is reported."""

    def message(self, path, lineno, offset) -> str:
        text = str(self.args[0])
        if lineno is not None:
            return text.replace(_WHERE, f"{path}: line {lineno}").replace(_LINE_AT, "")
        n = _line_of(path, offset or 0)  # counted now, on the way to an error
        where = f"{path}: the document at byte offset {offset}" + (f" (line {n})" if n else "")
        return text.replace(_WHERE, where).replace(_LINE_AT, f"line {n}, " if n else "")


def _decode(line: bytes, path, lineno, offset, text_field: str, id_field: str,
            start: bool) -> Document:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = f"byte offset {(offset or 0) + exc.start}: " if offset is not None else ""
        packed = _compressed(line) if start else None
        todo = (f"It looks {packed}-compressed: decompress it first." if packed else
                "Re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or remove that "
                "line.")
        raise _BadRecord(f"{_WHERE} is not valid UTF-8 ({at}{line[exc.start:exc.start + 4]!r})."
                         f" {todo}") from None
    if start and text.startswith(BOM):
        text = text[1:]
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        todo = "Each line must be one JSON object; fix or remove it."
        if start and not text.lstrip().startswith(("{", "[", '"')):
            todo += " (Plain text? Give it as a .txt file, or a folder of them.)"
        if lineno is not None:
            raise _BadRecord(f"{_WHERE}, column {exc.colno}: malformed JSON ({exc.msg}). "
                             f"{todo}") from None
        raise _BadRecord(f"{path}: the document at byte offset {offset} is malformed JSON "
                         f"({_LINE_AT}column {exc.colno}: {exc.msg}). {todo}") from None
    except RecursionError:
        raise _BadRecord(f"{_WHERE}: JSON nested too deeply to read; each line must be one "
                         "flat JSON object: fix or remove it.") from None
    if not isinstance(record, dict):
        raise _BadRecord(
            f"{_WHERE}: a JSON {_JSON_TYPES.get(type(record), type(record).__name__)}, not an "
            f"object; each line must be one JSON object with a {text_field!r} field: fix or "
            "remove it.")
    if text_field not in record:
        keys = ", ".join(map(str, record))
        raise _BadRecord(
            f"{_WHERE}: no {text_field!r} field (found: {keys or 'nothing'}). Pass text_field= "
            "(or --text-field) naming the field that holds the text, or remove that line.")
    value = record[text_field]
    if not isinstance(value, str):
        kind = _JSON_TYPES.get(type(value), type(value).__name__)
        raise _BadRecord(
            f"{_WHERE}: field {text_field!r} is {kind}, not a string; the text field must hold "
            "the document's text: fix or remove that line.")
    if not value.strip():
        raise _BadRecord(f"{_WHERE}: field {text_field!r} is empty; a document needs text: "
                         "remove that line.")
    doc_id = record.get(id_field)
    doc_id = str(doc_id) if doc_id is not None else (
        f"line-{lineno}" if lineno is not None else f"offset-{offset}")
    if _SURROGATE_ESCAPE.search(line):
        for name, value_ in ((text_field, value), (id_field, doc_id)):
            bad = _LONE_SURROGATE.search(value_)
            if bad:
                raise _BadRecord(
                    f"{_WHERE}: field {name!r} holds a lone surrogate escape "
                    f"(\\u{ord(bad.group()):04x}, character {bad.start():,}), which stands for "
                    "no character and cannot be encoded; fix the escape (a surrogate pair "
                    "needs both halves) or remove that line.")
    return Document(doc_id, value)


# --------------------------------------------------------------------------- hygiene


def clean_text(text: str) -> tuple[str, list[str]]:
    """``text`` with a leading byte-order mark removed and CRLF / CR line ends made LF, and the
    list of what was changed (``"bom"``, ``"crlf"``, ``"cr"``)."""
    fixed = []
    if text.startswith(BOM):
        text = text[1:]
        fixed.append("bom")
    if "\r" in text:
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
            fixed.append("crlf")
        if "\r" in text:
            text = text.replace("\r", "\n")
            fixed.append("cr")
    return text, fixed


# Letters counted per script, by Unicode block (what a summary calls "scripts seen").
SCRIPTS = {
    "Latin": "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff",
    "Greek": "\u0370-\u03ff\u1f00-\u1fff",
    "Cyrillic": "\u0400-\u052f",
    "Hebrew": "\u0590-\u05ff",
    "Arabic": "\u0600-\u06ff\u0750-\u077f",
    "Devanagari": "\u0900-\u097f",
    "Thai": "\u0e00-\u0e7f",
    "CJK": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f",
    "Kana": "\u3040-\u30ff\u31f0-\u31ff",
    "Hangul": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
}
_RANGES = sorted((ord(chars[i]), ord(chars[i + 2]), name) for name, chars in SCRIPTS.items()
                 for i in range(0, len(chars), 3))  # each entry is a "first-last" range
_STARTS = np.array([lo for lo, _, _ in _RANGES], dtype=np.int64)
_ENDS = np.array([hi for _, hi, _ in _RANGES], dtype=np.int64)
_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))
_ASCII_BYTES = bytes(range(128))
_SCRIPT_CHUNK = 1 << 20  # characters looked at at once (memory: ~16 bytes per character)
_HTML_START = re.compile(r"\s*(<!doctype\s+html|<html[\s>])", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?(html|head|body|div|p|br|span|table|tr|td|script|style|a|img|meta)"
                       r"[\s>/]", re.IGNORECASE)


def count_scripts(text: str, into: dict) -> dict:
    """Add the letters of ``text`` per script (see :data:`SCRIPTS`) to ``into``; return it."""
    raw = text.encode("utf-8", "surrogatepass")  # ASCII letters: bytes < 128 are ASCII only
    n = len(raw) - len(raw.translate(None, _ASCII_LETTERS))
    if n:
        into["Latin"] = into.get("Latin", 0) + n
    if len(raw) == len(text):  # nothing else in it
        return into
    # The bytes >= 128 alone are still whole UTF-8 sequences: the non-ASCII characters.
    other = raw.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")
    for at in range(0, len(other), _SCRIPT_CHUNK):
        codes = np.frombuffer(other[at:at + _SCRIPT_CHUNK].encode("utf-32-le", "surrogatepass"),
                              dtype="<u4").astype(np.int64)
        which = np.searchsorted(_STARTS, codes, side="right") - 1
        inside = (which >= 0) & (codes <= _ENDS[which.clip(0)])
        for i, k in enumerate(np.bincount(which[inside], minlength=len(_RANGES))):
            if k:
                name = _RANGES[i][2]
                into[name] = into.get(name, 0) + int(k)
    return into


def looks_like_html(text: str) -> bool:
    """Whether a document looks like an HTML page (a doctype, an ``<html>`` tag, or many tags)."""
    head = text[:65536]
    return bool(_HTML_START.match(head)) or len(_HTML_TAG.findall(head)) >= 10


class CorpusWarning(UserWarning):
    """Something in the corpus the kit read but you may not want: empty files, HTML pages."""


@dataclass
class IngestSummary:
    """What opening a corpus read and what it changed on the way in.

    ``path`` is the JSONL file the kit reads (the source itself, or the converted copy).
    Counts are of the source: ``files`` read, ``documents`` made, ``source_bytes`` read and
    ``text_bytes`` of document text written (UTF-8, after normalising); ``scripts`` counts
    letters per script; ``boms_removed``, ``crlf_documents`` and ``cr_documents`` count
    documents changed; ``empty_files``, ``html_like`` and ``ignored`` name files.
    """

    source: str
    form: str
    path: str
    files: int = 0
    documents: int | None = None
    source_bytes: int = 0
    text_bytes: int | None = None
    scripts: dict = field(default_factory=dict)
    boms_removed: int = 0
    crlf_documents: int = 0
    cr_documents: int = 0
    empty_files: list = field(default_factory=list)
    html_like: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    converted: bool = False
    reused: bool = False

    @property
    def warnings(self) -> list[str]:
        """One line per thing worth a look (empty files, HTML pages)."""
        out = []
        if self.empty_files:
            out.append(f"{_count(self.empty_files, 'empty file')} skipped (no text): "
                       f"{_names(self.empty_files)}")
        if self.html_like:
            verb = "looks like an HTML page" if len(self.html_like) == 1 else \
                "look like HTML pages"
            out.append(f"{_count(self.html_like, 'document')} {verb} (kept as read; strip the "
                       f"markup first if it is not wanted): {_names(self.html_like)}")
        return out

    def lines(self) -> list[str]:
        """The summary as short lines of text (what the command line prints)."""
        if not self.converted:
            return [f"corpus: {self.path} ({_bytes(self.source_bytes)}, JSONL, used as it is; "
                    "every record is checked as it is read)"]
        if self.reused:
            head = f"{self.source} ({self.form}): reusing its copy {self.path} (same files)"
        else:
            head = f"converted {self.source} ({self.form}) to {self.path}"
        out = [head, f"  read {_count(range(self.files), 'file')}, {_bytes(self.source_bytes)}: "
                     f"{_count(range(self.documents), 'document')}, "
                     f"{_bytes(self.text_bytes)} of text"]
        total = sum(self.scripts.values())
        if total:
            shares = ", ".join(f"{name} {n / total:.1%}" for name, n in
                               sorted(self.scripts.items(), key=lambda kv: -kv[1]))
            out.append(f"  scripts (share of letters): {shares}")
        fixes = [f"{n:,} {what}" for n, what in (
            (self.boms_removed, "byte-order mark(s) removed"),
            (self.crlf_documents, "document(s) with CRLF line ends made LF"),
            (self.cr_documents, "document(s) with CR line ends made LF")) if n]
        out.append(f"  normalised: {'; '.join(fixes) if fixes else 'nothing needed it'}")
        if self.ignored:
            out.append(f"  not read ({'not .txt' if 'txt' in self.form else 'not .jsonl'}): "
                       f"{_count(self.ignored, 'file')}: {_names(self.ignored)}")
        out += [f"  warning: {w}" for w in self.warnings]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _bytes(n: int) -> str:
    return f"{n:,} bytes" if n < 100_000 else f"{n / 1e6:,.1f} MB"


def _count(items, noun: str) -> str:
    return f"{len(items):,} {noun}{'' if len(items) == 1 else 's'}"


def _names(items, shown: int = 5) -> str:
    more = f" and {len(items) - shown:,} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


# --------------------------------------------------------------------------- reading

FORM_JSONL = "JSONL file"
FORM_TXT_FOLDER = "folder of .txt files"
FORM_TXT_FILE = ".txt file"
FORM_JSONL_FOLDER = "folder of .jsonl files"


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _source(path: Path) -> tuple[str, list[Path], list[str]]:
    """What ``path`` is: its form, the files read (in order) and the files left out."""
    if path.is_dir():
        try:
            found = sorted(p for p in path.rglob("*")
                           if not _hidden(p.relative_to(path)) and p.is_file())
        except OSError as exc:
            raise CorpusError(f"{path}: cannot list the folder ({exc.strerror}); check its "
                              "permissions.") from None
        txt = [p for p in found if p.suffix.lower() == ".txt"]
        if txt:
            return FORM_TXT_FOLDER, txt, [str(p.relative_to(path)) for p in found
                                          if p not in set(txt)]
        parts = [p for p in found if p.parent == path and p.suffix == ".jsonl"]
        if parts:
            return FORM_JSONL_FOLDER, parts, [str(p.relative_to(path)) for p in found
                                              if p not in set(parts)]
        raise CorpusError(f"{path}: no .jsonl files in this folder, and no .txt files; put one "
                          "document per .txt file (or split a JSONL corpus into it with "
                          "iokit.split.split_corpus).")
    if path.is_file():
        return (FORM_TXT_FILE if path.suffix.lower() == ".txt" else FORM_JSONL), [path], []
    if not path.exists():
        raise CorpusError(
            f"{path}: no such corpus. Make the generated one with \"iokit data\" "
            "(or iokit.ensure_corpus()), or give the path of your own JSONL file, .txt file or "
            "folder of .txt files.")
    raise CorpusError(f"{path}: not a regular file or folder; give a JSONL file, a .txt file "
                      "or a folder of .txt files.")


def iter_documents(path, text_field: str = "text", id_field: str = "id") -> Iterator[Document]:
    """Stream the documents of any corpus form, in a fixed order.

    A JSONL file (one JSON object per line, the text in ``text_field``; every line checked by
    :func:`decode_record`, blank lines skipped), a ``.txt`` file (one document), a folder of
    ``.txt`` files (one document per file, nested folders included, in path order; other files
    and hidden ones are not read), or a folder of ``.jsonl`` parts (in name order). Text files
    get the same hygiene as :func:`open_corpus` gives them: byte-order marks removed, line
    ends made LF, empty files skipped. Memory stays bounded by the longest document. Problems
    raise :class:`CorpusError` naming the file and the line (JSONL) or byte offset (bad UTF-8).
    """
    path = Path(path)
    form, files, _ = _source(path)
    yield from _documents(path, form, files, text_field, id_field)


def _documents(root: Path, form: str, files: list[Path], text_field: str, id_field: str,
               summary: IngestSummary | None = None, bar=None) -> Iterator[Document]:
    empty = True
    for p in files:
        if form in (FORM_JSONL, FORM_JSONL_FOLDER):
            docs = _iter_jsonl(p, text_field, id_field)
            if summary is not None:
                docs = (_cleaned(d, summary) for d in docs)
        else:
            doc = _text_file(root, p, summary)
            docs = [doc] if doc is not None else []
        for doc in docs:
            empty = False
            yield doc
        if bar is not None:
            bar.update(_size(p))
    if empty:
        what = "every .txt file is empty" if form in (FORM_TXT_FOLDER, FORM_TXT_FILE) else \
            "no documents"
        raise CorpusError(f"{root}: the corpus is empty ({what}); give a file with text.")


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _cleaned(doc: Document, summary: IngestSummary) -> Document:
    text, fixed = clean_text(doc.text)
    _note(summary, doc.id, text, fixed)
    return Document(doc.id, text)


def _note(summary: IngestSummary, name: str, text: str, fixed: list[str]) -> None:
    summary.documents += 1
    summary.text_bytes += len(text.encode("utf-8"))
    summary.boms_removed += "bom" in fixed
    summary.crlf_documents += "crlf" in fixed
    summary.cr_documents += "cr" in fixed
    if looks_like_html(text):
        summary.html_like.append(name)
    count_scripts(text, summary.scripts)


def _open_for_reading(path: Path):
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise CorpusError(
            f"{path}: is a folder; give a JSONL file or a folder of .txt files."
        ) from None
    except OSError as exc:
        raise CorpusError(
            f"{path}: cannot read ({exc.strerror}); check the path and permissions."
        ) from None


def _text_file(root: Path, p: Path, summary: IngestSummary | None) -> Document | None:
    """One ``.txt`` file as a document (cleaned), or None if it holds no text."""
    with _open_for_reading(p) as f:
        raw = f.read()
    name = str(p.relative_to(root)) if p != root else p.name
    if summary is not None:
        summary.files += 1
        summary.source_bytes += len(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        packed = _compressed(raw)
        hint = (" It starts with a UTF-16 byte-order mark: save it as UTF-8."
                if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else
                f" It looks {packed}-compressed: decompress it first." if packed else "")
        raise CorpusError(
            f"{p}: is not valid UTF-8 (byte offset {exc.start}: "
            f"{raw[exc.start:exc.start + 4]!r}).{hint} Re-encode the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`) or remove it.") from None
    text, fixed = clean_text(text)
    if not text.strip():
        if summary is not None:
            summary.empty_files.append(name)
        return None
    if summary is not None:
        _note(summary, name, text, fixed)
    return Document(name, text)


def _iter_jsonl(path: Path, text_field: str, id_field: str) -> Iterator[Document]:
    offset = 0
    with _open_for_reading(path) as f:
        for lineno, raw in enumerate(f, start=1):
            doc = decode_record(raw, path, lineno=lineno, offset=offset, text_field=text_field,
                                id_field=id_field)
            offset += len(raw)
            if doc is not None:
                yield doc


# --------------------------------------------------------------------------- opening

COPY_FORMAT = "iokit-corpus-copy-1"


def _identity(path: Path, form: str, files: list[Path], text_field: str) -> dict:
    """What a converted copy is made from: the resolved path, the form, the text field, and
    each file's name, size and modification time (nanoseconds)."""
    entries = []
    for p in files:
        try:
            st = p.stat()
        except OSError as exc:
            raise CorpusError(f"{p}: cannot read ({exc.strerror}); check the path and "
                              "permissions.") from None
        rel = str(p.relative_to(path)) if p != path else p.name
        entries.append([rel, st.st_size, st.st_mtime_ns])
    return {"format": COPY_FORMAT, "source": str(path.resolve()), "form": form,
            "text_field": text_field, "files": entries}


def _copy_paths(path: Path, identity: dict, data_dir) -> tuple[Path, Path]:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    name = re.sub(r"[^\w.-]+", "_", path.stem or "corpus")[:60]
    base = Path(data_dir or default_data_dir()) / f"own-{name}-{key}"
    return base.with_suffix(".jsonl"), base.with_suffix(".source.json")


def _recorded(copy: Path, meta: Path, identity: dict) -> IngestSummary | None:
    """The summary recorded with an existing copy, if the copy was made from ``identity``
    (checked field by field, never assumed from the name) and is whole."""
    try:
        data = json.loads(meta.read_bytes())
        if data.get("identity") != identity or copy.stat().st_size != data.get("copy_bytes"):
            return None
        return IngestSummary(**{**data["summary"], "reused": True})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def ingest(corpus, text_field: str = "text", data_dir=None, progress: bool = True,
           warn: bool = True) -> IngestSummary:
    """Open any corpus form as the JSONL file the kit reads, and say what was read.

    A JSONL file whose text is in ``text`` is used as it is (its first record is checked now,
    every other one when it is read). Any other form — a folder of ``.txt`` files, a ``.txt``
    file, a folder of ``.jsonl`` parts, JSONL with another text field — is converted into
    ``data/own-<name>-<key>.jsonl``, where ``key`` is a hash of what it was made from (the
    resolved path and each file's size and modification time), with the summary and that
    identity beside it in ``own-<name>-<key>.source.json``. The copy is made once: a later call
    reuses it only after checking the recorded identity against the source, and a source that
    changed gets a new copy (older copies of the same source are removed). Both files are
    written atomically, and two runs converting at once write the same bytes, so either is
    safe to read. Text is cleaned on the way in (:func:`clean_text`); empty files are skipped
    and, like documents that look like HTML, reported with a :class:`CorpusWarning` (unless
    ``warn`` is false: the summary's ``warnings`` list them too).
    """
    path = Path(corpus)
    form, files, ignored = _source(path)
    if form == FORM_JSONL and text_field == "text":
        next(iter_documents(path))  # fail early, with the decoder's clear error
        return IngestSummary(str(path), form, str(path), files=1, source_bytes=_size(path))
    identity = _identity(path, form, files, text_field)
    copy, meta = _copy_paths(path, identity, data_dir)
    summary = _recorded(copy, meta, identity)
    if summary is not None:
        return summary
    summary = IngestSummary(str(path), form, str(copy), documents=0, text_bytes=0,
                            ignored=ignored, converted=True)
    if form == FORM_JSONL_FOLDER or form == FORM_JSONL:
        summary.files, summary.source_bytes = len(files), sum(_size(p) for p in files)
    make_folder(copy.parent, "the data folder")
    with progress_bar(total=sum(_size(p) for p in files), unit="B", unit_scale=True,
                      desc=f"converting {path.name}", disable=not progress) as bar, \
            atomic_write(copy, "w", encoding="utf-8", newline="\n") as f:
        for doc in _documents(path, form, files, text_field, "id", summary, bar):
            f.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
        f.flush()
        if _identity(path, form, files, text_field) != identity:
            raise CorpusError(f"{path}: changed while it was being converted; run again once "
                              "nothing is writing to it.")
    record = {"identity": identity, "copy_bytes": copy.stat().st_size,
              "summary": {**asdict(summary), "reused": False}}
    write_bytes_atomic(meta, json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8"))
    _remove_older_copies(copy, identity)
    for w in summary.warnings if warn else []:
        warnings.warn(f"{path}: {w}", CorpusWarning, stacklevel=2)
    return summary


def _remove_older_copies(copy: Path, identity: dict) -> None:
    """Remove copies made earlier from the same source and text field (best effort)."""
    prefix = copy.name.rsplit("-", 1)[0] + "-"
    for meta in copy.parent.glob(f"{prefix}*.source.json"):
        if meta.name == copy.with_suffix(".source.json").name:
            continue
        try:
            old = json.loads(meta.read_bytes()).get("identity", {})
            if (old.get("source"), old.get("text_field")) == (identity["source"],
                                                               identity["text_field"]):
                meta.with_name(meta.name.removesuffix(".source.json") + ".jsonl").unlink(
                    missing_ok=True)
                meta.unlink(missing_ok=True)
        except (OSError, ValueError, AttributeError):
            continue


def open_corpus(corpus, text_field: str = "text", data_dir=None, progress: bool = True) -> Path:
    """The JSONL file to read for any corpus form (see :func:`ingest`, which also says what
    was read). Every function of the kit that takes a corpus opens it with this."""
    return Path(ingest(corpus, text_field, data_dir, progress).path)


def standard_corpus(path, text_field: str = "text", data_dir=None) -> Path:
    """The older name of :func:`open_corpus`."""
    return open_corpus(path, text_field, data_dir)


# --------------------------------------------------------------------------- statistics


def write_head(corpus, out, max_bytes: int) -> tuple[int, int]:
    """Write the first whole documents (JSONL lines) of ``corpus`` to ``out``, up to
    ``max_bytes`` but at least the first one, atomically; return ``(bytes, documents)``."""
    got = docs = 0
    with open(corpus, "rb") as src, atomic_write(out) as dst:
        for line in src:
            if docs and got + len(line) > max_bytes:
                break
            dst.write(line)
            got += len(line)
            docs += 1
    return got, docs


def corpus_head(corpus, folder, max_bytes: int | None) -> Path:
    """``corpus`` itself when it is no bigger than ``max_bytes`` (or that is None), else a
    JSONL file in ``folder`` holding its first whole documents up to ``max_bytes``, made once
    and reused. Its name carries a key of the corpus's path, size and modification time, so a
    changed or different corpus of the same name never reuses another's head."""
    corpus = Path(corpus)
    if max_bytes is None or not corpus.is_file() or corpus.stat().st_size <= max_bytes:
        return corpus
    st = corpus.stat()
    key = hashlib.sha256(f"{corpus.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
                         ).hexdigest()[:12]
    out = Path(folder) / f"{corpus.stem}-first-{max_bytes >> 20}MiB-{key}.jsonl"
    if not out.is_file():
        make_folder(out.parent, "the folder for the corpus's first part")
        write_head(corpus, out, max_bytes)
    return out


@dataclass
class CorpusStats:
    """What a corpus looks like: sizes, document lengths, word frequencies, compressibility."""

    path: Path
    documents: int
    bytes: int
    characters: int
    tokens: int
    distinct_words: int
    zstd3_ratio: float
    doc_bytes: np.ndarray  # UTF-8 bytes of each document's text
    word_counts: np.ndarray  # occurrences of each distinct word, most frequent first
    top_words: list[str]

    def summary(self) -> str:
        return (f"{self.documents:,} documents, {self.bytes:,} bytes "
                f"({self.characters:,} characters), {self.tokens:,} word tokens, "
                f"{self.distinct_words:,} distinct words, zstd level-3 ratio "
                f"{self.zstd3_ratio:.2f}")


def corpus_stats(path, text_field: str = "text", top: int = 10) -> CorpusStats:
    """Count documents, bytes, words (nltk word tokenizer, lower-cased) and the zstd-3 ratio."""
    path = Path(path)
    counts: Counter = Counter()
    doc_bytes, chars, tokens = [], 0, 0
    for doc in iter_documents(path, text_field=text_field):
        doc_bytes.append(len(doc.text.encode("utf-8")))
        chars += len(doc.text)
        words = word_tokenize(doc.text)
        tokens += len(words)
        counts.update(w.lower() for w in words if w.isalpha())
    size = path.stat().st_size if path.is_file() else int(sum(doc_bytes))
    compressed = 0
    cctx = zstandard.ZstdCompressor(level=3)
    files = [path] if path.is_file() else sorted(path.rglob("*.txt"))
    for f in files:
        with open(f, "rb") as src:
            chunker = cctx.chunker(chunk_size=1 << 20)
            for block in iter(lambda: src.read(1 << 20), b""):
                compressed += sum(len(c) for c in chunker.compress(block))
            compressed += sum(len(c) for c in chunker.finish())
    ranked = counts.most_common()
    return CorpusStats(
        path=path, documents=len(doc_bytes), bytes=size, characters=chars, tokens=tokens,
        distinct_words=len(counts), zstd3_ratio=size / compressed if compressed else 1.0,
        doc_bytes=np.array(doc_bytes, dtype=np.int64),
        word_counts=np.array([c for _, c in ranked], dtype=np.int64),
        top_words=[w for w, _ in ranked[:top]],
    )
