"""Your own corpus in a notebook: open any corpus form and see what was read.

``corpus = show_corpus("my_texts/")`` opens a JSONL file, a ``.txt`` file or a folder of
``.txt`` files as :func:`iokit.corpus.open_corpus` does (converting it once, if need be), prints
the ingest summary — files, documents, bytes, scripts seen, what was normalised, and warnings
for empty files and HTML pages — and returns the JSONL path every other function takes.
"""

from __future__ import annotations

from pathlib import Path

from iokit.corpus import IngestSummary, ingest


def show_corpus(corpus, text_field: str = "text") -> Path:
    """Open ``corpus``, print what was read (:class:`~iokit.corpus.IngestSummary`), and return
    the JSONL path to pass on."""
    summary: IngestSummary = ingest(corpus, text_field, warn=False)  # the summary lists them
    print(summary)
    return Path(summary.path)
