"""Corpus splitting: cut a JSONL corpus into pieces, so work can be handed out piece by piece.

A distributed engine hands out work by input: one task per file (or per byte range of one big
file). A :class:`Piece` is a byte range of a JSONL file made of whole lines, so a worker can
read it alone with one ``seek`` and one ``read``. :func:`plan_pieces` plans them without
writing anything:

* one JSONL file and ``parts=N``: N byte ranges of about equal size, cut at line ends;
* a folder of ``.jsonl`` files (or a list of files): one piece per file, in name order.

:func:`split_corpus` writes the pieces out as ``part-00000.jsonl``, ``part-00001.jsonl``, ...
(each atomically), which is how corpora are usually shipped: many files of a few hundred MB.
Cut points depend only on the file's bytes and ``parts``, so the same corpus always splits the
same way, and the pieces, read in order, are the corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from iokit.atomic import atomic_write, make_folder
from iokit.corpus import open_corpus
from iokit.errors import CorpusError, ParameterError, check_positive

PART_NAME = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})\.jsonl$")
COPY_BYTES = 1 << 20


@dataclass(frozen=True)
class Piece:
    """Bytes ``start:end`` of the JSONL file ``path``: whole lines, one task's input."""

    path: Path
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def document_ends(path) -> list[int]:
    """The byte offset just past every non-blank line of ``path`` (where a piece may end);
    its length is the number of documents."""
    ends, pos = [], 0
    try:
        with open(path, "rb") as f:
            for line in f:
                pos += len(line)
                if line.strip():
                    ends.append(pos)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror}); check the path and "
                          "permissions.") from None
    return ends


def _cut(path: Path, parts: int) -> list[Piece]:
    """``parts`` pieces of ``path`` of about equal bytes, each ending at a line end."""
    ends = document_ends(path)
    if not ends:
        raise CorpusError(f"{path}: the corpus is empty (no documents); give a file with text.")
    if parts > len(ends):
        raise ParameterError(f"{path} holds {len(ends):,} documents, too few for {parts:,} "
                             f"pieces; use at most {len(ends):,} parts.")
    total = ends[-1]
    pieces, start, k = [], 0, 0
    for i, end in enumerate(ends):
        left_docs, left_parts = len(ends) - i, parts - len(pieces)
        # Close the piece at the first line end past its share of the bytes, or when every
        # remaining document is needed to give each remaining piece one.
        if end >= total * (k + 1) / parts or left_docs == left_parts:
            pieces.append(Piece(path, start, end))
            start, k = end, k + 1
            if len(pieces) == parts:
                break
    if pieces[-1].end < Path(path).stat().st_size:  # trailing blank lines go with the last piece
        pieces[-1] = Piece(path, pieces[-1].start, Path(path).stat().st_size)
    return pieces


def corpus_files(folder) -> list[Path]:
    """The ``.jsonl`` files of ``folder``, in name order (the order their documents come in)."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.jsonl") if p.is_file())
    if not files:
        raise CorpusError(f"{folder}: no .jsonl files in this folder; split a corpus into it "
                          "with iokit.split.split_corpus, or give a JSONL file and parts=N.")
    return files


def plan_pieces(corpus, parts: int | None = None) -> list[Piece]:
    """The pieces to hand out: byte ranges of one JSONL file, or one piece per file.

    ``corpus`` is a JSONL file (give ``parts``), a folder of ``.jsonl`` files, or a list of
    JSONL files (one piece each; ``parts`` must then be left out).
    """
    if isinstance(corpus, (list, tuple)):
        files = [Path(p) for p in corpus]
    elif Path(corpus).is_dir() and any(Path(corpus).glob("*.jsonl")):
        files = corpus_files(corpus)
    else:  # one JSONL file, or any other corpus form, opened as one
        parts = check_positive("parts", 1 if parts is None else parts,
                               hint="It is the number of pieces; use e.g. 8.")
        return _cut(open_corpus(corpus), parts)
    if parts is not None:
        raise ParameterError(f"parts={parts!r} applies to one JSONL file; a list or folder of "
                             "files is already split (one piece per file).")
    pieces = []
    for p in files:
        try:
            size = p.stat().st_size
        except OSError as exc:
            raise CorpusError(f"{p}: cannot read ({exc.strerror}); check the path.") from None
        pieces.append(Piece(p, 0, size))
    return pieces


def part_path(out_dir, index: int, prefix: str = "part") -> Path:
    """The name of part ``index``: ``part-00000.jsonl``, ``part-00001.jsonl``, ..."""
    return Path(out_dir) / f"{prefix}-{index:05d}.jsonl"


def split_corpus(corpus, out_dir, parts: int, prefix: str = "part") -> list[Path]:
    """Write ``corpus`` (one JSONL file) as ``parts`` files in ``out_dir``; return their paths.

    Each file is a piece of :func:`plan_pieces`, copied byte for byte and written atomically.
    Parts with the same ``prefix`` already in ``out_dir`` are replaced.
    """
    pieces = plan_pieces(corpus, check_positive("parts", parts,
                                                hint="It is the number of files; use e.g. 8."))
    out_dir = make_folder(out_dir, "the folder for the parts")
    for p in out_dir.iterdir():
        m = PART_NAME.match(p.name)
        if m and m["prefix"] == prefix and int(m["index"]) >= len(pieces):
            p.unlink()  # an older split into more parts: its extra files would be read too
    paths = []
    for i, piece in enumerate(pieces):
        dest = part_path(out_dir, i, prefix)
        with open(piece.path, "rb") as src, atomic_write(dest, "wb") as f:
            src.seek(piece.start)
            left = piece.nbytes
            while left:
                block = src.read(min(COPY_BYTES, left))
                f.write(block)
                left -= len(block)
        paths.append(dest)
    return paths
