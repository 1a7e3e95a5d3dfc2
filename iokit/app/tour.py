"""The whole story in one run: every stage from the naive loop to the fastest, side by side.

Each stage is a function ``stage(ctx) -> Row`` listed in :data:`STAGES`; later techniques add
their stage there. Each row is compared with a baseline doing the same work ("N× faster" or
"N× the time"), and its note names it: the naive loop for the chunked loop, the chunked loop
for the loops' work on several processes (nltk tokens written as text), the text epoch for the
rows that produce an epoch of token IDs, one process for the parallel pretokenizing, one thread
on the same store for the threaded reads, the uncompressed rewrite for the compressing, the
memmap epoch for the compressed epoch, the naive loader for the pipeline.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iokit.blocks import DEFAULT_BLOCK_BYTES
from iokit.corpus import iter_documents, open_corpus
from iokit.costs import EpochCostModel, ThreadedReadModel
from iokit.engines import close_cluster, pretokenize_pieces, shard_checksums, start_local_cluster
from iokit.errors import CorpusError
from iokit.lab.compare import Comparison, compare, format_error, format_speedup, format_value
from iokit.lab.epochs import raw_epoch, shard_epoch
from iokit.lab.loops import chunked_loop, naive_loop
from iokit.lab.scaling import parallel_token_file, read_point
from iokit.lab.training import pipeline_walk, walk_steps
from iokit.preprocess import choose_task_bytes, parallel_pretokenize, rewrite_shards
from iokit.progress import progress_bar
from iokit.shards import open_shards, pretokenize
from iokit.split import document_ends, plan_pieces
from iokit.storage import SimulatedStore
from iokit.timing import MB, measure, stopwatch
from iokit.tokenize import fast_word_tokenize, quiet_fork, train_tokenizer


@dataclass
class Context:
    """What every stage gets: the corpus, a scratch folder, and the storage preset."""

    corpus: Path
    workdir: Path
    storage: str = "local"
    extra: dict = field(default_factory=dict)  # what one stage leaves for a later one
    tokenizer: str = "word"  # the kind the epochs and shards use: word or bpe
    vocab_size: int | None = None  # None: the kind's default


@dataclass
class Row:
    """One line of the tour's table."""

    stage: str
    seconds: float
    amount: float  # bytes of corpus text (or tokens, with unit "tok/s") handled
    unit: str = "MB/s"
    note: str = ""
    speedup: float | None = None  # over its own baseline (the note names it); None: over the
    # first row (the naive loop)
    baseline: bool = False  # the row is a baseline for others (its ratio column says so)
    comparison: Comparison | None = None  # the cost model's prediction against the measurement

    @property
    def rate(self) -> float:
        scale = MB if self.unit == "MB/s" else 1.0
        return self.amount / self.seconds / scale if self.seconds > 0 else float("inf")


def stage_naive(ctx: Context) -> Row:
    r = naive_loop(ctx.corpus, ctx.workdir / "tokens-naive.txt")
    return Row("naive loop (1 read per byte, 1 write per doc)", r.seconds, r.bytes_in,
               baseline=True, note=f"read {r.stage_seconds['read']:.2f} s, process "
                    f"{r.stage_seconds['process']:.2f} s, write {r.stage_seconds['write']:.2f} s")


def stage_chunked(ctx: Context) -> Row:
    r = chunked_loop(ctx.corpus, ctx.workdir / "tokens-chunked.txt", chunk_size=1 << 20)
    ctx.extra["chunked_s"] = r.seconds
    same = (ctx.workdir / "tokens-chunked.txt").read_bytes() == \
        (ctx.workdir / "tokens-naive.txt").read_bytes()
    return Row("chunked reads + batched writes (1 MiB)", r.seconds, r.bytes_in,
               note="output identical to naive" if same else "OUTPUT DIFFERS from naive")


STAGES: list[Callable[[Context], Row]] = [stage_naive, stage_chunked]


def model_note(c: Comparison) -> str:
    """The cost model against the measurement, as the notebooks' comparison tables put it:
    "model 507.0 MB/s (+4 %; within 10 %: good)"."""
    return f"model {format_value(c.model, c.unit)} ({format_error(c.model_error)}; " \
           f"{c.model_verdict})"


def speedup_of(row: Row, rows: list[Row]) -> float:
    """How much faster ``row`` is than its baseline: its own (named in its note) or, without
    one, the first row."""
    if row.speedup is not None:
        return row.speedup
    return rows[0].seconds / row.seconds if rows and row.seconds > 0 else 1.0


def ratio_words(row: Row, rows: list[Row]) -> str:
    """The row against its baseline in the kit's words: "5.27× faster", "1.18× the time", or
    "baseline" for the first row and the rows others are compared with."""
    if row.baseline or (rows and row is rows[0] and row.speedup is None):
        return "baseline"
    return format_speedup(speedup_of(row, rows))


def format_table(rows: list[Row]) -> str:
    """The rows as a plain-text table with each row against its baseline (the first row
    unless the row has its own, named in its note): "N× faster" or "N× the time"."""
    lines = [f"{'stage':<48} {'time':>9} {'rate':>14} {'vs baseline':>15}  note"]
    for r in rows:
        lines.append(f"{r.stage:<48} {r.seconds:>8.2f}s {r.rate:>9,.1f} {r.unit:<4} "
                     f"{ratio_words(r, rows):>15}  {r.note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- pretokenized shards


def _word_tokenizer(ctx: Context):
    """The tokenizer trained on the corpus (word-level unless the tour was given another
    kind), made once per tour."""
    if "word_tokenizer" not in ctx.extra:
        ctx.extra["word_tokenizer"] = train_tokenizer(
            ctx.tokenizer, (d.text for d in iter_documents(ctx.corpus)), ctx.vocab_size,
            progress=False)
    return ctx.extra["word_tokenizer"]


def stage_raw_epoch(ctx: Context) -> Row:
    r = raw_epoch(ctx.corpus, _word_tokenizer(ctx))
    ctx.extra["raw_epoch_s"] = r.seconds
    return Row("epoch from text (read + tokenize to IDs)", r.seconds, r.text_bytes,
               speedup=1.0, baseline=True,
               note=f"{r.tokens:,} tokens; tokenize {r.stage_seconds.get('tokenize', 0):.2f} "
                    "s; the baseline of the rows below that give token IDs (other work than "
                    "the loops above: IDs, nothing written)")


def stage_pretokenize(ctx: Context) -> Row:
    with stopwatch() as sw:
        tok = _word_tokenizer(ctx)  # built already if the text epoch ran; part of the cost if not
        folder = ctx.workdir / "shards-word"
        pretokenize(ctx.corpus, tok, folder)
    seconds = sw.seconds
    ctx.extra["shards"] = folder
    ctx.extra["preprocess_s"] = seconds
    with open_shards(folder) as s:
        note = (f"once: {s.n_tokens:,} {s.dtype.name} tokens, {s.nbytes / MB:,.1f} MB "
                f"in {len(s.shards)} shard(s)")
    speedup = None
    if "raw_epoch_s" in ctx.extra:
        speedup = ctx.extra["raw_epoch_s"] / seconds
        note += "; baseline: the text epoch (the same tokenizing, plus writing shards)"
    return Row(f"pretokenize once ({ctx.tokenizer} vocab → .bin/.idx)", seconds,
               ctx.corpus.stat().st_size, note=note, speedup=speedup)


def stage_shard_epoch(ctx: Context) -> Row:
    if "shards" not in ctx.extra:
        stage_pretokenize(ctx)
    shard_epoch(ctx.extra["shards"], ctx.corpus.stat().st_size)  # warm-up: first-use costs
    r = shard_epoch(ctx.extra["shards"], ctx.corpus.stat().st_size)
    note = f"{r.tokens / r.seconds / 1e6:,.0f} M tokens/s"
    ctx.extra["shard_epoch_s"] = r.seconds
    speedup = None
    if "raw_epoch_s" in ctx.extra:
        m = EpochCostModel(ctx.extra["preprocess_s"], ctx.extra["raw_epoch_s"], r.seconds)
        speedup = ctx.extra["raw_epoch_s"] / r.seconds
        note += (f"; baseline: the text epoch (the same epoch of IDs); pays after "
                 f"{m.epochs_to_pay} whole epoch(s) (break-even {m.break_even:.2f})")
    return Row("epoch from pretokenized shards (memmap)", r.seconds, r.text_bytes, note=note,
               speedup=speedup)


STAGES.extend([stage_raw_epoch, stage_pretokenize, stage_shard_epoch])


# --------------------------------------------------------------------------- compressed shards


def stage_compress_shards(ctx: Context) -> Row:
    """Rewrite the pretokenized shards block-compressed with zstd:3 (256 KiB blocks)."""
    if "shards" not in ctx.extra:
        stage_pretokenize(ctx)
    folder = ctx.workdir / "shards-word-zstd3"
    with stopwatch() as sw:
        rewrite_shards(ctx.extra["shards"], folder, codec="zstd:3")
    seconds = sw.seconds
    with stopwatch() as plain:  # the same rewrite without compressing: its baseline
        rewrite_shards(ctx.extra["shards"], ctx.workdir / "shards-word-copy", codec=None)
    with open_shards(ctx.extra["shards"]) as raw:
        raw_bytes = raw.nbytes
    ctx.extra["compressed_shards"] = folder
    with open_shards(folder) as z:
        note = (f"once: {raw_bytes / MB:,.1f} MB of tokens → {z.nbytes / MB:,.1f} MB "
                f"(ratio {raw_bytes / z.nbytes:.2f}), {DEFAULT_BLOCK_BYTES >> 10} KiB blocks; "
                f"baseline: rewriting the shards uncompressed ({plain.seconds:.2f} s)")
    return Row("compress shards (zstd:3 blocks)", seconds, raw_bytes, note=note,
               speedup=plain.seconds / seconds)


def stage_compressed_epoch(ctx: Context) -> Row:
    """An epoch (every token in order) from the block-compressed shards."""
    if "compressed_shards" not in ctx.extra:
        stage_compress_shards(ctx)
    folder = ctx.extra["compressed_shards"]
    size = ctx.corpus.stat().st_size
    runs = []
    t = measure(lambda: runs.append(shard_epoch(folder, size)), repeat=5, warmup=1)
    r = runs[-1]
    note = f"{r.tokens / t.median / 1e6:,.0f} M tokens/s"
    speedup = None
    if "shards" in ctx.extra:
        raw = measure(lambda: shard_epoch(ctx.extra["shards"], size), repeat=5, warmup=1)
        speedup = raw.median / t.median
        note += "; baseline: the memmap epoch (warm cache; the same tokens)"
    r.seconds = t.median
    return Row("epoch from compressed shards (decompress)", r.seconds, r.text_bytes, note=note,
               speedup=speedup)


STAGES.extend([stage_compress_shards, stage_compressed_epoch])


def stage_parallel_tokenize(ctx: Context) -> Row:
    """The loops' work (nltk tokens written as text, 1 MiB of documents per task) on one
    process per core; its baseline is the chunked loop, the same work in one process."""
    workers = os.cpu_count() or 1
    out = ctx.workdir / "tokens-parallel.txt"
    with quiet_fork(), stopwatch() as sw:
        bytes_in, _ = parallel_token_file(ctx.corpus, out, workers=workers, chunk_size=1,
                                          span_bytes=1 << 20)
    seconds = sw.seconds
    naive = ctx.workdir / "tokens-naive.txt"
    note = f"{workers} processes, 1 MiB of documents per task, pool start-up included"
    speedup = None
    if naive.exists():
        same = out.read_bytes() == naive.read_bytes()
        note += "; output identical to naive" if same else "; OUTPUT DIFFERS from naive"
    if "chunked_s" in ctx.extra:
        speedup = ctx.extra["chunked_s"] / seconds
        note += "; baseline: the chunked loop (the same work in 1 process)"
    return Row(f"the loops' work, {workers} processes (nltk → text)", seconds, bytes_in,
               note=note, speedup=speedup)


def stage_threaded_reads(ctx: Context) -> Row:
    threads, request = 16, 1 << 20
    store = SimulatedStore("object-store")
    p = read_point(store, ctx.corpus, threads, request, 8 * threads, repeat=1)
    one = read_point(store, ctx.corpus, 1, request, 8, repeat=1)  # the same store, one stream
    m = ThreadedReadModel.from_preset("object-store")
    c = compare("threaded reads", p.mb_per_s, model=float(m.throughput(threads, request)) / MB,
                unit="MB/s")
    # Its baseline is one thread on the same simulated store: the naive loop read the local
    # disk, so a ratio to it would compare two different storages.
    return Row(f"reads, {threads} threads (sim. object store)", p.seconds, p.nbytes,
               speedup=p.mb_per_s / one.mb_per_s,
               note=f"1 MiB requests; {model_note(c)}; baseline: one thread on the same "
                    f"store ({one.mb_per_s:.0f} MB/s, model "
                    f"{float(m.per_stream(request)) / 1e6:.0f} MB/s)", comparison=c)


def stage_parallel_pretokenize(ctx: Context) -> Row:
    tok = _word_tokenizer(ctx)
    workers = os.cpu_count() or 1
    folder = ctx.workdir / "shards-word-parallel"
    size = ctx.corpus.stat().st_size
    with stopwatch() as sw:
        parallel_pretokenize(ctx.corpus, tok, folder, workers=workers)
    seconds = sw.seconds
    note = (f"{workers} processes, tasks of {choose_task_bytes(size, workers) / MB:,.2g} MB, "
            "pool start-up included")
    serial = ctx.extra.get("shards")
    speedup = None
    if serial is not None:
        same = shard_checksums(serial) == shard_checksums(folder)
        note += "; shards identical to 1 process" if same else "; SHARDS DIFFER from 1 process"
        if "preprocess_s" in ctx.extra:
            speedup = ctx.extra["preprocess_s"] / seconds
            note += "; baseline: 1 process (the pretokenize row, the same work)"
    return Row(f"pretokenize with {workers} processes", seconds, size, note=note,
               speedup=speedup)


STAGES.append(stage_parallel_tokenize)
STAGES.append(stage_threaded_reads)
STAGES.append(stage_parallel_pretokenize)


def stage_dask_pretokenize(ctx: Context) -> Row:
    tok = _word_tokenizer(ctx)
    workers = os.cpu_count() or 1
    pieces = plan_pieces(ctx.corpus, min(4 * workers, len(document_ends(ctx.corpus))))
    sw = stopwatch()
    client = start_local_cluster(workers, dashboard=False)
    try:
        client.wait_for_workers(workers)
        startup = sw.seconds
        for _ in range(2):  # the first run warms the workers (imports); the second is timed
            run = pretokenize_pieces(pieces, tok, ctx.workdir / "shards-dask", engine="dask",
                                     client=client, progress=False)
    finally:
        close_cluster(client)
    pretokenize_pieces(pieces, tok, ctx.workdir / "shards-pieces", engine="processes",
                       workers=workers, progress=False)
    same = shard_checksums(ctx.workdir / "shards-dask") == \
        shard_checksums(ctx.workdir / "shards-pieces")
    note = (f"one shard per piece; cluster start-up {startup:.1f} s and a warm-up run not "
            f"included; shards "
            f"{'identical to' if same else 'DIFFER from'} the processes engine")
    speedup = None
    if "preprocess_s" in ctx.extra:
        speedup = ctx.extra["preprocess_s"] / run.seconds
        note += "; baseline: 1 process (the pretokenize row, the same work)"
    return Row(f"pretokenize on dask, {workers} workers ({len(pieces)} pieces)", run.seconds,
               run.in_bytes, note=note, speedup=speedup)


if importlib.util.find_spec("distributed") is not None:  # the optional 'dask' extra
    STAGES.append(stage_dask_pretokenize)


# --------------------------------------------------------------------------- the pipeline

PIPELINE_STEP_S = 0.005  # the simulated accelerator's step time in the tour
PIPELINE_STEPS = 60
PIPELINE_BATCH = 16  # training windows per batch
PIPELINE_BLOCK = 256  # tokens per window (each window reads one more, its last target)


def check_corpus_size(corpus) -> int:
    """Fail before any stage runs when the corpus holds too few tokens for one batch of the
    pipeline stages; return the tokens counted (the count stops once there are enough)."""
    need = PIPELINE_BATCH * (PIPELINE_BLOCK + 1)
    have = 0
    for doc in iter_documents(corpus):
        have += len(fast_word_tokenize(doc.text)) + 1  # its words, and the end-of-document ID
        if have >= need:
            return have
    raise CorpusError(
        f"{corpus}: the tour's pipeline stages need at least {need:,} tokens (a batch of "
        f"{PIPELINE_BATCH} windows of {PIPELINE_BLOCK + 1}), but the corpus holds about "
        f"{have:,}; use a bigger corpus (the generated one: iokit tour --scale tiny).")


def _pipeline_storage(ctx: Context) -> str:
    """The tour's storage, or the object store when the tour reads the local disk (where
    loading is never the bottleneck, so the walk would show nothing)."""
    return ctx.storage if ctx.storage not in ("local", "local-disk") else "object-store"


def _walk_stage(step, number: int = 0):
    def stage(ctx: Context) -> Row:
        if "shards" not in ctx.extra:
            stage_pretokenize(ctx)
        storage = _pipeline_storage(ctx)
        (row,) = pipeline_walk(ctx.extra["shards"], storage=storage, step_s=PIPELINE_STEP_S,
                               steps=PIPELINE_STEPS, batch_size=PIPELINE_BATCH,
                               block_size=PIPELINE_BLOCK, walk=[step], workdir=ctx.workdir)
        walk = ctx.extra.setdefault("walk", [])
        row.speedup = row.run.steps_per_s / walk[0].run.steps_per_s if walk else 1.0
        walk.append(row)
        r = row.run
        tokens = r.steps * r.settings["batch_size"] * r.settings["block_size"]
        c = compare("busy fraction", r.busy_fraction, model=row.predicted_busy, unit="fraction")
        first = len(walk) == 1
        return Row(f"pipeline: {step.technique}", r.seconds, tokens, unit="tok/s",
                   speedup=row.speedup, comparison=c, baseline=first,
                   note=f"{storage}, {PIPELINE_STEP_S * 1e3:g} ms steps: busy "
                        f"{r.busy_fraction:.0%}, {model_note(c)}; "
                        + ("the baseline of the pipeline rows" if first else
                           f"baseline: the naive loader; removes: {step.removes}"))

    stage.__name__ = f"stage_pipeline_{number}"
    return stage


def _pipeline_stages():
    return [_walk_stage(step, i) for i, step in enumerate(walk_steps())]


STAGES.extend(_pipeline_stages())


def run_tour(corpus, storage: str = "local", *, stages=None, workdir=None,
             progress: bool = False, on_row: Callable[[Row], None] | None = None,
             tokenizer: str = "word", vocab_size: int | None = None
             ) -> tuple[list[Row], dict]:
    """Run every stage (or ``stages``) on ``corpus`` (any corpus form, opened with
    :func:`~iokit.corpus.open_corpus`), with a progress bar if ``progress``; return the rows
    and what the stages left behind (``on_row`` sees each row as it ends). ``tokenizer`` and
    ``vocab_size`` choose what the epochs and shards are tokenized with. A corpus too small for
    the pipeline stages fails before the first stage."""
    corpus = open_corpus(corpus)
    extra: dict = {}
    rows = []
    stages = stages or STAGES
    if any(s.__name__.startswith("stage_pipeline") for s in stages):
        check_corpus_size(corpus)
    with progress_bar(total=len(stages), desc="tour", unit="stage", disable=not progress) as bar:
        with tempfile.TemporaryDirectory(prefix="iokit-tour-") as tmp:
            ctx = Context(corpus, Path(workdir or tmp), storage, extra, tokenizer, vocab_size)
            for stage in stages:
                bar.set_postfix_str(stage.__name__.removeprefix("stage_"))
                row = stage(ctx)
                rows.append(row)
                bar.update()
                if on_row:
                    on_row(row)
    return rows, extra
