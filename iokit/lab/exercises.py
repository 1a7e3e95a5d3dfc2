"""Answer checks for the notebooks' exercises.

Each check prints whether the answer is right (and a hint when it is not) and returns a bool,
so a learner gets feedback in place. The solutions are in :mod:`iokit.lab.solutions`, shown
only on request; a test runs each of them against its check.
"""

from __future__ import annotations

import math

import numpy as np

from iokit.corpus import open_corpus
from iokit.costs import (
    BatchCostModel,
    RequestCostModel,
    ThreadedReadModel,
    break_even_bandwidth,
    read_seconds,
    serial_fraction_from_timings,
    shard_bytes,
)
from iokit.ranks import rank_balance
from iokit.shards import choose_dtype
from iokit.storage import get_preset


def _report(ok: bool, hint: str) -> bool:
    print("✓ correct" if ok else f"✗ not quite: {hint}")
    return ok


def close(answer, expected: float, rel: float = 0.1) -> bool:
    """Whether ``answer`` is within ``rel`` (relative) of ``expected``."""
    try:
        return math.isclose(float(answer), expected, rel_tol=rel)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- notebook 01


def naive_read_calls(answer, corpus) -> bool:
    """01-1: how many read() system calls does the naive loop make on this corpus?"""
    expected = open_corpus(corpus).stat().st_size + 1
    return _report(answer == expected,
                   "an unbuffered readline() asks the OS for one byte per call; "
                   "and one more call finds the end of the file.")


def knee_chunk(answer, model) -> bool:
    """01-2: the chunk size at which per-call overhead and transfer time are equal."""
    return _report(close(answer, model.knee, 0.05),
                   "set calls × overhead equal to bytes / bandwidth for a single call: "
                   "c = overhead × bandwidth (in bytes).")


def object_store_seconds(answer) -> bool:
    """01-3: seconds to read 1 GB (10**9 bytes) from the object-store preset in 64 KiB requests,
    one request at a time."""
    p = get_preset("object-store")
    expected = RequestCostModel(p.latency, p.stream_bandwidth).seconds(1e9, 64 * 1024)
    return _report(close(answer, expected, 0.02),
                   "calls = ceil(10**9 / 65536); time = calls × latency + bytes / bandwidth, "
                   "with the preset's latency and per-stream bandwidth.")


# --------------------------------------------------------------------------- notebook 00


def mean_document_bytes(answer, stats) -> bool:
    """00-1: the mean size of a document's text, in UTF-8 bytes."""
    return _report(close(answer, float(stats.doc_bytes.mean()), 0.01),
                   "divide the total UTF-8 bytes of all texts by the number of documents "
                   "(stats.doc_bytes holds each document's size).")


def top_words_share(answer, stats, n: int = 100) -> bool:
    """00-2: the fraction of all word occurrences taken by the ``n`` most frequent words."""
    expected = float(stats.word_counts[:n].sum() / stats.word_counts.sum())
    return _report(close(answer, expected, 0.01),
                   "stats.word_counts is sorted, most frequent first: sum the first n and "
                   "divide by the sum of all.")


# --------------------------------------------------------------------------- notebook 02


def token_dtype(answer, vocab_size: int) -> bool:
    """02-1: the numpy dtype to store IDs of a ``vocab_size`` vocabulary ('uint16'/'uint32')."""
    expected = choose_dtype(vocab_size).name
    try:
        given = np.dtype(answer).name
    except TypeError:
        given = str(answer)
    return _report(given == expected,
                   "IDs run from 0 to vocab_size - 1; uint16 holds 0..65,535, so it fits a "
                   "vocabulary of at most 65,536 IDs.")


def corpus_disk_bytes(answer, n_tokens: int, vocab_size: int) -> bool:
    """02-2: bytes on disk of ``n_tokens`` stored IDs of a ``vocab_size`` vocabulary."""
    return _report(close(answer, shard_bytes(n_tokens, vocab_size), 0.001),
                   "tokens × bytes per token (2 for uint16, 4 for uint32); the .idx adds only "
                   "8 bytes per document.")


def break_even_epochs(answer, model) -> bool:
    """02-3: after how many epochs has pretokenizing paid for itself (a real number)?"""
    return _report(close(answer, model.break_even, 0.02),
                   "set k × R = P + k × S and solve for k: k = P / (R - S).")


ONE_TOKEN_CHOICES = {
    "a": "the disk is slow for small reads",
    "b": "each token pays Python and numpy overhead per item (an index, a new scalar object), "
         "which costs far more than its 2 bytes",
    "c": "the memory map copies the whole file on every access",
}


def one_token_at_a_time(answer) -> bool:
    """02-4: why is reading a window one token at a time from the memmap so slow? a, b or c."""
    return _report(str(answer).strip().lower() == "b",
                   "the file is in the page cache (warm) and slicing a map copies nothing: look "
                   "at what each loop iteration does besides moving 2 bytes.")


# --------------------------------------------------------------------------- notebook 03


def zstd_break_even(answer, profile) -> bool:
    """03-1: below what storage bandwidth (MB/s) does this codec read faster than no codec,
    with decompression after each read (not overlapped)?"""
    expected = break_even_bandwidth(profile.ratio, profile.decode_bps) / 1e6
    return _report(close(answer, expected, 0.05),
                   "set S/B = S/(r·B) + S/D and solve for B: B = D·(1 − 1/r), with D in MB/s "
                   "(profile.decode_bps / 1e6) and r = profile.ratio.")


def overlapped_read_seconds(answer) -> bool:
    """03-2: seconds to read 10 GB (10**10 bytes of data) stored at ratio 3 from 200 MB/s
    storage, decompressing at 800 MB/s while the next block is fetched."""
    expected = max(1e10 / 3 / 200e6, 1e10 / 800e6)
    return _report(close(answer, expected, 0.02),
                   "overlapped, the slower of the two sets the pace: max(S/(r·B), S/D).")


def in_memory_speedup(answer, profile, memory_bps: float = 10e9) -> bool:
    """03-3: data already in memory (read at ``memory_bps``): the speedup (plain time /
    compressed time, serial model) that this codec gives."""
    s = 1e9
    expected = read_seconds(s, memory_bps) / read_seconds(s, memory_bps, profile.ratio,
                                                          profile.decode_bps)
    return _report(close(answer, expected, 0.05),
                   "use read_seconds(S, B) / read_seconds(S, B, r, D) with B = 10 GB/s; "
                   "a speedup below 1 is a slowdown.")


def smallest_good_block(answer, points, whole_ratio: float, within: float = 0.9,
                        codec: str = "zstd:3") -> bool:
    """03-4: the smallest block size (bytes) at which ``codec`` keeps at least ``within`` of
    its whole-file ratio, from the block-size sweep."""
    good = sorted(p.block_bytes for p in points
                  if p.codec == codec and p.ratio >= within * whole_ratio)
    expected = good[0] if good else None
    return _report(answer == expected,
                   f"keep the points of {codec} whose ratio is at least {within} × the "
                   "whole-file ratio, and take the smallest block size among them.")


# --------------------------------------------------------------------------- notebook 04


def best_read_workers(answer, latency: float, stream_bandwidth: float,
                      aggregate_bandwidth: float, request_bytes: float) -> bool:
    """04-1: the fewest threads whose reads together reach the aggregate bandwidth."""
    expected = ThreadedReadModel(latency, stream_bandwidth, aggregate_bandwidth) \
        .best_workers(request_bytes)
    return _report(answer == expected,
                   "one thread gets c / (latency + c / stream_bandwidth) bytes/s; divide the "
                   "aggregate bandwidth by that and round up.")


def serial_fraction(answer, t1: float, tn: float, n: int) -> bool:
    """04-2: the serial fraction implied by ``t1`` seconds on 1 worker and ``tn`` on ``n``."""
    return _report(close(answer, serial_fraction_from_timings(t1, tn, n), 0.02),
                   "Amdahl: tn / t1 = s + (1 - s) / n; solve for s.")


def processes_for_cores(answer, cores: int) -> bool:
    """04-3: how many processes to give a CPU-bound stage on a machine with ``cores`` cores."""
    return _report(answer == cores,
                   "each process can keep one core busy; more only share the same cores.")


# --------------------------------------------------------------------------- notebook 05


def naive_busy(answer, load_s: float, step_s: float) -> bool:
    """05-1: the busy fraction of a loop that loads a batch (``load_s``) then computes
    (``step_s``), in turn."""
    return _report(close(answer, step_s / (step_s + load_s), 0.02),
                   "each step takes load + compute seconds, and only compute is busy: "
                   "S / (S + L).")


def min_prefetch(answer, load_s: float, step_s: float) -> bool:
    """05-2: the smallest prefetch depth (with enough workers) that keeps the loop busy."""
    expected = max(1, math.ceil(load_s / step_s))
    return _report(answer == expected,
                   "by Little's law, batches in flight = rate × time in the system: the loop "
                   "takes one batch per step time S and each takes L to make, so it needs "
                   "ceil(L / S) in flight.")


def loader_rate(answer, workers: int, load_s: float) -> bool:
    """05-3: the most batches per second ``workers`` workers can make, when each batch takes
    ``load_s`` seconds (mostly waiting on storage) and the CPU is not the limit."""
    return _report(close(answer, workers / load_s, 0.02),
                   "each worker makes one batch per load_s, and they wait side by side: "
                   "workers / load_s.")


CPU_BOUND_CHOICES = {
    "a": "more worker threads",
    "b": "a deeper prefetch queue",
    "c": "less CPU work per batch (a faster codec, or none), or more cores",
}


def cpu_bound_fix(answer) -> bool:
    """05-4: the loader is CPU-bound (every core busy decompressing). What helps? a, b or c."""
    return _report(str(answer).strip().lower() == "c",
                   "workers and prefetch add batches in flight, which hides waiting; they add "
                   "no core. When the cores are the limit, only less work per batch or more "
                   "cores raise the rate.")


# --------------------------------------------------------------------------- notebook 06


def idle_fraction(answer, shard_tokens, world_size: int, *, epoch: int = 0,
                  seed: int = 0) -> bool:
    """06: ``world_size`` trainers step in lockstep over shards of ``shard_tokens`` tokens,
    dealt out round-robin (:mod:`iokit.ranks`): what fraction of trainer time is idle at the
    end of the epoch?"""
    expected = rank_balance(shard_tokens, world_size, epoch=epoch, seed=seed).idle_fraction
    try:
        ok = math.isclose(float(answer), expected, rel_tol=0.02, abs_tol=1e-3)
    except (TypeError, ValueError):
        ok = False
    return _report(ok,
                   "the epoch lasts as long as the rank with the most tokens; idle = 1 − mean / "
                   "max of tokens per rank. iokit.ranks.assign_shards(len(shard_tokens), "
                   "world_size, epoch=epoch, seed=seed) shows which shards each rank gets (with "
                   "equal shards: ceil(n / world_size) on the busiest rank).")


def cluster_hours(answer, model, total_bytes: float, pieces: int, slots: int) -> bool:
    """06: with the fitted cluster model, how many hours does preprocessing ``total_bytes``
    cut into ``pieces`` equal pieces take on ``slots`` workers?"""
    expected = float(model.predict_even(total_bytes, pieces, slots)) / 3600
    return _report(close(answer, expected, 0.02),
                   "waves = ceil(pieces / slots); each wave takes one piece's bytes at the "
                   "per-worker rate plus the per-task overhead; add the start-up. "
                   "model.predict_even(total_bytes, pieces, slots) / 3600.")


def best_piece_count(answer, model, total_bytes: float, slots: int) -> bool:
    """06: how many equal pieces give the shortest run on ``slots`` workers?"""
    best = model.best_pieces(total_bytes, slots, max_pieces=64 * slots)
    t_best = float(model.predict_even(total_bytes, best, slots))
    try:
        n = int(answer)
        ok = n >= 1 and float(model.predict_even(total_bytes, n, slots)) <= t_best * 1.01
    except (TypeError, ValueError):
        ok = False
    return _report(ok,
                   "fewer pieces than slots leaves workers idle, and a piece count that is not "
                   "a multiple of the slots leaves a last wave part-empty; many more pieces only "
                   "add overhead. Try multiples of slots with model.predict_even.")


def shards_of_rank(answer, n_shards: int, world_size: int, rank: int) -> bool:
    """06: with ``n_shards`` shards and ``world_size`` ranks, how many shards does ``rank``
    read in an epoch (round-robin, uneven ranks)?"""
    expected = n_shards // world_size + (rank < n_shards % world_size)
    return _report(answer == expected,
                   "rank r takes order[r::world_size]: n // world_size each, and one more "
                   "for the first n % world_size ranks.")


# --------------------------------------------------------------------------- notebook 07


def model_loads(answer, tasks: int, workers: int, loads: str) -> bool:
    """07: how many times does a run of ``tasks`` tasks on ``workers`` workers load the model,
    per task, per worker or inherited by fork?"""
    expected = BatchCostModel(1.0, 1.0).total_loads(workers, loads, tasks)
    return _report(answer == expected,
                   "per task: once for every task; per worker: once in each worker that gets "
                   "a task (min(workers, tasks)); fork: once, in the parent.")


def batch_seconds(answer, model, task_bytes, workers: int, loads: str) -> bool:
    """07: the cost model's time for tasks of ``task_bytes`` on ``workers`` workers."""
    expected = model.predict(task_bytes, workers, loads)
    return _report(close(answer, expected, 0.02),
                   "T = T₀ + L × ℓ + the makespan of (bytes / r + o [+ ℓ per task]) on "
                   "min(workers, cores) slots: model.predict(task_bytes, workers, loads).")


def docs_per_task_for(answer, load_s: float, doc_s: float, share: float = 0.1) -> bool:
    """07: the fewest documents per task for which loading the model in every task is at
    most ``share`` of each task's time (``doc_s``: seconds to summarise one document)."""
    expected = math.ceil(load_s * (1 - share) / (share * doc_s))
    try:
        ok = abs(int(answer) - expected) <= 1
    except (TypeError, ValueError):
        ok = False
    return _report(ok,
                   "the load's share of a task of d documents is ℓ / (ℓ + d × t); solve "
                   "ℓ / (ℓ + d × t) ≤ share for d: d ≥ ℓ × (1 − share) / (share × t).")


# --------------------------------------------------------------------------- notebook 08

VERDICTS = ("none", "serial", "latency", "tokenize", "decompress", "oversubscribed", "gil",
            "cpu")


def which_bottleneck(answer, signals) -> bool:
    """08-1: which bottleneck do these measurements show (a key of the decision guide)?"""
    from iokit.probe import diagnose

    v = diagnose(signals)
    return _report(answer == v.key,
                   "walk the decision guide from the top: is the loop busy? is the slowest "
                   "stage waiting or computing? more workers than cores? bytes per token "
                   "against the ID width? Choose from exercises.VERDICTS.")


def torch_batches_in_flight(answer, num_workers: int, prefetch_factor: int) -> bool:
    """08-2: batches a PyTorch DataLoader may have loaded ahead, in the kit's terms (a total
    prefetch depth)."""
    return _report(answer == num_workers * prefetch_factor,
                   "prefetch_factor counts batches per worker; the kit's prefetch depth "
                   "counts them in all.")


def gil_step_seconds(answer, step_s: float, step_gil_s: float, loader_gil_s: float) -> bool:
    """08-3: seconds per step by the pipeline model with its GIL term, thread workers that
    have time to keep up otherwise."""
    from iokit.costs import PipelineModel

    m = PipelineModel(0.0, loader_gil_s, 0.0, step_s, workers=8, prefetch=8, cores=64,
                      step_gil_s=step_gil_s, loader_gil_s=loader_gil_s)
    return _report(close(answer, m.period_s, 0.02),
                   "one GIL: the two Pythons take turns (g·S + C_py), and the workers cut into "
                   "the step only once per switch interval past the first (S + min(C_py, k·i), "
                   "k = ceil(g·S / i) − 1, i = 5 ms); the larger wins.")
