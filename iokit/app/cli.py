"""The ``iokit`` command: check the machine, make data, run the whole tour headless, benchmark.

``iokit check`` says whether this machine is ready; ``iokit data [--scale S]`` makes the
corpus; ``iokit tour`` runs every stage and prints a table;
``iokit shards`` pretokenizes it, one shard per piece, on a local pool, a dask cluster or
Spark;
``iokit summarize`` summarises every document with a small model on worker processes
(resumable); ``iokit bench`` prints measured ratios; ``iokit report [--out DIR]`` runs the tour
and writes an HTML report with its figures and the machine description; ``iokit probe
script.py:make_loader`` runs a training step over any loader and says whether it is
input-bound, why, and what to do. Errors in the input or settings print one line on stderr and
exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from iokit.app.bench import run_bench
from iokit.app.check import run_check, verdict
from iokit.app.report import write_report
from iokit.app.tour import format_table, run_tour
from iokit.atomic import check_writable, output_folder
from iokit.batch import (
    DEFAULT_DOCS_PER_TASK,
    LOADS,
    MODEL_NAME,
    ensure_model,
    finished_pieces,
    summarize_corpus,
    work_folder,
)
from iokit.corpus import (
    CorpusWarning,
    corpus_path,
    default_data_dir,
    ensure_corpus,
    ingest,
    iter_documents,
    resolve_scale,
)
from iokit.engines import ENGINES, connect_scheduler, pretokenize_pieces
from iokit.errors import IokitError, ParameterError, StopSignal, check_choice, check_positive
from iokit.parallel import capped_note, worker_count
from iokit.progress import progress_enabled
from iokit.shards import UINT16_IDS, choose_dtype, pretokenize
from iokit.spark import check_java, check_master, require_spark
from iokit.split import plan_pieces
from iokit.storage import PRESETS, open_storage
from iokit.summarize import load_summarizer
from iokit.tokenize import (
    DEFAULT_VOCAB_SIZES,
    TOKENIZERS,
    TokenizerWarning,
    WordTokenizer,
    require_tokenizers,
    train_tokenizer,
)
from iokit.tokenize_spacy import check_language

SCHEDULER_TIMEOUT_S = 10.0


def _data_folder_writable(scale) -> None:
    """Say now, before any work, if the corpus must be made and its folder is not writable."""
    if not corpus_path(scale).is_file():
        check_writable(default_data_dir(), "the data folder ($IOKIT_DATA)")


def _corpus(args) -> Path:
    """The corpus the command runs on, opened (and converted once, if need be) with what was
    read said in a few lines."""
    if args.corpus:
        summary = ingest(args.corpus, text_field=args.text_field,
                         progress=progress_enabled(), warn=False)  # the summary lists them
        if summary.converted:
            print(summary, flush=True)
        return Path(summary.path)
    _data_folder_writable(args.scale)
    return ensure_corpus(args.scale)


def _check_tokenizer(args) -> tuple[str, int]:
    """The tokenizer kind and vocabulary size asked for, checked before any work."""
    kind = check_choice("tokenizer", args.tokenizer, TOKENIZERS)
    size = DEFAULT_VOCAB_SIZES[kind] if args.vocab_size is None else check_positive(
        "--vocab-size", args.vocab_size, hint="Use e.g. 32768 (word, spacy) or 8192 (bpe).")
    lang = getattr(args, "lang", None)
    if lang is not None and kind != "spacy":
        raise ParameterError("--lang is the language of spaCy's tokenizer; use it with "
                             "--tokenizer spacy.")
    if kind == "bpe":
        require_tokenizers()
    if kind == "spacy":
        check_language(lang or "en")  # spaCy installed, and a language it can tokenize
    return kind, size


def _tokenizer_options(args) -> dict:
    """What ``train_tokenizer`` gets beyond the kind and size (spaCy's language)."""
    lang = getattr(args, "lang", None)
    return {"lang": lang} if lang is not None else {}


def _token_width(vocab_size: int) -> str:
    """The token width a vocabulary gets, said aloud."""
    dtype = choose_dtype(vocab_size)
    limit = f"{'≤' if dtype.itemsize == 2 else '>'} {UINT16_IDS:,}"
    return f"vocabulary {vocab_size:,} IDs {limit}: tokens stored as {dtype.name}"


def cmd_data(args) -> int:
    _data_folder_writable(args.scale)
    existed = corpus_path(args.scale).is_file()
    path = ensure_corpus(args.scale)
    size = path.stat().st_size
    print(f"{path} ({size / 1e6:,.1f} MB, scale {resolve_scale(args.scale)}"
          f"{', already there' if existed else ''})")
    return 0


def cmd_tour(args) -> int:
    open_storage(check_storage(args.storage))  # check the name before any work
    kind, size = _check_tokenizer(args)
    corpus = _corpus(args)
    print(f"corpus: {corpus} ({corpus.stat().st_size / 1e6:,.1f} MB), storage: {args.storage}")
    tokenizer = {"tokenizer": kind, "vocab_size": size}
    if kind != "word" or args.vocab_size is not None:
        print(f"{kind} tokenizer; {_token_width(size)}", flush=True)

    if progress_enabled():  # progress bars while the stages run
        rows, _ = run_tour(corpus, storage=args.storage, progress=True, **tokenizer)
    else:
        rows, _ = run_tour(corpus, storage=args.storage, **tokenizer,
                           on_row=lambda r: print(f"  done: {r.stage} ({r.seconds:.2f} s)",
                                                  flush=True))
    print()
    print(format_table(rows))
    return 0


def cmd_shards(args) -> int:
    check_choice("engine", args.engine, ENGINES)  # settings fail before any work
    check_positive("parts", args.parts, hint="It is the number of pieces; use e.g. 8.")
    kind, size = _check_tokenizer(args)
    asked = (os.cpu_count() or 1) if args.workers is None else check_positive(
        "--workers", args.workers, hint="Leave it out to use every core.")
    if args.scheduler and args.engine != "dask":
        raise ParameterError("--scheduler is the address of a dask scheduler; use it with "
                             "--engine dask.")
    if args.master and args.engine != "spark":
        raise ParameterError("--master is the address of a Spark master; use it with "
                             "--engine spark.")
    if args.engine == "spark":  # the address, pyspark and Java: said before any work
        check_master(args.master or "local[1]", SCHEDULER_TIMEOUT_S)
        require_spark()
        check_java()
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
        return _shards_into(out, args, pieces, field, asked, kind, size)


def _shards_into(out: Path, args, pieces, field: str, asked: int, kind: str, size: int) -> int:
    client = None
    if args.scheduler:
        client = connect_scheduler(args.scheduler, SCHEDULER_TIMEOUT_S)
    elif args.engine != "serial" and not args.master:
        used = worker_count(asked, len(pieces))
        if note := capped_note(asked, used, len(pieces)):
            print(note, flush=True)
        asked = used
    try:
        print(f"{len(pieces)} piece(s) of {sum(p.nbytes for p in pieces) / 1e6:,.1f} MB; "
              f"training the {kind} vocabulary ({size:,} IDs)", flush=True)
        files = dict.fromkeys(piece.path for piece in pieces)  # each file once, in order
        docs = (d.text for path in files for d in iter_documents(path, text_field=field))
        tok = train_tokenizer(kind, docs, size, progress=progress_enabled(),
                              **_tokenizer_options(args))
        print(_token_width(tok.vocab_size), flush=True)
        run = pretokenize_pieces(pieces, tok, out, engine=args.engine,
                                 workers=asked, client=client, master=args.master,
                                 codec=args.codec, text_field=field,
                                 progress=progress_enabled())
    finally:
        if client is not None:
            client.close()
    print(run)
    print(f"shards: {out}")
    return 0


def cmd_summarize(args) -> int:
    workers = (os.cpu_count() or 1) if args.workers is None else check_positive(
        "--workers", args.workers, hint="Leave it out to use every core.")
    docs = check_positive("--docs-per-task", args.docs_per_task, hint="Use e.g. 16.")
    loads = check_choice("--loads", args.loads, LOADS)
    out = Path(args.out)
    check_writable(out, "the output folder")  # said before any work
    corpus = _corpus(args)
    model_path = Path(args.model) if args.model else out / MODEL_NAME
    with output_folder(out, "the output folder"):
        if model_path.is_file():
            print(f"model: {model_path} (already there)", flush=True)
        else:
            print(f"training the summarizer on {corpus.name}", flush=True)
        ensure_model(corpus, model_path, text_field="text", progress=progress_enabled())
        print(load_summarizer(model_path), flush=True)
        try:
            run = summarize_corpus(corpus, model_path, out, workers=workers, loads=loads,
                                   docs_per_task=docs, progress=progress_enabled())
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the finished pieces stay
            kept = len(finished_pieces(work_folder(out)))
            how = "terminated (SIGTERM)" if isinstance(stop, StopSignal) else "interrupted"
            print(f"iokit: {how}; no summaries.jsonl was written; {kept} finished piece(s) "
                  f"kept in {work_folder(out)}: run the same command again to resume.",
                  file=sys.stderr, flush=True)
            return 128 + signal.SIGTERM if isinstance(stop, StopSignal) else 130
    if run.note:
        print(run.note)
    print(run)
    print(f"summaries: {run.output} (sha256 {run.sha256[:16]}…)")
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


def cmd_probe(args) -> int:
    from iokit.probe import load_target, probe, simulated_step

    step = simulated_step(args.step_ms / 1e3, args.gil_share)
    steps = check_positive("--steps", args.steps, hint="Use e.g. 200.")
    if args.target:
        batches = load_target(args.target)
        print(probe(batches, step, steps=steps, warmup=args.warmup, what=args.target))
        return 0
    # no target: the kit's own loader, on the scale's corpus pretokenized in a scratch folder
    import tempfile

    from iokit.loader import open_loader

    open_storage(check_storage(args.storage))
    corpus = _corpus(args)
    with tempfile.TemporaryDirectory(prefix="iokit-probe-") as tmp:
        folder = Path(tmp) / "shards"
        pretokenize(corpus, WordTokenizer.train((d.text for d in iter_documents(corpus)),
                                                progress=False), folder)
        with open_loader(folder, storage=args.storage, workers=args.workers,
                         prefetch=args.prefetch, limit=steps + args.warmup) as loader:
            print(probe(loader, step, steps=steps, warmup=args.warmup,
                        what=f"the kit's loader on {args.storage} ({args.workers} workers, "
                        f"prefetch {args.prefetch})"))
    return 0


PROBE_HELP = """\
Runs a training step over any iterable of batches and reports: batches/s delivered, time
waiting for data, the busy fraction, whether the run is input-bound and by how much, the CPU
the loader used (this process and its worker processes), the per-stage spans where the loader
is the kit's own; then the bottleneck the decision guide finds, the technique that removes it
(and the notebook that measures it) and the pipeline model's forecast.

TARGET is path/to/script.py:name, where name is a function returning an iterable of batches
(a generator, a PyTorch DataLoader, a tf.data or Hugging Face iterator) or the iterable
itself. The script is imported (code under if __name__ == "__main__" does not run) and needs
no change. Without TARGET, the kit's own loader is probed on the scale's corpus."""


def cmd_report(args) -> int:
    open_storage(check_storage(args.storage))
    check_writable(args.out, "the report folder")
    kind, vocab_size = _check_tokenizer(args)
    corpus = _corpus(args)
    size = corpus.stat().st_size / 1e6
    print(f"corpus: {corpus} ({size:,.1f} MB), storage: {args.storage}")
    rows, extra = run_tour(corpus, storage=args.storage, progress=progress_enabled(),
                           tokenizer=kind, vocab_size=vocab_size)
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
Runs every stage of the kit on one corpus, in this order, and prints one table:

  the naive loop (one read call per byte, one write per document), then chunked reads and
  batched writes; an epoch from text against one from pretokenized shards (word vocabulary
  to .bin/.idx); the shards compressed in zstd blocks and an epoch from them; the loops'
  work (nltk tokens written as text) and pretokenizing with one process per core; 16 threads
  reading a simulated object store; the same pretokenizing on a dask cluster (with the dask
  extra); and the pipeline, from a naive loader to background workers, prefetching and
  compressed blocks, feeding a simulated training loop.

The table: each row's time, its rate (MB/s, or tokens/s for the pipeline) and how it compares
with a baseline doing the same work, named in its note: "N× faster", or "N× the time" when it
is slower. The baselines: the naive loop for the chunked loop, the chunked loop for the loops'
work on several processes, the epoch from text for the rows that give token IDs, one process
for the parallel pretokenizing, one thread on the same store for the threaded reads, the
uncompressed shards for the compressed ones, the naive loader for the pipeline.

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

    def add_tokenizer_args(p, what: str):
        p.add_argument("--tokenizer", default="word",
                       help=f"word, bpe or spacy: the tokenizer {what} (default: word; bpe "
                       "suits scripts without spaces and has no unknown tokens; spacy, the "
                       "'spacy' extra, is spaCy's rule-based tokenizer)")
        p.add_argument("--vocab-size", type=int, default=None,
                       help="vocabulary size (default: 32768 for word and spacy, 8192 for "
                       "bpe; above 65536 tokens are stored as uint32)")

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
    add_tokenizer_args(p, "the tour's epochs and shards use")
    p.set_defaults(func=cmd_tour)

    p = sub.add_parser("shards", help="pretokenize the corpus, one shard per piece, on an "
                       "engine (serial, threads, processes, dask, spark)",
                       description="Trains the vocabulary (--tokenizer), cuts the corpus into "
                       "pieces and writes one token shard per piece on the chosen engine; the "
                       "shard folder appears only when every piece succeeded.")
    add_corpus_args(p)
    p.add_argument("--parts", type=int, default=8,
                   help="pieces to cut one JSONL file into (a folder of .jsonl files: one each)")
    p.add_argument("--engine", default="processes",
                   help="serial, threads, processes, dask or spark (default: processes)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker count, a whole number >= 1 (0 is an error, as in the API); "
                   "default: the number of cores. Never more than the pieces, nor than "
                   "8 per core (at least 32): a cap is said when it applies")
    p.add_argument("--scheduler", help="a running dask scheduler's address, e.g. "
                   "tcp://host:8786 (default: a new cluster on this machine)")
    p.add_argument("--master", help="a Spark master's address, e.g. spark://host:7077 "
                   "(default: local[WORKERS], Spark on this machine)")
    p.add_argument("--codec", default=None, help="compress the shards in blocks, e.g. zstd:3")
    add_tokenizer_args(p, "to train on the corpus")
    p.add_argument("--lang", default=None,
                   help="with --tokenizer spacy: spaCy's language code (default: en; zh cuts "
                   "Chinese into characters)")
    p.add_argument("--out", help="folder for the shards (default: data/shards-<name>-<engine>)")
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("summarize", help="summarise every document with a small extractive "
                       "model, on worker processes (resumable)",
                       description="Reads the corpus, summarises each document with an "
                       "extractive model (its best sentences by term statistics, trained on the "
                       "corpus once and saved beside the output) on worker processes, and "
                       "writes OUT/summaries.jsonl ({\"id\": ..., \"summary\": ...} per "
                       "document, in the corpus's order), atomically. Killed midway, it keeps "
                       "the finished pieces: the same command again does only the rest, and "
                       "the output is the same bytes.")
    add_corpus_args(p)
    p.add_argument("--out", required=True, help="output folder (summaries.jsonl, the model, "
                   "and while running, the finished pieces)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes, a whole number >= 1; default: the number of cores")
    p.add_argument("--model", help="the model file (default: OUT/summarizer.model); trained "
                   "on the corpus and saved there when missing")
    p.add_argument("--docs-per-task", type=int, default=DEFAULT_DOCS_PER_TASK,
                   help=f"documents per task (default: {DEFAULT_DOCS_PER_TASK}); each task's "
                   "output is one piece of the resumable run")
    p.add_argument("--loads", default="worker",
                   help="where the model is loaded: worker (once per worker process, the "
                   "default), task (in every task: slow, for comparison) or fork (once in "
                   "this process, inherited by the workers)")
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("bench", help="print measured ratios, side by side in one run",
                       description="Measures pairs of techniques side by side in one run and "
                       "prints their ratios and the cost models' errors (about 6 min at small on "
                       "2 quiet cores). "
                       "With the s3 extra, the request model and threaded reads are also "
                       "checked on a real S3 endpoint: the kit's loopback server, or yours "
                       "when AWS_ENDPOINT_URL (or IOKIT_S3_BUCKET) and the AWS_* credentials "
                       "are set.")
    add_corpus_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("probe", help="is a loader keeping the training loop busy? why not, "
                       "and what would help", description=PROBE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="path/to/script.py:make_loader (default: the "
                   "kit's own loader)")
    p.add_argument("--step-ms", type=float, default=5.0,
                   help="the simulated training step, in milliseconds (default: 5)")
    p.add_argument("--gil-share", type=float, default=0.0,
                   help="share of the step that is pure Python holding the GIL, 0 to 1 "
                   "(default: 0, a step on the accelerator)")
    p.add_argument("--steps", type=int, default=200, help="steps to run (default: 200)")
    p.add_argument("--warmup", type=int, default=2,
                   help="batches taken first and not counted (default: 2)")
    add_corpus_args(p)
    p.add_argument("--storage", default="object-store", metavar="STORAGE",
                   help="without TARGET: where the kit's loader reads from (default: "
                   "object-store)")
    p.add_argument("--workers", type=int, default=8, help="without TARGET: loader workers")
    p.add_argument("--prefetch", type=int, default=8, help="without TARGET: prefetch depth")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("report", help="run the tour and write an HTML page with figures",
                       description="Runs the tour (see: iokit tour --help) and writes "
                       "report.html with its figures as PNG files and the machine it ran on.")
    add_corpus_args(p)
    p.add_argument("--storage", default="local", metavar="STORAGE", help=STORAGE_HELP)
    p.add_argument("--out", default="reports",
                   help="folder for report.html and its figures (default: reports)")
    add_tokenizer_args(p, "the tour's epochs and shards use")
    p.set_defaults(func=cmd_report)
    return parser


def _kit_warnings_as_lines(show):
    """A ``warnings.showwarning`` that prints the kit's warnings as one line each (others go
    to ``show``, as before)."""
    def show_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (CorpusWarning, TokenizerWarning)):
            print(f"iokit: warning: {message}", file=sys.stderr, flush=True)
        else:
            show(message, category, filename, lineno, file, line)
    return show_warning


def _stop(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough: clean up undisturbed
    raise StopSignal


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _kit_warnings_as_lines(shown)
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
        warnings.showwarning = shown
        if in_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
