"""The text corpus: a deterministic synthetic one, or the learner's own.

The default corpus is generated from a seed, so every learner (and CI) gets byte-identical data
without downloading anything. It is JSONL, one document per line, ``{"id": ..., "text": ...}``,
the format real pretraining corpora ship in, and it is built to look like English where the kit
cares: a Zipf word-frequency law over tens of thousands of plausible words (short words common,
long words rare), sentences and paragraphs with punctuation, a long tail of document lengths,
and no repetition that would flatter a compressor.

Scales: ``tiny`` (~3 MB, CI and tests), ``small`` (~64 MB, workshops), ``large`` (~1 GB, demos),
chosen by argument, else the ``IOKIT_SCALE`` environment variable, else ``small``.

Readers stream the learner's own data with bounded memory: a JSONL file (any text field) or a
folder of ``.txt`` files, one document per file.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from iokit.atomic import atomic_write, make_folder
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


# --------------------------------------------------------------------------- reading


def iter_documents(path, text_field: str = "text", id_field: str = "id") -> Iterator[Document]:
    """Stream the documents of a JSONL file or a folder of ``.txt`` files, in a fixed order.

    Memory stays bounded by the longest document. Problems raise :class:`CorpusError` naming the
    file and the line (JSONL) or the byte offset (bad UTF-8).
    """
    path = Path(path)
    if path.is_dir():
        yield from _iter_text_folder(path)
    elif path.is_file():
        yield from _iter_jsonl(path, text_field, id_field)
    elif not path.exists():
        raise CorpusError(
            f"{path}: no such corpus. Make the generated one with `iokit data` "
            "(or iokit.ensure_corpus()), or give the path of your own JSONL file or .txt folder."
        )
    else:
        raise CorpusError(f"{path}: not a regular file or folder; give a JSONL file or a folder.")


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


def _decode(raw: bytes, path: Path, offset: int, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: {where}is not valid UTF-8 (byte offset {offset + exc.start}: "
            f"{raw[exc.start:exc.start + 4]!r}). Re-encode the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`) or remove that line."
        ) from None


def _iter_jsonl(path: Path, text_field: str, id_field: str) -> Iterator[Document]:
    empty = True
    offset = 0
    with _open_for_reading(path) as f:
        for lineno, raw in enumerate(f, start=1):
            line_offset = offset
            offset += len(raw)
            if not raw.strip():
                continue
            line = _decode(raw, path, line_offset, f"line {lineno} ")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"{path}: line {lineno}, column {exc.colno}: malformed JSON ({exc.msg}). "
                    "Each line must be one JSON object; fix or remove that line."
                ) from None
            if not isinstance(record, dict) or text_field not in record:
                keys = (", ".join(map(str, record)) if isinstance(record, dict)
                        else type(record).__name__)
                raise CorpusError(
                    f"{path}: line {lineno}: no {text_field!r} field (found: {keys or 'nothing'}). "
                    "Pass text_field= (or --text-field) naming the field that holds the text."
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise CorpusError(
                    f"{path}: line {lineno}: field {text_field!r} is {type(text).__name__}, "
                    "not a string; the text field must hold the document's text."
                )
            empty = False
            yield Document(str(record.get(id_field, f"line-{lineno}")), text)
    if empty:
        raise CorpusError(f"{path}: the corpus is empty (no documents); give a file with text.")


def _iter_text_folder(folder: Path) -> Iterator[Document]:
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise CorpusError(
            f"{folder}: no .txt files in this folder; put one document per .txt file."
        )
    for p in files:
        with _open_for_reading(p) as f:
            raw = f.read()
        yield Document(str(p.relative_to(folder)), _decode(raw, p, 0, ""))


def standard_corpus(path, text_field: str = "text", data_dir=None) -> Path:
    """The learner's corpus as the kit's own format: a JSONL file with ``id`` and ``text``.

    A JSONL file whose text is already in ``text`` is used as it is. A folder of ``.txt`` files,
    or JSONL with another text field, is converted once (atomically) into ``data/`` and the
    copy is returned, so every stage that streams JSONL lines can read it.
    """
    path = Path(path)
    if path.is_file() and text_field == "text":
        next(iter(iter_documents(path)))  # fail early, with the reader's clear error
        return path
    docs = iter_documents(path, text_field=text_field)
    first = next(docs)  # fail early, before anything is written
    out = Path(data_dir or default_data_dir()) / f"own-{path.stem or 'corpus'}-{text_field}.jsonl"
    make_folder(out.parent, "the data folder")
    with atomic_write(out, "w", encoding="utf-8", newline="\n") as f:
        for doc in itertools.chain([first], docs):
            f.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
    return out


# --------------------------------------------------------------------------- statistics


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
