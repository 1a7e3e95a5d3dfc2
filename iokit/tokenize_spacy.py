"""The spaCy tokenizer (the optional ``spacy`` extra): spaCy's rule-based tokens, then IDs.

``spacy.blank(lang)`` is a pipeline with nothing in it but the tokenizer: language rules
(prefixes, suffixes, infixes, exceptions such as "don't" → "do" + "n't") that need no
downloaded model. For Chinese, spaCy's default segmenter cuts the text into characters
(``segmenter = "char"``), again with no extra package; languages whose tokenizer needs one
(Japanese, Korean, Thai, Vietnamese) get the kit's error naming it.

spaCy keeps, for every token, whether one space follows it (``token.whitespace_``); longer runs
of whitespace and line breaks are tokens of their own. :class:`SpacyTokenizer` keeps that too:
a vocabulary entry is a token's text **and** its space flag (spaCy's own ``Doc(words,
spaces)``), so ``"the"`` and ``"the "`` are two entries. Its round trip therefore keeps case,
spacing and line breaks, and loses exactly the tokens outside the vocabulary::

    decode(encode(text)) == normalize(text)

where ``normalize`` replaces every token outside the vocabulary by ``<unk>`` (keeping the space
after it). IDs: 0 is ``<unk>``, 1 ``<eod>`` (end of document, as the word tokenizer's), 2 is
``<unk>`` followed by a space; entries follow from ID 3, most frequent first.

The saved vocabulary (JSON, written atomically):

============== ==========================================================================
field          meaning
============== ==========================================================================
format         ``"iokit-spacy-vocab"``
version        1
lang           spaCy's language code (``"en"``, ``"zh"``, ...): which rules make the tokens
spacy_version  the spaCy that trained it (another version may cut some tokens differently:
               loading with one says so with a warning)
specials       ``["<unk>", "<eod>", "<unk> "]``: IDs 0, 1 and 2
tokens         the entries' texts, from ID 3 on
spaces         one 0 or 1 per entry: whether a space follows the token
============== ==========================================================================

Long texts are tokenized in slices (as the word and BPE tokenizers do), cut only where spaCy's
tokens cannot change: after a single space between two letters or digits (the tokenizer splits
on whitespace first, and a language's exceptions are checked never to join tokens there; a
language whose exceptions may, such as Russian's "в т.ч.", is cut at line breaks only), and for
Chinese between any two characters that are not whitespace. So the IDs are those of the whole
text, with one slice's tokens in memory at a time (smaller slices than the word and BPE
tokenizers': a spaCy ``Doc`` takes about 90 bytes per character of its text). spaCy also
remembers every distinct string it has seen (about 400 bytes each); the tokenizer starts
afresh when that memory passes ``MAX_STRINGS`` strings, which changes no token.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from iokit.atomic import write_bytes_atomic
from iokit.errors import FormatError, ParameterError, check_positive

SPACY_FORMAT = "iokit-spacy-vocab"
SPACY_FORMAT_VERSION = 1
UNK, EOD = "<unk>", "<eod>"  # the same specials as the word vocabulary's
SPECIALS = [UNK, EOD, UNK + " "]
MAX_STRINGS = 200_000  # strings spaCy may remember before the tokenizer starts afresh
SLICE_CHARS = 1 << 16  # a spaCy Doc takes about 90 bytes per character of its text
ZH_SLICE_CHARS = 1024  # spaCy's character segmenter aligns its tokens in time ~ slice²


def require_spacy():
    """spaCy, or a ParameterError naming the extra to install."""
    try:
        import spacy
    except ImportError:
        raise ParameterError(
            "the spaCy tokenizer needs the optional 'spacy' extra: pip install -e '.[spacy]'  "
            "(or: pip install spacy)") from None
    return spacy


def blank(lang: str):
    """``spacy.blank(lang)``: spaCy's tokenizer for ``lang``, or the kit's error saying why not."""
    spacy = require_spacy()
    if not isinstance(lang, str) or not lang:
        raise ParameterError(f"lang must be a spaCy language code such as 'en' or 'zh', got "
                             f"{lang!r}.")
    try:
        return spacy.blank(lang)
    except ImportError as exc:
        if "E048" in str(exc):  # no such language in spacy.lang
            raise ParameterError(f"spaCy has no language {lang!r}; use a code such as 'en', "
                                 "'de', 'fr', 'es', 'ru', 'zh' or 'xx' (multi-language).") from None
        raise ParameterError(f"spaCy's {lang!r} tokenizer needs a package that the 'spacy' "
                             f"extra does not install ({str(exc).splitlines()[0]}); choose a "
                             "language whose rule-based tokenizer works alone, such as 'en' "
                             "or 'zh'.") from None


# --------------------------------------------------------------------------- slicing

_AT_SPACE = re.compile(r"(?<=[^\W_]) (?=[^\W_])")  # one space between letters or digits
_AT_NEWLINE = re.compile(r"(?<=\S)\n(?=\S)")  # a line break between two non-spaces
_BETWEEN_CHARS = re.compile(r"(?<=\S)(?=\S)")  # between two characters (Chinese)


def _joins_across_spaces(nlp) -> bool:
    """True if one of the language's exceptions could join tokens across a space: a rule with
    a space inside, or a multi-token rule with a letter or digit on both sides of a cut
    (spaCy matches those on tokens, spaces ignored)."""
    from spacy.tokenizer import Tokenizer

    tok = nlp.tokenizer
    plain = Tokenizer(nlp.vocab, rules={}, prefix_search=tok.prefix_search,
                      suffix_search=tok.suffix_search, infix_finditer=tok.infix_finditer,
                      token_match=tok.token_match, url_match=tok.url_match)
    word = re.compile(r"[^\W_]")
    for key in tok.rules:
        if key.strip() != key or any(ch.isspace() for ch in key):
            if not key.isspace():
                return True
            continue
        parts = [t.text for t in plain(key)]
        if any(word.fullmatch(a[-1]) and word.fullmatch(b[0]) for a, b in zip(parts, parts[1:])):
            return True
    return False


_FRESH: dict = {}  # a pipeline _slicing made, for the first tokenizer of that language


@lru_cache(maxsize=8)
def _slicing(lang: str) -> tuple[re.Pattern, bool, int]:
    """How texts in ``lang`` are cut: (pattern, cut after the match?, slice size in chars)."""
    from spacy.tokenizer import Tokenizer

    nlp = _FRESH[lang] = blank(lang)
    if not isinstance(nlp.tokenizer, Tokenizer):
        if lang == "zh" and nlp.tokenizer.segmenter == "char":
            return _BETWEEN_CHARS, False, ZH_SLICE_CHARS
        raise ParameterError(f"spaCy's {lang!r} tokenizer is not rule-based; the kit uses "
                             "rule-based ones (and Chinese's character segmenter) only.")
    if _joins_across_spaces(nlp):
        return _AT_NEWLINE, True, SLICE_CHARS
    return _AT_SPACE, True, SLICE_CHARS


def check_language(lang: str) -> str:
    """``lang`` if spaCy is installed and can tokenize it here, else the kit's error."""
    require_spacy()
    _slicing(lang)
    return lang


def spacy_slices(text: str, lang: str, size: int | None = None) -> Iterator[str]:
    """``text`` in consecutive slices of about ``size`` characters (default: the language's),
    cut only where spaCy's tokens of the whole text do not change (see the module docstring).
    A text without such a place is one slice."""
    pattern, after, default = _slicing(lang)
    size = default if size is None else size
    start = 0
    while len(text) - start > size:
        m = pattern.search(text, start + size)
        if m is None:
            break
        cut = m.end() if after else m.start()
        yield text[start:cut]
        start = cut
    yield text[start:] if start else text


# --------------------------------------------------------------------------- the tokenizer


class SpacyTokenizer:
    """spaCy's tokens (text and the space after it) looked up in a fixed vocabulary.

    Build one with :meth:`train`; :func:`iokit.tokenize.load_tokenizer` reads it back. Needs
    the ``spacy`` extra to encode (decoding needs only the vocabulary).
    """

    kind = "spacy"

    def __init__(self, lang: str, tokens: list[str], spaces: list[int],
                 spacy_version: str | None = None):
        if len(tokens) != len(spaces):
            raise ParameterError(f"the vocabulary has {len(tokens)} tokens but {len(spaces)} "
                                 "space flags; they go in pairs.")
        self.lang = lang
        self.spacy_version = spacy_version
        self.texts = [UNK, EOD, UNK, *tokens]
        self.spaces = [0, 0, 1, *(int(bool(s)) for s in spaces)]
        self.ids = {(t, s): i for i, (t, s) in enumerate(zip(self.texts, self.spaces))
                    if i >= 3}
        if len(self.ids) != len(tokens):
            raise ParameterError("the vocabulary lists a token (with its space) twice; every "
                                 "entry must be unique.")
        self.unk_id, self.eod_id, self.unk_space_id = 0, 1, 2
        self._table = np.array([t + " " * s for t, s in zip(self.texts, self.spaces)],
                               dtype=object)
        self._lookup = None  # spaCy's string hashes → IDs, made on first encode
        self._local = threading.local()  # one spaCy tokenizer per thread
        self.training = None  # TrainingStats, set by train()

    # ----------------------------------------------------------------- spaCy, per thread

    def _nlp(self):
        nlp = getattr(self._local, "nlp", None)
        if nlp is None:
            check_language(self.lang)
            nlp = _FRESH.pop(self.lang, None) or blank(self.lang)  # blank costs 0.1 s or more
            self._local.nlp = nlp
        return nlp

    def forget(self) -> None:
        """Start afresh: this thread's next encode builds a new spaCy pipeline, which remembers
        no string yet (so its first pass over any text pays spaCy's full cost again)."""
        self._local.nlp = None

    def docs(self, text: str) -> Iterator:
        """spaCy ``Doc``s of ``text``, one per slice (a ``Doc`` is valid until the next)."""
        for piece in spacy_slices(text, self.lang):
            nlp = self._nlp()
            yield nlp.tokenizer(piece)
            if len(nlp.vocab.strings) > MAX_STRINGS:  # forget what it remembered
                self.forget()

    def spacy_tokens(self, text: str) -> list[tuple[str, bool]]:
        """spaCy's tokens of ``text``: (text, whether a space follows) each."""
        return [(t.text, bool(t.whitespace_)) for doc in self.docs(text) for t in doc]

    def _arrays(self):
        if self._lookup is None:
            from spacy.strings import get_string_id

            lookup = []
            for space in (0, 1):
                pairs = sorted((get_string_id(t), i) for (t, s), i in self.ids.items()
                               if s == space)
                keys = np.array([k for k, _ in pairs], dtype=np.uint64)
                lookup.append((keys, np.array([i for _, i in pairs], dtype=np.uint32)))
            self._lookup = lookup
        return self._lookup

    # ----------------------------------------------------------------- the interface

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 32_768, *, lang: str = "en",
              progress: bool = True) -> SpacyTokenizer:
        """The ``vocab_size`` - 3 most frequent tokens (text and space flag) of ``texts`` as
        spaCy's ``lang`` tokenizer cuts them (ties broken by text). ``training`` keeps what
        training saw; many ``<unk>`` in the training text give a ``TokenizerWarning``."""
        from iokit.tokenize import UNK_RATE, TokenizerWarning, TrainingStats, _with_bar

        spacy = require_spacy()
        vocab_size = check_positive("vocab_size", vocab_size)
        if vocab_size < 4:
            raise ParameterError(f"vocab_size must be at least 4 (<unk>, <eod>, '<unk> ' and "
                                 f"one token), got {vocab_size}.")
        from spacy.attrs import ORTH, SPACY

        tok = cls(lang, [], [], spacy.__version__)
        check_language(lang)  # a language the kit cannot use fails here, before any text
        counts: Counter = Counter()
        names: dict[int, str] = {}
        for text in _with_bar(texts, "spaCy vocabulary", progress):
            for doc in tok.docs(text):
                if not len(doc):
                    continue
                arr = doc.to_array([ORTH, SPACY])
                orth = arr[:, 0].tolist()
                counts.update(zip(orth, arr[:, 1].tolist()))
                for h in set(orth).difference(names):
                    names[h] = doc.vocab.strings[h]
        ranked = sorted(((names[h], s, n) for (h, s), n in counts.items()),
                        key=lambda e: (-e[2], e[0], e[1]))
        ranked = [e for e in ranked if e[0] not in (UNK, EOD)]
        kept = ranked[: vocab_size - 3]
        out = cls(lang, [t for t, _, _ in kept], [s for _, s, _ in kept], spacy.__version__)
        total = sum(counts.values())
        out.training = TrainingStats(
            tokens=total, distinct=len(counts), entries=len(kept),
            one_off_entries=sum(1 for *_, n in kept if n == 1),
            unk_rate=(total - sum(n for *_, n in kept)) / total if total else 0.0)
        if out.training.tokens >= 1000 and out.training.unk_rate > UNK_RATE:
            warnings.warn(
                f"spaCy vocabulary: {out.training.unk_rate:.0%} of the training text's tokens "
                f"are {UNK} (outside its {len(kept):,} entries); raise the vocabulary size, "
                "choose the text's language (lang=, --lang: 'zh' cuts Chinese into "
                "characters), or use the byte-level BPE tokenizer, which has no unknown "
                "tokens.", TokenizerWarning, stacklevel=2)
        return out

    @property
    def vocab_size(self) -> int:
        return len(self.texts)

    @property
    def name(self) -> str:
        return f"spaCy {self.lang} ({self.vocab_size:,} IDs)"

    def encode(self, text: str) -> np.ndarray:
        """The IDs of ``text``'s spaCy tokens (``uint32``; unknown ones get 0, or 2 when a space
        follows them)."""
        require_spacy()
        from spacy.attrs import ORTH, SPACY

        lookup = self._arrays()
        parts = []
        for doc in self.docs(text):
            if not len(doc):
                continue
            arr = doc.to_array([ORTH, SPACY])
            orth, space = arr[:, 0], arr[:, 1]
            ids = np.empty(len(orth), dtype=np.uint32)
            for s, (keys, values) in enumerate(lookup):
                sel = space == s
                want = orth[sel]
                if not len(keys):
                    ids[sel] = s * self.unk_space_id
                    continue
                pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
                ids[sel] = np.where(keys[pos] == want, values[pos], s * self.unk_space_id)
            parts.append(ids)
        if not parts:
            return np.zeros(0, dtype=np.uint32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def decode(self, ids) -> str:
        """The entries of ``ids`` joined as spaCy would: each token's text and its space."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids[(ids < 0) | (ids >= self.vocab_size)][0])
            raise ParameterError(f"ID {bad} is outside this vocabulary (0 to "
                                 f"{self.vocab_size - 1}); were the IDs made with another one?")
        return "".join(self._table[ids].tolist())

    def normalize(self, text: str) -> str:
        """Exactly what a round trip gives back: ``text`` with every token outside the
        vocabulary replaced by ``<unk>`` (the space after it kept)."""
        return "".join((t if (t, int(s)) in self.ids else UNK) + " " * s
                       for t, s in self.spacy_tokens(text))

    def to_json(self) -> str:
        return json.dumps({"format": SPACY_FORMAT, "version": SPACY_FORMAT_VERSION,
                           "lang": self.lang, "spacy_version": self.spacy_version,
                           "specials": SPECIALS, "tokens": self.texts[3:],
                           "spaces": self.spaces[3:]}, ensure_ascii=False, indent=0)

    @property
    def fingerprint(self) -> int:
        from iokit.tokenize import _fingerprint

        return _fingerprint(json.dumps([self.lang, self.texts, self.spaces],
                                       ensure_ascii=False).encode("utf-8"))

    def save(self, path) -> Path:
        """Write the vocabulary as JSON (atomically) and return the path."""
        return write_bytes_atomic(path, self.to_json().encode("utf-8"))

    def __getstate__(self):  # a spaCy pipeline per thread stays behind; it is made again
        state = self.__dict__.copy()
        state.pop("_local")
        state["_lookup"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:
        return (f"SpacyTokenizer({self.lang}, {self.vocab_size:,} IDs, fingerprint "
                f"{self.fingerprint:016x})")


def spacy_from_json(data: dict, path: Path) -> SpacyTokenizer:
    """A :class:`SpacyTokenizer` from its saved JSON (every field checked)."""
    from iokit.tokenize import TokenizerWarning

    version = data.get("version")
    if version != SPACY_FORMAT_VERSION:
        raise FormatError(f"{path}: field 'version' is {version!r}, this iokit reads version "
                          f"{SPACY_FORMAT_VERSION}; rebuild the vocabulary with this iokit.")
    if data.get("specials") != SPECIALS:
        raise FormatError(f"{path}: field 'specials' must be {SPECIALS!r}, found "
                          f"{data.get('specials')!r}; rebuild the vocabulary.")
    lang = data.get("lang")
    if not isinstance(lang, str) or not lang:
        raise FormatError(f"{path}: field 'lang' must be a spaCy language code such as 'en', "
                          f"found {lang!r}; rebuild the vocabulary.")
    tokens, spaces = data.get("tokens"), data.get("spaces")
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
        raise FormatError(f"{path}: field 'tokens' must be a list of non-empty strings; "
                          "rebuild the vocabulary.")
    if not isinstance(spaces, list) or any(s not in (0, 1) or isinstance(s, bool)
                                           for s in spaces):
        raise FormatError(f"{path}: field 'spaces' must be a list of 0 and 1; rebuild the "
                          "vocabulary.")
    trained = data.get("spacy_version")
    try:
        tok = SpacyTokenizer(lang, tokens, spaces, trained)
    except ParameterError as exc:
        raise FormatError(f"{path}: fields 'tokens' and 'spaces': {exc}") from None
    try:
        from importlib.metadata import version as installed
        here = installed("spacy")
    except Exception:  # no spaCy: decoding still works, encoding will say what to install
        here = None
    if here and trained and here.split(".")[:2] != str(trained).split(".")[:2]:
        warnings.warn(f"{path}: trained with spaCy {trained}, this is spaCy {here}: some "
                      "tokens may be cut differently (retrain the vocabulary to be sure).",
                      TokenizerWarning, stacklevel=3)
    return tok
