"""The ``iokit`` command: check the machine, make data, run the whole tour headless, benchmark.

``iokit check`` says whether this machine is ready; ``iokit data [--scale S]`` makes the
corpus; ``iokit tour`` runs every stage and prints a table;
``iokit shards`` pretokenizes it, one shard per piece, on a local pool or a dask cluster;
``iokit bench`` prints measured ratios; ``iokit report [--out DIR]`` runs the tour and writes an
HTML report with its figures and the machine description. Errors in the input or settings print
one line on stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iokit.app.bench import run_bench
from iokit.app.check import run_check, verdict
from iokit.app.report import write_report
from iokit.app.tour import format_table, run_tour
from iokit.corpus import (
    corpus_path,
    default_data_dir,
    ensure_corpus,
    iter_documents,
    resolve_scale,
    standard_corpus,
)
from iokit.engines import ENGINES, pretokenize_pieces, require_dask
from iokit.errors import IokitError, ParameterError, check_choice, check_positive
from iokit.progress import progress_enabled
from iokit.split import plan_pieces
from iokit.storage import PRESETS, open_storage
from iokit.tokenize import WordTokenizer


def _corpus(args) -> Path:
    if args.corpus:
        path = standard_corpus(args.corpus, text_field=args.text_field)
        if path != Path(args.corpus):
            print(f"converted {args.corpus} to {path} (one JSON document per line)")
        return path
    return ensure_corpus(args.scale)


def cmd_data(args) -> int:
    existed = corpus_path(args.scale).is_file()
    path = ensure_corpus(args.scale)
    size = path.stat().st_size
    print(f"{path} ({size / 1e6:,.1f} MB, scale {resolve_scale(args.scale)}"
          f"{', already there' if existed else ''})")
    return 0


def cmd_tour(args) -> int:
    open_storage(check_storage(args.storage))  # check the name before any work
    corpus = _corpus(args)
    print(f"corpus: {corpus} ({corpus.stat().st_size / 1e6:,.1f} MB), storage: {args.storage}")

    if progress_enabled():  # progress bars while the stages run
        rows, _ = run_tour(corpus, storage=args.storage, progress=True)
    else:
        rows, _ = run_tour(corpus, storage=args.storage,
                           on_row=lambda r: print(f"  done: {r.stage} ({r.seconds:.2f} s)",
                                                  flush=True))
    print()
    print(format_table(rows))
    return 0


def cmd_shards(args) -> int:
    check_choice("engine", args.engine, ENGINES)  # settings fail before any work
    check_positive("parts", args.parts, hint="It is the number of pieces; use e.g. 8.")
    folder = Path(args.corpus) if args.corpus else None
    if folder is not None and folder.is_dir() and any(folder.glob("*.jsonl")):
        pieces, field = plan_pieces(folder), args.text_field  # one piece per file
        name = folder.name
    else:
        corpus = _corpus(args)
        pieces, field, name = plan_pieces(corpus, args.parts), "text", corpus.stem
    out = Path(args.out) if args.out else default_data_dir() / f"shards-{name}-{args.engine}"
    client = None
    if args.scheduler:
        if args.engine != "dask":
            raise ParameterError("--scheduler is the address of a dask scheduler; use it with "
                                 "--engine dask.")

        client = require_dask().Client(args.scheduler, timeout="10s")
    try:
        print(f"{len(pieces)} piece(s) of {sum(p.nbytes for p in pieces) / 1e6:,.1f} MB; "
              f"training the word vocabulary ({args.vocab_size:,} IDs)", flush=True)
        files = dict.fromkeys(piece.path for piece in pieces)  # each file once, in order
        docs = (d.text for path in files for d in iter_documents(path, text_field=field))
        tok = WordTokenizer.train(docs, vocab_size=args.vocab_size)
        run = pretokenize_pieces(pieces, tok, out, engine=args.engine,
                                 workers=args.workers or os.cpu_count() or 1, client=client,
                                 codec=args.codec, text_field=field,
                                 progress=progress_enabled())
    finally:
        if client is not None:
            client.close()
    print(run)
    print(f"shards: {out}")
    return 0


def cmd_bench(args) -> int:
    corpus = _corpus(args)
    print(f"corpus: {corpus} ({corpus.stat().st_size / 1e6:,.1f} MB)")
    results = run_bench(corpus)
    if not results:
        print("no benchmarks yet")
    for r in results:
        print(r, flush=True)
    return 0


def cmd_report(args) -> int:
    open_storage(check_storage(args.storage))
    corpus = _corpus(args)
    size = corpus.stat().st_size / 1e6
    print(f"corpus: {corpus} ({size:,.1f} MB), storage: {args.storage}")
    rows, extra = run_tour(corpus, storage=args.storage, progress=progress_enabled())
    print(format_table(rows))
    path = write_report(rows, extra, args.out, about=f"corpus {corpus.name} ({size:,.1f} MB), "
                        f"storage {args.storage}")
    print(f"report: {path}")
    return 0


DESCRIPTION = """\
iokit: I/O for language-model training data, measured on this machine.

Start with "iokit check" (is this machine ready?), then "iokit tour --scale tiny" (every
technique in one table, about 15 seconds). Errors in your input or settings print one line
and exit with code 2."""

TOUR_HELP = """\
Runs every stage of the kit on one corpus, in this order, and prints one table (time, MB/s,
speedup over the first row):

  the naive loop (one read call per byte, one write per document), then chunked reads and
  batched writes; an epoch from text against one from pretokenized shards (word vocabulary
  to .bin/.idx); the shards compressed in zstd blocks and an epoch from them; tokenizing and
  pretokenizing with one process per core; 16 threads reading a simulated object store; the
  same pretokenizing on a dask cluster (with the dask extra); and the pipeline, from a naive
  loader to background workers, prefetching and compressed blocks, feeding a simulated
  training loop.

How long: about 15 s at tiny, 3 to 4 min at small, 40 min or more at large (on a 2-core
laptop; the naive loop is most of it).

What it writes: the table on screen, nothing else. Its scratch files (token files, shards) go
to a temporary folder removed at the end. The generated corpus is made in data/ (or
$IOKIT_DATA) if it is not there yet; your own corpus in another form is converted once into
data/. For a page with figures, use "iokit report"."""

STORAGES = ("local", *PRESETS)
STORAGE_HELP = ("where the pipeline stages read from: local (this disk; the pipeline then "
                "uses object-store, where loading matters) or a simulated store: "
                + ", ".join(PRESETS) + " (default: local)")


def check_storage(name: str) -> str:
    """``name`` if it is local disk or a simulated preset, else the kit's error listing both."""
    return check_choice("storage", name, STORAGES)


def cmd_check(args) -> int:
    items = run_check(args.scale)
    for item in items:
        print(item)
    line = verdict(items)
    print(line)
    return 1 if line.startswith("not ready") else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iokit", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    scale_help = "tiny (~3 MB), small (~64 MB) or large (~1 GB); default: $IOKIT_SCALE, or small"

    def add_corpus_args(p):
        p.add_argument("--scale", help=scale_help)
        p.add_argument("--corpus", help="your own corpus instead: a JSONL file, or a folder of "
                       ".txt files (one document each)")
        p.add_argument("--text-field", default="text",
                       help="the JSON field that holds the text (default: text)")

    p = sub.add_parser("check", help="is this machine ready? (a few seconds)",
                       description="Checks Python, the packages and extras, cores, free disk "
                       "for the chosen scale, a writable data folder and Chromium (for the "
                       "browser tests). Prints one line each and a verdict; exit code 0 when "
                       "ready, 1 when something must be fixed first.")
    p.add_argument("--scale", help=scale_help + " (decides the disk space needed)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("data", help="make the generated corpus (kept, and reused next time)",
                       description="Makes the generated corpus for a scale in data/ (or "
                       "$IOKIT_DATA), the same bytes on every machine; reused when there.")
    p.add_argument("--scale", help=scale_help)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("tour", help="run every stage and print one table (15 s at tiny, "
                       "3-4 min at small)", description=TOUR_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_args(p)
    p.add_argument("--storage", default="local", metavar="STORAGE", help=STORAGE_HELP)
    p.set_defaults(func=cmd_tour)

    p = sub.add_parser("shards", help="pretokenize the corpus, one shard per piece, on an "
                       "engine (serial, threads, processes, dask)",
                       description="Trains the word vocabulary, cuts the corpus into pieces "
                       "and writes one token shard per piece on the chosen engine; the shard "
                       "folder appears only when every piece succeeded.")
    add_corpus_args(p)
    p.add_argument("--parts", type=int, default=8,
                   help="pieces to cut one JSONL file into (a folder of .jsonl files: one each)")
    p.add_argument("--engine", default="processes",
                   help="serial, threads, processes or dask (default: processes)")
    p.add_argument("--workers", type=int, default=None, help="default: the number of cores")
    p.add_argument("--scheduler", help="a running dask scheduler's address, e.g. "
                   "tcp://host:8786 (default: a new cluster on this machine)")
    p.add_argument("--codec", default=None, help="compress the shards in blocks, e.g. zstd:3")
    p.add_argument("--vocab-size", type=int, default=32_768, help="word vocabulary size")
    p.add_argument("--out", help="folder for the shards (default: data/shards-<name>-<engine>)")
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("bench", help="print measured ratios, side by side in one run",
                       description="Measures pairs of techniques side by side in one run and "
                       "prints their ratios and the cost models' errors (2-3 min at small).")
    add_corpus_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="run the tour and write an HTML page with figures",
                       description="Runs the tour (see: iokit tour --help) and writes "
                       "report.html with its figures as PNG files and the machine it ran on.")
    add_corpus_args(p)
    p.add_argument("--storage", default="local", metavar="STORAGE", help=STORAGE_HELP)
    p.add_argument("--out", default="reports",
                   help="folder for report.html and its figures (default: reports)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IokitError as exc:
        print(f"iokit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iokit: interrupted; no partial output was kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
