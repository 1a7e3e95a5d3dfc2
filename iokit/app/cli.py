"""The ``iokit`` command: make data, run the whole tour headless, benchmark.

``iokit data [--scale S]`` makes the corpus; ``iokit tour`` runs every stage and prints a table;
``iokit shards`` pretokenizes it, one shard per piece, on a local pool or a dask cluster;
``iokit bench`` prints measured ratios; ``iokit report [--out DIR]`` runs the tour and writes an
HTML report with its figures and the machine description. Errors in the input or settings print
one line on stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from iokit.app.bench import run_bench
from iokit.app.report import write_report
from iokit.app.tour import format_table, run_tour
from iokit.atomic import check_writable, output_folder
from iokit.corpus import (
    corpus_path,
    default_data_dir,
    ensure_corpus,
    iter_documents,
    resolve_scale,
    standard_corpus,
)
from iokit.engines import ENGINES, connect_scheduler, pretokenize_pieces
from iokit.errors import IokitError, ParameterError, StopSignal, check_choice, check_positive
from iokit.parallel import capped_note, worker_count
from iokit.progress import progress_enabled
from iokit.split import plan_pieces
from iokit.storage import open_storage
from iokit.tokenize import WordTokenizer

SCHEDULER_TIMEOUT_S = 10.0


def _data_folder_writable(scale) -> None:
    """Say now, before any work, if the corpus must be made and its folder is not writable."""
    if not corpus_path(scale).is_file():
        check_writable(default_data_dir(), "the data folder ($IOKIT_DATA)")


def _corpus(args) -> Path:
    if not args.corpus:
        _data_folder_writable(args.scale)
    if args.corpus:
        path = standard_corpus(args.corpus, text_field=args.text_field)
        if path != Path(args.corpus):
            print(f"converted {args.corpus} to {path} (one JSON document per line)")
        return path
    return ensure_corpus(args.scale)


def cmd_data(args) -> int:
    _data_folder_writable(args.scale)
    existed = corpus_path(args.scale).is_file()
    path = ensure_corpus(args.scale)
    size = path.stat().st_size
    print(f"{path} ({size / 1e6:,.1f} MB, scale {resolve_scale(args.scale)}"
          f"{', already there' if existed else ''})")
    return 0


def cmd_tour(args) -> int:
    open_storage(args.storage)  # check the preset name before any work
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
    asked = (os.cpu_count() or 1) if args.workers is None else check_positive(
        "--workers", args.workers, hint="Leave it out to use every core.")
    if args.scheduler and args.engine != "dask":
        raise ParameterError("--scheduler is the address of a dask scheduler; use it with "
                             "--engine dask.")
    # where the shards go must be writable before any work (the default is in the data folder)
    check_writable(args.out or default_data_dir(), "the shard folder")
    folder = Path(args.corpus) if args.corpus else None
    if folder is not None and folder.is_dir() and any(folder.glob("*.jsonl")):
        pieces, field = plan_pieces(folder), args.text_field  # one piece per file
        name = folder.name
    else:
        corpus = _corpus(args)
        pieces, field, name = plan_pieces(corpus, args.parts), "text", corpus.stem
    out = Path(args.out) if args.out else default_data_dir() / f"shards-{name}-{args.engine}"
    # the output's single-writer lock for the whole run: a second run into it stops here
    with output_folder(out, "the shard folder"):
        return _shards_into(out, args, pieces, field, asked)


def _shards_into(out: Path, args, pieces, field: str, asked: int) -> int:
    client = None
    if args.scheduler:
        client = connect_scheduler(args.scheduler, SCHEDULER_TIMEOUT_S)
    elif args.engine != "serial":
        used = worker_count(asked, len(pieces))
        if note := capped_note(asked, used, len(pieces)):
            print(note, flush=True)
        asked = used
    try:
        print(f"{len(pieces)} piece(s) of {sum(p.nbytes for p in pieces) / 1e6:,.1f} MB; "
              f"training the word vocabulary ({args.vocab_size:,} IDs)", flush=True)
        files = dict.fromkeys(piece.path for piece in pieces)  # each file once, in order
        docs = (d.text for path in files for d in iter_documents(path, text_field=field))
        tok = WordTokenizer.train(docs, vocab_size=args.vocab_size)
        run = pretokenize_pieces(pieces, tok, out, engine=args.engine,
                                 workers=asked, client=client,
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
    open_storage(args.storage)
    check_writable(args.out, "the report folder")
    corpus = _corpus(args)
    size = corpus.stat().st_size / 1e6
    print(f"corpus: {corpus} ({size:,.1f} MB), storage: {args.storage}")
    rows, extra = run_tour(corpus, storage=args.storage, progress=progress_enabled())
    print(format_table(rows))
    path = write_report(rows, extra, args.out, about=f"corpus {corpus.name} ({size:,.1f} MB), "
                        f"storage {args.storage}")
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iokit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_corpus_args(p):
        p.add_argument("--scale", help="tiny, small or large (default: $IOKIT_SCALE or small)")
        p.add_argument("--corpus", help="your own JSONL file or folder of .txt files")
        p.add_argument("--text-field", default="text", help="JSONL field holding the text")

    p = sub.add_parser("data", help="make the generated corpus")
    p.add_argument("--scale", help="tiny, small or large (default: $IOKIT_SCALE or small)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("tour", help="run every stage and print the table")
    add_corpus_args(p)
    p.add_argument("--storage", default="local",
                   help="local, or a simulated preset: local-nvme, hdd, network-fs, object-store")
    p.set_defaults(func=cmd_tour)

    p = sub.add_parser("shards", help="pretokenize the corpus, one shard per piece, on an "
                       "engine (serial, threads, processes, dask)")
    add_corpus_args(p)
    p.add_argument("--parts", type=int, default=8,
                   help="pieces to cut one JSONL file into (a folder of .jsonl files: one each)")
    p.add_argument("--engine", default="processes",
                   help="serial, threads, processes or dask (default: processes)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker count, a whole number >= 1 (0 is an error, as in the API); "
                   "default: the number of cores. Never more than the pieces, nor than "
                   "8 per core (at least 32): a cap is said when it applies")
    p.add_argument("--scheduler", help="a running dask scheduler's address, e.g. "
                   "tcp://host:8786 (default: a LocalCluster on this machine)")
    p.add_argument("--codec", default=None, help="compress the shards in blocks, e.g. zstd:3")
    p.add_argument("--vocab-size", type=int, default=32_768, help="word vocabulary size")
    p.add_argument("--out", help="folder for the shards (default: data/shards-<name>-<engine>)")
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("bench", help="print measured ratios, side by side in one run")
    add_corpus_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="run the tour and write an HTML report with figures")
    add_corpus_args(p)
    p.add_argument("--storage", default="local",
                   help="local, or a simulated preset: local-nvme, hdd, network-fs, object-store")
    p.add_argument("--out", default="reports", help="folder for report.html and its figures")
    p.set_defaults(func=cmd_report)
    return parser


def _stop(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough: clean up undisturbed
    raise StopSignal


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM stops the run as Ctrl-C does: workers stopped, staging and temporary files
    # removed, one line said (only the main thread may set a handler; tests call main too).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if in_main else None
    try:
        return args.func(args)
    except IokitError as exc:
        print(f"iokit: error: {exc}", file=sys.stderr)
        return 2
    except StopSignal:
        print("iokit: terminated (SIGTERM); no partial output was kept.", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("iokit: interrupted; no partial output was kept.", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
