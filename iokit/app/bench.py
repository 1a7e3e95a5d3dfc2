"""Benchmarks: ratios measured side by side in one run, never absolute thresholds.

Each entry of :data:`BENCHES` is a function ``bench(corpus, workdir) -> list[Ratio]``; the
techniques add theirs. ``iokit bench`` prints them all, and last the cost models' errors on
settings they were not calibrated on (``model error ...`` lines, :func:`bench_models`).

Where a user would otherwise pick something else, the kit is measured against that peer on the
same work, one line per comparison naming it: nanoGPT's ``get_batch`` (a numpy memmap made
anew per call) and a plain in-memory gather of the same windows for sampling; a plain
zstandard loop over the same blocks for compressed reads; ``multiprocessing.Pool`` and
``ProcessPoolExecutor`` for the ordered map; Hugging Face ``tokenizers``' ``encode_batch``
for BPE (with the ``bpe`` extra); HF ``datasets.map`` for pretokenizing (when installed, else
a line says it was skipped); and 2 processes against 1, each a whole ``python`` process.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import zstandard

from iokit import tasks
from iokit.blocks import DEFAULT_BLOCK_BYTES
from iokit.codecs import get_codec
from iokit.corpus import corpus_head, iter_documents, open_corpus
from iokit.costs import Check, PipelineModel, ThreadedReadModel, median_abs_error
from iokit.engines import (
    close_cluster,
    require_dask,
    scale_cluster,
    shard_checksums,
    start_local_cluster,
)
from iokit.lab.chunks import calibrate_loop, loop_checks
from iokit.lab.compression import compare_reads, corpus_text, profile_codecs, write_codec_files
from iokit.lab.epochs import (
    epoch_checks,
    predict_epochs,
    raw_epoch,
    sampling_checks,
    sampling_rate,
    shard_epoch,
)
from iokit.lab.loops import chunked_loop, naive_loop
from iokit.lab.scale_out import (
    EngineTiming,
    PiecePoint,
    cluster_checks,
    fit_cluster,
    time_engine,
)
from iokit.lab.scaling import (
    amdahl_checks,
    corpus_sample,
    read_point,
    thread_checks,
    worker_sweep,
)
from iokit.lab.training import WALK, calibrate, pipeline_walk, walk_checks
from iokit.loader import epoch_order, open_loader
from iokit.parallel import WorkerPool
from iokit.preprocess import rewrite_shards
from iokit.ranks import rank_balance
from iokit.shards import inputs_and_targets, open_shards, pretokenize
from iokit.split import plan_pieces
from iokit.storage import SimulatedStore
from iokit.timing import Timing, format_error, interleaved, measure, stopwatch
from iokit.tokenize import WordTokenizer


@dataclass
class Ratio:
    """One benchmark result: what was compared, the measured ratio (or fraction), and its unit."""

    name: str
    value: float
    unit: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.name:<60} {self.value:>10.3g} {self.unit:<10} {self.note}"


def skipped(name: str, why: str) -> Ratio:
    """A comparison that could not run here, and why (the value is NaN)."""
    return Ratio(name, float("nan"), "skipped", why)


def load_note() -> str:
    """The 1-minute load average and the cores: how busy the machine was."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"load average {load:.1f} on {os.cpu_count() or 1} cores"


BENCHES: list[Callable[[Path, Path], list[Ratio]]] = []


def run_bench(corpus, benches=None) -> list[Ratio]:
    """Measure every benchmark on ``corpus`` (any corpus form) in one run."""
    out: list[Ratio] = []
    corpus = open_corpus(corpus)
    with tempfile.TemporaryDirectory(prefix="iokit-bench-") as tmp:
        for fn in benches or BENCHES:
            out.extend(fn(corpus, Path(tmp)))
    return out


# --------------------------------------------------------------------------- pretokenized shards


def bench_pretokenized(corpus: Path, workdir: Path) -> list[Ratio]:
    """(a) epoch from shards vs from text; (b) window sampling against a plain in-memory
    gather of the same windows (the bound) and nanoGPT's ``get_batch``, at 64×1024 and at the
    largest shape the cost model checks, 256×2048."""
    tok = WordTokenizer.train(d.text for d in iter_documents(corpus))
    folder = workdir / "shards-word"
    pretokenize(corpus, tok, folder)
    size = corpus.stat().st_size
    shards = open_shards(folder)
    raw = measure(lambda: raw_epoch(corpus, tok), repeat=3, warmup=1)
    pre = measure(lambda: shard_epoch(shards, size), repeat=5, warmup=1)
    shards.close()
    out = [Ratio("pretokenized epoch speedup over raw-text epoch (word tokenizer)",
                 raw.median / pre.median, "×",
                 f"text {raw.median:.3g} s, shards {pre.median:.3g} s per epoch")]
    for batch, block in ((64, 1024), (256, 2048)):
        kit, bound, nano = sampling_peers(folder, batch, block)
        out += [
            Ratio(f"window sampling {batch}×{block} / in-memory numpy gather (bound)",
                  bound / kit, "fraction",
                  f"{batch * block / kit / 1e6:,.0f} M tokens/s; the same windows gathered "
                  f"from an array in memory: {batch * block / bound / 1e6:,.0f} M tokens/s"),
            Ratio(f"window sampling {batch}×{block} vs nanoGPT get_batch (memmap)",
                  nano / kit, "×", f"get_batch: a numpy memmap made per call, one astype "
                  f"per row: {nano * 1e3:.2f} ms per batch; {load_note()}"),
        ]
    return out


def nanogpt_get_batch(path, rng, batch_size: int, block_size: int):
    """nanoGPT's ``get_batch`` in numpy: the memmap made anew on every call (as nanoGPT does,
    to avoid a memory leak), one slice and ``astype`` per window, for inputs and targets."""
    data = np.memmap(path, dtype=np.uint16, mode="r")
    ix = rng.integers(0, len(data) - block_size, size=batch_size)
    x = np.stack([data[i:i + block_size].astype(np.int64) for i in ix])
    y = np.stack([data[i + 1:i + 1 + block_size].astype(np.int64) for i in ix])
    return x, y


def sampling_peers(folder: Path, batch: int, block: int, *, rounds: int = 200,
                   nano_every: int = 10) -> tuple[float, float, float]:
    """Median seconds per batch of the kit's sampler (warm shards), of the bound (the same
    gather from an array in memory: every token loaded first, the window view made once) and
    of nanoGPT's ``get_batch`` over the first shard. One batch of each in turn per round
    (``get_batch``, slower, every ``nano_every`` rounds), so a busy moment hits all alike."""
    bins = sorted(folder.glob("*.bin"))
    data = np.concatenate([np.fromfile(p, dtype=np.uint16) for p in bins])
    views = np.lib.stride_tricks.sliding_window_view(data, block + 1)
    rngs = [np.random.default_rng(0) for _ in range(3)]
    times: list[list[float]] = [[], [], []]

    def bound():
        ix = rngs[1].integers(0, len(data) - block, size=batch)
        inputs_and_targets(views[ix].astype(np.int64))

    with open_shards(folder) as s:
        for chunk in s.iter_chunks():  # map and cache every page
            chunk.sum()
        sides = [lambda: s.sample_batch(rngs[0], batch, block), bound,
                 lambda: nanogpt_get_batch(bins[0], rngs[2], batch, block)]
        for r in range(rounds + 1):  # the first round warms up
            for k, fn in enumerate(sides):
                if k == 2 and r % nano_every:
                    continue
                with stopwatch() as sw:
                    fn()
                if r:
                    times[k].append(sw.seconds)
    kit, bound_s, nano = (float(np.median(t)) for t in times)
    return kit, bound_s, nano


# --------------------------------------------------------------------------- compressed shards


def bench_compressed_shards(corpus: Path, workdir: Path) -> list[Ratio]:
    """(a) sequential read of block-compressed shards / raw zstandard decompression of the
    same blocks; (b) the zstd:3 ratio on the text and on the token IDs."""
    tok = WordTokenizer.train(d.text for d in iter_documents(corpus))
    raw_dir, z_dir = workdir / "shards-raw", workdir / "shards-zstd3"
    pretokenize(corpus, tok, raw_dir)
    rewrite_shards(raw_dir, z_dir, codec="zstd:3")
    with open_shards(raw_dir) as raw:
        token_bytes = raw.nbytes
        first_tokens = raw.read(0, min(raw.n_tokens, 8 << 20)).tobytes()
    shards = open_shards(z_dir)

    # Enough passes per timed run (about 32 MB of tokens) that one run outlasts the scheduler's
    # hiccups on a shared machine.
    passes = max(1, (32 << 20) // max(token_bytes, 1))

    def read_shards():
        for _ in range(passes):
            for _ in shards.iter_chunks(DEFAULT_BLOCK_BYTES // shards.dtype.itemsize):
                pass

    blocks = []  # the same compressed blocks, in memory, for zstandard alone
    for s in shards.shards:
        data = s.bin_path.read_bytes()
        blocks += [data[a:b] for a, b in zip(s.blocks.offsets[:-1], s.blocks.offsets[1:])]
    dctx = zstandard.ZstdDecompressor()

    def raw_zstd():
        for _ in range(passes):
            for b in blocks:
                dctx.decompress(b)

    # Interleaved runs, so a busy moment on a shared machine hits both sides alike.
    t_shards, t_zstd = Timing([], token_bytes * passes), Timing([], token_bytes * passes)
    for _ in range(7):
        t_shards.seconds += measure(read_shards, repeat=1, warmup=1).seconds
        t_zstd.seconds += measure(raw_zstd, repeat=1, warmup=1).seconds
    shards.close()
    text = corpus_text(corpus, 8 << 20)
    zstd3 = get_codec("zstd:3")
    text_ratio = len(text) / len(zstd3.compress(text))
    token_ratio = len(first_tokens) / len(zstd3.compress(first_tokens))
    prefetch = _prefetch_ratio(z_dir)
    return [
        Ratio("compressed-shard sequential read / plain zstandard loop "
              f"({DEFAULT_BLOCK_BYTES >> 10} KiB blocks)", t_zstd.median / t_shards.median,
              "fraction", f"shards {t_shards.mb_per_s:,.0f} MB/s, a loop of "
              f"ZstdDecompressor.decompress over the same blocks in memory "
              f"{t_zstd.mb_per_s:,.0f} MB/s of tokens; medians of 7 alternating runs"),
        prefetch,
        Ratio("zstd:3 ratio on text", text_ratio, "×", f"first {len(text) / 1e6:,.1f} MB"),
        Ratio("zstd:3 ratio on uint16 token IDs (word-level)", token_ratio, "×",
              f"first {len(first_tokens) / 1e6:,.1f} MB"),
    ]


def _prefetch_ratio(folder: Path) -> Ratio:
    """One pass over the first shard's blocks with a fresh reader (checksums and all), with
    and without the prefetch thread, in turn."""
    from iokit.blocks import BlockReader

    with open_shards(folder) as s:
        shard = s.shards[0]

        def one_pass(prefetch: bool):
            with BlockReader(shard.bin_path, shard.blocks, 0) as r:
                for _ in r.iter_blocks(prefetch=prefetch):
                    pass

        plain, ahead = interleaved(lambda: one_pass(False), lambda: one_pass(True), repeat=7)
    return Ratio("block read with prefetch thread / without (one pass, warm)",
                 plain.median / ahead.median, "×",
                 f"{shard.blocks.n_blocks} blocks; > 1 means prefetch helps; it is off by "
                 "default")


BENCHES.append(bench_compressed_shards)


def bench_parallel(corpus: Path, workdir: Path) -> list[Ratio]:
    """Tokenization speedup with one process per core at the best chunk size, and threaded
    reads on the simulated object store as a fraction of the model, side by side."""
    spans = corpus_sample(corpus, 8 << 20)
    fn = partial(tasks.tokenize_span, str(corpus))
    cores = os.cpu_count() or 1

    def timed(pool, chunk):
        with stopwatch() as sw:
            pool.map(fn, spans, chunk)
        return sw.seconds

    with WorkerPool(1, "serial") as serial, \
            WorkerPool(cores, "processes", preload=("iokit.tasks",)) as pool:
        pool.warm()
        trial = {c: timed(pool, c) for c in (1, 4, 16, 64)}  # one quick run each
        best = min(trial, key=trial.get)
        one, many = interleaved(lambda: serial.map(fn, spans, best),
                                lambda: pool.map(fn, spans, best), repeat=5, warmup=0)
        peers = _map_peers(pool, fn, spans, best, cores)
    speedup = one.median / many.median
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    threads, request = 16, 1 << 20
    model = ThreadedReadModel.from_preset("object-store")

    p = read_point(SimulatedStore("object-store"), corpus, threads, request, 8 * threads,
                   repeat=3)
    predicted = float(model.throughput(threads, request))
    return [
        Ratio(f"tokenize: {cores} processes vs 1 ({best} docs per task)", speedup, "×",
              f"{sum(e - s for s, e in spans) / 1e6:.1f} MB, medians of 5 alternating runs; "
              f"load average {load:.1f} on {cores} cores"),
        *peers,
        Ratio(f"reads: {threads} threads on sim. object store vs model", p.mb_per_s * 1e6
              / predicted, "of model",
              f"{p.mb_per_s:,.0f} MB/s measured, {predicted / 1e6:,.0f} MB/s predicted"),
        whole_process_pretokenize(corpus, workdir, cores),
    ]


def _map_peers(pool: WorkerPool, fn, spans, chunk: int, cores: int) -> list[Ratio]:
    """The kit's ordered map against ``multiprocessing.Pool.imap`` and
    ``ProcessPoolExecutor.map`` on the same tasks and chunk size (every pool started and
    warm before timing), in turn."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with multiprocessing.Pool(cores) as mp_pool, ProcessPoolExecutor(cores) as executor:
        mp_pool.map(abs, range(cores))
        list(executor.map(abs, range(cores)))
        kit, mp, ex = interleaved(lambda: pool.map(fn, spans, chunk),
                                  lambda: list(mp_pool.imap(fn, spans, chunk)),
                                  lambda: list(executor.map(fn, spans, chunksize=chunk)),
                                  repeat=5, warmup=1)
    how = f"{cores} processes, {chunk} docs per task, medians of 5 alternating runs"
    return [Ratio("ordered map vs multiprocessing.Pool.imap (same tasks)",
                  mp.median / kit.median, "×", how),
            Ratio("ordered map vs ProcessPoolExecutor.map (same tasks)",
                  ex.median / kit.median, "×", how)]


_ONE = """from iokit.shards import pretokenize
from iokit.tokenize import load_tokenizer
pretokenize({corpus!r}, load_tokenizer({vocab!r}), {out!r})"""
_MANY = """from iokit.preprocess import parallel_pretokenize
from iokit.tokenize import load_tokenizer
parallel_pretokenize({corpus!r}, load_tokenizer({vocab!r}), {out!r}, workers={workers})"""


def whole_process_pretokenize(corpus: Path, workdir: Path, workers: int,
                              tokenizer: str = "word", rounds: int = 3) -> Ratio:
    """Pretokenizing as a user runs it: a whole ``python`` process with ``workers`` worker
    processes against one process (interpreter start, imports, pool start-up and writing
    included), in turn; the shards must be byte-identical."""
    from iokit.tokenize import train_tokenizer

    vocab = workdir / f"whole-{tokenizer}-vocab.json"
    train_tokenizer(tokenizer, (d.text for d in iter_documents(corpus)),
                    progress=False).save(vocab)
    env = dict(os.environ, IOKIT_PROGRESS="0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parents[2]),
                                                    env.get("PYTHONPATH")) if p)
    # Start-up as an installed kit has it: bytecode compiled once (by the warm-up run, into
    # the scratch folder, even where the environment turned writing it off), not every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    one_dir, many_dir = workdir / "whole-1", workdir / f"whole-{workers}"
    args = dict(corpus=str(corpus), vocab=str(vocab), workers=workers)

    def run(code: str):
        subprocess.run([sys.executable, "-c", code], env=env, check=True)

    one, many = interleaved(lambda: run(_ONE.format(out=str(one_dir), **args)),
                            lambda: run(_MANY.format(out=str(many_dir), **args)),
                            repeat=rounds, warmup=1)
    same = shard_checksums(one_dir) == shard_checksums(many_dir)
    return Ratio(f"pretokenize ({tokenizer}), {workers} processes vs 1, whole processes",
                 one.median / many.median, "×",
                 f"{one.median:.2f} s → {many.median:.2f} s per run, start-up included; "
                 f"shards identical: {same}; medians of {rounds} alternating runs; "
                 f"{load_note()}")


BENCHES.append(bench_parallel)


# --------------------------------------------------------------------------- tokenizers


def bench_tokenizers(corpus: Path, workdir: Path) -> list[Ratio]:
    """BPE: the kit's corpus encoding against HF ``tokenizers``' ``encode_batch`` on the same
    texts with the same threads (the ``bpe`` extra); word pretokenizing against HF
    ``datasets.map`` (when installed)."""
    texts = [d.text for d in iter_documents(corpus)]
    texts = texts[:max(1, _count_to(texts, 2 << 20))]  # about 2 MB of text at most
    out = []
    try:
        from iokit.tokenize import BPETokenizer, encode_corpus, require_tokenizers

        require_tokenizers()
    except Exception:  # the bpe extra is not installed
        out.append(skipped("BPE encode vs HF tokenizers encode_batch",
                           "needs the bpe extra: pip install -e '.[bpe]'"))
    else:
        bpe = BPETokenizer.train(texts, progress=False)
        hf = bpe._tok
        eod = np.array([bpe.eod_id], dtype=np.uint32)

        def peer():  # what a prepare script does with the batch encoder: arrays per document
            return [np.concatenate([np.array(e.ids, dtype=np.uint32), eod])
                    for e in hf.encode_batch(texts, add_special_tokens=False)]

        kit, hf_t = interleaved(lambda: list(encode_corpus(texts, bpe)), peer, repeat=3)
        nbytes = sum(len(t.encode("utf-8")) for t in texts)
        threads = os.environ.get("RAYON_NUM_THREADS") or f"{os.cpu_count() or 1} (one per core)"
        out.append(Ratio("BPE encode (kit, batches) vs HF tokenizers encode_batch",
                         hf_t.median / kit.median, "×",
                         f"same texts ({nbytes / 1e6:.1f} MB), same Rust threads: {threads}; "
                         f"kit {nbytes / kit.median / 1e6:.2f} MB/s, encode_batch "
                         f"{nbytes / hf_t.median / 1e6:.2f} MB/s; {load_note()}"))
    out.append(bench_datasets_map(corpus, workdir))
    return out


def _count_to(texts: list[str], nbytes: int) -> int:
    total = 0
    for i, t in enumerate(texts):
        total += len(t)
        if total >= nbytes:
            return i + 1
    return len(texts)


def bench_datasets_map(corpus: Path, workdir: Path) -> Ratio:
    """Word pretokenizing, one process: the kit's ``pretokenize`` against HF ``datasets``
    (``load_dataset("json")``, ``map`` with the same tokenizer, a uint16 memmap written as
    nanoGPT's ``prepare.py`` does), in turn; skipped when ``datasets`` is not installed."""
    name = "word pretokenize (kit) vs HF datasets.map + uint16 memmap"
    try:
        import datasets
    except ImportError:
        return skipped(name, "HF datasets is not installed (pip install datasets): not "
                       "compared")
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    tok = WordTokenizer.train(d.text for d in iter_documents(corpus))
    cache = workdir / "hf-cache"
    eod = tok.eod_id

    def peer():
        ds = datasets.load_dataset("json", data_files=str(corpus), split="train",
                                   cache_dir=str(cache))
        ds = ds.map(lambda b: {"ids": [np.append(tok.encode(t), eod) for t in b["text"]]},
                    batched=True, remove_columns=ds.column_names, load_from_cache_file=False)
        lengths = [len(x) for x in ds["ids"]]
        arr = np.memmap(workdir / "hf.bin", dtype=np.uint16, mode="w+", shape=(sum(lengths),))
        at = 0
        for ids in ds.iter(batch_size=1024):
            flat = np.concatenate([np.asarray(x, dtype=np.uint16) for x in ids["ids"]])
            arr[at:at + len(flat)] = flat
            at += len(flat)
        arr.flush()
        del arr

    kit, hf = interleaved(lambda: pretokenize(corpus, tok, workdir / "kit-shards"), peer,
                          repeat=3, warmup=1)
    with open_shards(workdir / "kit-shards") as s:
        same = np.array_equal(np.concatenate(list(s.iter_chunks())),
                              np.fromfile(workdir / "hf.bin", dtype=np.uint16))
    return Ratio(name, hf.median / kit.median, "×",
                 f"kit {kit.median:.2f} s, datasets {hf.median:.2f} s (warm cache); same "
                 f"tokens: {same}; medians of 3 alternating runs")


BENCHES.append(bench_tokenizers)


# --------------------------------------------------------------------------- the pipeline


def bench_pipeline(corpus: Path, workdir: Path) -> list[Ratio]:
    """Busy fraction of a 5 ms training step on the object store: naive loader vs 8 workers
    with prefetch, and the measured speedup in training steps per second."""
    folder = workdir / "shards-word"
    if not (folder / "shard-00000.idx").exists():
        pretokenize(corpus, WordTokenizer.train(d.text for d in iter_documents(corpus)), folder)
    naive, best = pipeline_walk(folder, storage="object-store", step_s=0.005, steps=60,
                                walk=[WALK[0], WALK[2]], workdir=workdir)
    return [
        Ratio("pipeline busy fraction, naive loader (object store, 5 ms step)",
              naive.run.busy_fraction, "fraction", f"model {naive.predicted_busy:.2f}"),
        Ratio("pipeline busy fraction, 8 workers + prefetch 8 (same)",
              best.run.busy_fraction, "fraction", f"model {best.predicted_busy:.2f}"),
        Ratio("pipeline training speedup, 8 workers + prefetch 8 / naive",
              best.run.steps_per_s / naive.run.steps_per_s, "×",
              f"{naive.run.steps_per_s:,.0f} → {best.run.steps_per_s:,.0f} steps/s"),
    ]


BENCHES.append(bench_pipeline)


# --------------------------------------------------------------------------- the loader itself

LOADER_SHAPES = ((16, 256), (64, 1024))  # (batch_size, block_size)


def bare_batches(folder, batch_size: int, block_size: int, order, passes: int = 1):
    """The loader's yardstick: a function making the same batches in the same ``order`` with
    nothing else (``os.pread`` from files opened once, cut into windows, cast to int64): no
    threads, no checks, no timeline."""
    with open_shards(folder) as s:
        paths, starts, dtype = [sh.bin_path for sh in s.shards], s.starts.tolist(), s.dtype
    tokens, isz = batch_size * (block_size + 1), dtype.itemsize

    def run():
        fds = [os.open(p, os.O_RDONLY) for p in paths]
        try:
            for _ in range(passes):
                for k in order:
                    a = k * tokens
                    s = bisect.bisect_right(starts, a) - 1
                    if a + tokens <= starts[s + 1]:
                        buf = os.pread(fds[s], tokens * isz, (a - starts[s]) * isz)
                    else:  # a batch across shards
                        buf = b"".join(
                            os.pread(fds[j], (min(a + tokens, starts[j + 1]) - max(a, starts[j]))
                                     * isz, (max(a, starts[j]) - starts[j]) * isz)
                            for j in range(s, bisect.bisect_left(starts, a + tokens)))
                    w = np.frombuffer(buf, dtype).reshape(batch_size, block_size + 1)
                    w = w.astype(np.int64)
                    _x, _y = w[:, :-1], w[:, 1:]
        finally:
            for fd in fds:
                os.close(fd)
    return run


def bench_loader(corpus: Path, workdir: Path, batches_per_run: int = 2000) -> list[Ratio]:
    """The loader over warm local shards against a bare loop over the same batches in the same
    order, inline (``workers=0``) and with 2 worker threads (prefetch 4), at two batch shapes;
    and the workers against inline. Runs alternate, medians of 7."""
    folder = workdir / "shards-word"
    if not (folder / "shard-00000.idx").exists():
        pretokenize(corpus, WordTokenizer.train(d.text for d in iter_documents(corpus)), folder)
    out = []
    for batch, block in LOADER_SHAPES:
        loaders = {w: open_loader(folder, workers=w, prefetch=4, batch_size=batch,
                                  block_size=block, shuffle=True, seed=0) for w in (0, 2)}
        try:
            n = loaders[0].n_batches
            passes = max(1, batches_per_run // n)  # runs that outlast a scheduler hiccup
            order = epoch_order(n, shuffle=True, seed=0, epoch=0).tolist()

            def epochs(loader, passes=passes):
                def run():
                    for _ in range(passes):
                        loader.epoch = 0  # the same batches, in the same order, every pass
                        for _b in loader:
                            pass
                return run

            bare, inline, threads = interleaved(
                bare_batches(folder, batch, block, order, passes), epochs(loaders[0]),
                epochs(loaders[2]), repeat=7, warmup=1)
        finally:
            for loader in loaders.values():
                loader.close()
        per = f"{n * passes:,} batches per run"
        out += [
            Ratio(f"loader inline / bare loop, same batches ({batch}×{block}, warm)",
                  bare.median / inline.median, "fraction",
                  f"bare {bare.median * 1e3:.1f} ms, loader {inline.median * 1e3:.1f} ms; {per}"),
            Ratio(f"loader 2 workers / bare loop, same batches ({batch}×{block})",
                  bare.median / threads.median, "fraction",
                  f"2 worker threads, prefetch 4: {threads.median * 1e3:.1f} ms; {per}"),
            Ratio(f"loader 2 workers / loader inline ({batch}×{block}, warm)",
                  inline.median / threads.median, "×",
                  f"speed with 2 worker threads over workers=0; {per}"),
        ]
    return out


BENCHES.append(bench_loader)


# --------------------------------------------------------------------------- scaling out


def bench_scale_out(corpus: Path, workdir: Path) -> list[Ratio]:
    """Pretokenizing 8 pieces on dask, 2 workers against 1 (the same cluster, resized), and
    against a local pool of 2 processes; the idle fraction of 3 trainers over those shards."""
    try:
        require_dask()
    except Exception:  # the dask extra is not installed: nothing to compare
        return []

    tok = WordTokenizer.train(d.text for d in iter_documents(corpus))
    pieces = plan_pieces(corpus, 8)
    local = time_engine(pieces, tok, workdir / "so-local", engine="processes", workers=2)
    client = start_local_cluster(2, dashboard=False)
    try:
        scale_cluster(client, 1)
        one = time_engine(pieces, tok, workdir / "so-dask", engine="dask", client=client)
        scale_cluster(client, 2)
        two = time_engine(pieces, tok, workdir / "so-dask", engine="dask", client=client)
    finally:
        close_cluster(client)
    same = shard_checksums(workdir / "so-dask") == shard_checksums(workdir / "so-local")
    with open_shards(workdir / "so-dask") as s:
        balance = rank_balance([sh.n_tokens for sh in s.shards], 3)
    return [
        Ratio("dask pretokenize, 2 workers / 1 worker (8 pieces)",
              one.timing.median / two.timing.median, "×",
              f"{one.timing.median:.2f} s → {two.timing.median:.2f} s; shards identical to "
              f"the local pool: {same}"),
        Ratio("dask, 2 workers / local pool of 2 processes (time)",
              two.timing.median / local.timing.median, "×",
              f"what dask's scheduler and workers add; local {local.timing.median:.2f} s"),
        Ratio("idle fraction, 3 trainers over the 8 shards (epoch 0)",
              balance.idle_fraction, "fraction", str(balance)),
    ]


BENCHES.append(bench_scale_out)


# --------------------------------------------------------------------------- the batch job


def bench_batch(corpus: Path, workdir: Path) -> list[Ratio]:
    """Notebook 07's batch job on the corpus' first 512 KiB, tasks of 8 documents, 2 workers:
    the model loaded once per worker against once per task (runs alternate, medians of 3), and
    the batch cost model (``ℓ`` and ``r`` measured apart, ``o`` and ``T₀`` fitted to runs
    loading once per worker with tasks of 8 and 32 documents) checked on the per-task and
    fork runs."""
    from iokit.batch import ensure_model
    from iokit.lab.batch import (
        batch_checks,
        batch_point,
        fit_batch,
        measure_load,
        measure_work,
        time_batches,
    )

    docs = corpus_head(corpus, workdir / "batch-head", 512 << 10)
    model_path = ensure_model(docs, workdir / "batch-summarizer.model")
    load, work = measure_load(model_path, repeat=3), measure_work(docs, model_path, repeat=3)
    per_task, per_worker, tasks32, by_fork = time_batches(docs, model_path, workdir / "batch", [
        batch_point(docs, "per task, 2 workers, tasks of 8 docs", workers=2, loads="task",
                    docs_per_task=8),
        batch_point(docs, "per worker, tasks of 8", workers=2, docs_per_task=8),
        batch_point(docs, "per worker, tasks of 32", workers=2, docs_per_task=32),
        batch_point(docs, "fork, 2 workers, tasks of 8 docs", workers=2, loads="fork",
                    docs_per_task=8)], repeat=3, warmup=1)
    model = fit_batch(load, work, [per_worker, tasks32])
    checks = batch_checks(model, [per_task, by_fork], "per worker, tasks of 8 and 32 docs")
    return [Ratio("batch job: model loaded once per worker / once per task",
                  per_task.timing.median / per_worker.timing.median, "×",
                  f"2 workers, {per_task.last.tasks} tasks of 8 docs, "
                  f"{docs.stat().st_size / 1e6:.1f} MB; {per_task.timing.median:.2f} s → "
                  f"{per_worker.timing.median:.2f} s, medians of 3 alternating runs; one load "
                  f"{load.median * 1e3:.0f} ms")
            ] + model_error_lines(checks)[:len(checks)]  # the overall median is bench_models'


BENCHES.append(bench_batch)


# --------------------------------------------------------------------------- cost-model errors
#
# Every cost model of the kit, calibrated on some runs and checked on others it never saw (a
# held-out chunk size, thread or worker count, piece count, batch shape, storage preset, or
# the whole corpus after a sample): one line per check, "model error <name>", its relative
# error (predicted − measured) / measured.


def model_error_lines(checks) -> list[Ratio]:
    """One ``model error`` line per check, and the median of their absolute errors."""
    out = [Ratio(f"model error {c.name}"[:60], c.rel_error, "relative",
                 f"{c.kind}; predicted {c.predicted:.4g} {c.unit}, measured {c.measured:.4g} "
                 f"{c.unit}; calibrated on {c.calibrated_on}; checked on {c.checked_on}")
           for c in checks]
    if checks:
        worst = max(checks, key=lambda c: abs(c.rel_error))
        out.append(Ratio("model error median |relative| over all checks",
                         median_abs_error(checks), "relative",
                         f"{len(checks)} checks; worst {worst.name} "
                         f"{format_error(worst.rel_error)}"))
    return out


def _sample_bytes(corpus: Path, tiny: int, most: int) -> int:
    """A sample size for a model check: ``tiny`` for a tiny corpus, up to ``most``."""
    return int(min(most, max(tiny, corpus.stat().st_size // 8)))


ROUNDS = 3  # calibration and check runs taken in turn, so a busy moment hits both alike


def _median_checks(rounds) -> list[Check]:
    """The same checks from several rounds, as one: the median prediction and measurement."""
    return [Check(first.name, first.calibrated_on, first.checked_on,
                  float(np.median([r[i].predicted for r in rounds])),
                  float(np.median([r[i].measured for r in rounds])), first.kind, first.unit)
            for i, first in enumerate(rounds[0])]


def check_loop(corpus: Path, workdir: Path) -> list[Check]:
    """Notebook 01's loop model: calibrated on loops over a sample (the first 2 MB at most),
    checked on the naive loop over the first 8 MB and the 1 MiB chunked loop; calibration and
    check runs alternate, and each stage's median over the rounds is compared."""
    limit = _sample_bytes(corpus, 1 << 30, 8 << 20)
    cals, naive, chunked = [], [], []
    for _ in range(ROUNDS):
        cals.append(calibrate_loop(corpus, folder=workdir, repeat=1))
        naive.append(naive_loop(corpus, workdir / "loop-naive.txt", limit_bytes=limit))
        chunked.append(chunked_loop(corpus, workdir / "loop-chunked.txt", 1 << 20,
                                    limit_bytes=limit))
    return _median_checks([loop_checks(c, [n, k]) for c, n, k in zip(cals, naive, chunked)])


def check_epochs(corpus: Path, workdir: Path) -> list[Check]:
    """Notebook 02's epoch model (stages timed on a sample) against whole-corpus epochs, in
    turn over rounds, and the sampling model fitted on nine batch shapes, checked on three."""
    tok = WordTokenizer.train(d.text for d in iter_documents(corpus))
    folder = workdir / "models-shards"
    rounds = []
    for _ in range(ROUNDS):
        predicted, facts = predict_epochs(corpus, tok, repeat=1)
        pre = measure(lambda: pretokenize(corpus, tok, folder), repeat=1, warmup=0)
        raw = measure(lambda: raw_epoch(corpus, tok), repeat=1, warmup=0)
        with open_shards(folder) as shards:
            epoch = measure(lambda: shard_epoch(shards, 1), repeat=5, warmup=1)
        rounds.append(epoch_checks(predicted, facts, raw_s=raw.median, shard_s=epoch.median,
                                   preprocess_s=pre.median))
    checks = _median_checks(rounds)
    grid = [(b, t) for b in (1, 16, 64, 256) for t in (16, 256, 2048)]
    results = [sampling_rate(folder, b, t, batches=max(1, min(50, 400_000 // (b * t))),
                             repeat=3) for b, t in grid]
    return checks + sampling_checks(results)[1]


def check_codecs(corpus: Path, workdir: Path) -> list[Check]:
    """Notebook 03's read model on the HDD and network-fs presets (serial reads), from codec
    profiles read warm from local disk and the store's per-request overhead."""
    data = corpus_text(corpus, 4 << 20)
    paths = write_codec_files(workdir / "models-codecs", data,
                              ["none", "zlib:6", "zstd:3", "zstd:19"])
    profiles = profile_codecs(paths)
    checks = []
    for preset in ("hdd", "network-fs"):
        checks += compare_reads(paths, profiles, preset, repeat=3).checks()
    return checks


def check_parallel(corpus: Path, workdir: Path) -> list[Check]:
    """Notebook 04's models: the GIL model for threads fitted on 2 and 4 threads and checked
    on 3 and 6; Amdahl's law capped at the cores, calibrated on 2 workers and checked on 3
    and 4; threaded reads against the preset."""
    spans = corpus_sample(corpus, _sample_bytes(corpus, 512 << 10, 2 << 20))
    counts = [1, 2, 3, 4]
    threads = list(worker_sweep(corpus, spans, counts + [6], "threads", chunk_size=4,
                                baseline=True, repeat=5))
    procs = list(worker_sweep(corpus, spans, counts, "processes", chunk_size=4, baseline=True,
                              repeat=5))
    checks = thread_checks(threads, calibrate_on=(2, 4))[1]
    checks += amdahl_checks(procs)[1]
    model = ThreadedReadModel.from_preset("object-store")
    for n in (4, 16):
        p = read_point(SimulatedStore("object-store"), corpus, n, 1 << 20, 8 * n, repeat=3)
        checks.append(Check(f"threaded reads, {n} threads (object store)",
                            "the preset's latency and bandwidths", f"{n} threads, 1 MiB reads",
                            8 * n * (1 << 20) / float(model.throughput(n, 1 << 20)), p.seconds))
    return checks


def check_pipeline(corpus: Path, workdir: Path) -> list[Check]:
    """Notebook 05's pipeline model: busy fractions of the walk, from stage times measured one
    batch at a time."""
    folder = workdir / "models-shards"
    if not (folder / "shard-00000.idx").exists():
        pretokenize(corpus, WordTokenizer.train(d.text for d in iter_documents(corpus)), folder)
    rows = pipeline_walk(folder, storage="object-store", step_s=0.005, steps=60,
                         walk=[WALK[0], WALK[2]], workdir=workdir)
    return walk_checks(rows)


def check_cluster(corpus: Path, workdir: Path) -> list[Check]:
    """Notebook 06's cluster model: fitted on serial, dask 1-worker and 2-worker runs of 8
    pieces and a 2-worker run of 32 (a second piece count tells the scheduler's per-task
    dispatch from the start-up), checked on 4 and 16 pieces on 2 workers (on the corpus' first
    16 MB at most; the runs of each round are taken in turn, and each setting's median over
    rounds used)."""
    try:
        require_dask()
    except Exception:  # the dask extra is not installed: nothing to check
        return []
    text = corpus_head(corpus, workdir / "cm-head", 16 << 20)
    tok = WordTokenizer.train(d.text for d in iter_documents(text))
    pieces = plan_pieces(text, 8)
    times: dict = {}

    def timed(keep: bool, key: str, engine: str, parts=pieces, **kw) -> None:
        t = time_engine(parts, tok, workdir / f"cm-{key}", engine=engine, repeat=1, warmup=0,
                        **kw)
        if keep:
            times.setdefault(key, []).append(t)

    client = start_local_cluster(2, dashboard=False)
    try:
        for i in range(ROUNDS + 1):  # the first round warms up
            timed(i > 0, "serial", "serial")
            scale_cluster(client, 1)
            timed(i > 0, "dask1", "dask", client=client)
            scale_cluster(client, 2)
            timed(i > 0, "dask2", "dask", client=client)
            for n in (4, 16, 32):
                timed(i > 0, f"p{n}", "dask", plan_pieces(text, n), client=client)
    finally:
        close_cluster(client)

    def med(key):
        runs = times[key]
        merged = Timing([r.timing.seconds[0] for r in runs], runs[0].timing.nbytes)
        return EngineTiming(runs[0].engine, runs[0].workers, merged, runs[-1].run)

    model = fit_cluster(med("serial"), [med("dask1"), med("dask2"), med("p32")], pieces)
    sweep = [PiecePoint(n, [p.nbytes for p in plan_pieces(text, n)], med(f"p{n}").timing)
             for n in (4, 16)]
    return cluster_checks(model, sweep, 2, "serial; dask, 8 pieces on 1 and 2 workers, 32 on 2")


def check_probe(corpus: Path, workdir: Path) -> list[Check]:
    """The probe's busy fraction on the kit's loader (8 workers, prefetch 8, object store,
    5 ms steps) against the pipeline model calibrated one batch at a time; and notebook 08's
    GIL term: steps with half and three quarters of their time holding the GIL (within and
    past the switch interval), over thread and process workers that tokenize in the loop."""
    from iokit.lab.diagnose import Lab, gil_checks, gil_runs
    from iokit.loader import open_loader
    from iokit.probe import probe

    folder = workdir / "models-shards"
    tok = WordTokenizer.train((d.text for d in iter_documents(corpus)), progress=False)
    if not (folder / "shard-00000.idx").exists():
        pretokenize(corpus, tok, folder)
    steps, rounds = 60, []
    for _ in range(ROUNDS):
        stage_s = calibrate(folder, storage="object-store", seed=0)
        model = PipelineModel(*stage_s, 0.005, workers=8, prefetch=8, cores=os.cpu_count() or 1)
        with open_loader(folder, storage="object-store", workers=8, prefetch=8, seed=0,
                         limit=steps) as loader:
            report = probe(loader, step_s=0.005, steps=steps, warmup=0)
        rounds.append([Check("probe busy, the kit's loader (8 workers, object store)",
                             "stage times of 10 batches loaded one at a time",
                             f"the probe, {report.signals.steps} steps of 5 ms",
                             model.busy_fraction(report.signals.steps), report.busy_fraction,
                             unit="fraction")])
    checks = _median_checks(rounds)
    vocab = tok.save(workdir / "probe-vocab.json")
    lab = Lab(corpus, tok, folder, workdir)
    return checks + gil_checks(gil_runs(lab, vocab, shares=(0.5, 0.75), steps=60))



def check_s3_endpoint(corpus: Path, workdir: Path) -> list[Check]:
    """The request model on a real S3 endpoint (the kit's loopback server, or yours from
    ``AWS_ENDPOINT_URL``): fitted on one stream's request-size sweep, checked on two held-out
    sizes; threaded reads against it with the aggregate calibrated on 2 threads, checked on
    1, 4 and 8 (every setting timed in turn, 5 rounds). Nothing when the s3 extra is missing."""
    from iokit.errors import IokitError
    from iokit.lab.chunks import measure_endpoint, threaded_checks

    chunks = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20]
    try:
        run = measure_endpoint(corpus, chunks, threads=[1, 2, 4, 8], repeat=5)
    except IokitError as exc:
        if "[s3]" in str(exc):  # the extra is not installed: nothing to check
            return []
        raise
    model, checks = run.fit(held_out=[256 << 10, 4 << 20])
    return checks + threaded_checks(model, run.threads, calibrate_on=2)[1]



MODEL_CHECKS = [check_loop, check_epochs, check_codecs, check_parallel, check_pipeline,
                check_cluster, check_probe, check_s3_endpoint]


def bench_models(corpus: Path, workdir: Path) -> list[Ratio]:
    """Every cost model's error on settings it was not calibrated on (see the section note)."""
    checks: list[Check] = []
    for fn in MODEL_CHECKS:
        checks += fn(corpus, workdir)
    return model_error_lines(checks)


BENCHES.append(bench_models)
