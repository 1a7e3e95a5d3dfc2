"""The exercises' solutions, shown only when a learner asks for one.

Run All on a notebook runs the exercise cells, which check the learner's own answer (the check
functions are in :mod:`iokit.lab.exercises`). It runs no solution. A learner who wants to see
one runs ``solutions.reveal("03", 1)``. That prints the solution's code, runs it on the
notebook's own variables (``prof``, ``sweep``, ...) and returns what the check says. Answers
in words stay in the notebook, in a collapsed ``<details>`` block.
``tests/test_solutions.py`` runs every solution and asserts that it passes its check.

A solution is a function registered with ``@solution("NN", k)``. Its parameters are named
after the notebook variables it uses, and :func:`reveal` takes them from the namespace of the
caller (the notebook) or from keyword arguments. It returns the check's result, or None for an
open question that has no check.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from collections.abc import Callable

from iokit.errors import ParameterError
from iokit.lab import exercises

SOLUTIONS: dict[tuple[str, int], Callable] = {}


def solution(notebook: str, number: int):
    """Register the decorated function as the solution to exercise ``number`` of ``notebook``."""
    def register(fn):
        SOLUTIONS[_key(notebook, number)] = fn
        return fn
    return register


def _key(notebook, number) -> tuple[str, int]:
    try:
        return f"{int(notebook):02d}", int(number)
    except (TypeError, ValueError):
        raise ParameterError(f"a solution is named by its notebook and exercise numbers, as in "
                             f'reveal("03", 1); got {notebook!r}, {number!r}.') from None


def find(notebook, number) -> Callable:
    """The solution function of exercise ``number`` of ``notebook`` ("03" or 3)."""
    key = _key(notebook, number)
    if key not in SOLUTIONS:
        have = sorted(n for nb, n in SOLUTIONS if nb == key[0])
        listed = (f"notebook {key[0]} has solutions {', '.join(map(str, have))}" if have
                  else f"notebook {key[0]} has no solutions here")
        raise ParameterError(f"no solution {key[0]}-{key[1]}; {listed}.")
    return SOLUTIONS[key]


def solution_text(fn: Callable) -> str:
    """The body of solution ``fn`` (no decorator, signature or docstring), dedented, as the code
    a learner would type in a cell, under a comment naming the notebook variables it uses."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    body = node.body
    if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]  # the docstring
    lines = source.splitlines()[body[0].lineno - 1:]
    names = list(inspect.signature(fn).parameters)
    uses = f", with this notebook's {', '.join(names)}" if names else ""
    code = textwrap.dedent("\n".join(lines)).rstrip()
    code = re.sub(r"^return ", "", code, flags=re.MULTILINE)  # as a cell's last line shows it
    return f"# solution {_number(fn)}{uses}\n{code}"


def _number(fn) -> str:
    return next(f"{nb}-{n}" for (nb, n), f in SOLUTIONS.items() if f is fn)


def reveal(notebook, number, **names):
    """Print the solution to exercise ``number`` of ``notebook``, run it and return what its
    check says (None for an open question).

    The notebook variables it needs are taken from ``names`` or else from the caller's
    namespace; a missing one raises :class:`ParameterError` saying which cell makes it.
    """
    fn = find(notebook, number)
    frame = sys._getframe(1)
    caller = {**frame.f_globals, **frame.f_locals}  # a notebook's are its globals
    args = {}
    for name in inspect.signature(fn).parameters:
        if name in names:
            args[name] = names[name]
        elif name in caller:
            args[name] = caller[name]
        else:
            raise ParameterError(
                f"solution {_number(fn)} needs the notebook's variable {name!r}, which is not "
                f"defined: run the notebook's cells above first (Run All), or pass it: "
                f'reveal("{_key(notebook, number)[0]}", {int(number)}, {name}=...).')
    print(solution_text(fn))
    print("# output:")
    return fn(**args)


# --------------------------------------------------------------------------- notebook 00


@solution("00", 1)
def _00_1(stats):
    answer = stats.doc_bytes.sum() / stats.documents  # total UTF-8 bytes / documents
    return exercises.mean_document_bytes(answer, stats)


@solution("00", 2)
def _00_2(stats):
    answer = stats.word_counts[:100].sum() / stats.word_counts.sum()  # sorted, most frequent first
    return exercises.top_words_share(answer, stats)


# --------------------------------------------------------------------------- notebook 01


@solution("01", 1)
def _01_1(corpus):
    answer = corpus.stat().st_size + 1  # one byte per read() call, plus one that finds the end
    return exercises.naive_read_calls(answer, corpus)


@solution("01", 2)
def _01_2(remote_model):
    answer = remote_model.overhead_s * remote_model.bandwidth  # c / bandwidth = overhead
    return exercises.knee_chunk(answer, remote_model)


@solution("01", 3)
def _01_3():
    import math

    def seconds(request_bytes):  # calls × latency + bytes / bandwidth
        return math.ceil(1e9 / request_bytes) * 0.020 + 1e9 / 80e6

    answer = seconds(64 * 1024)
    print(f"64 KiB requests: {answer:,.1f} s; 64 MiB requests: {seconds(64 << 20):,.1f} s "
          f"({answer / seconds(64 << 20):,.0f}× faster)")
    return exercises.object_store_seconds(answer)


@solution("01", 5)
def _01_5(real_model):
    answer = real_model.overhead_s * real_model.bandwidth  # the real endpoint's own knee
    return exercises.knee_chunk(answer, real_model)


# --------------------------------------------------------------------------- notebook 02


@solution("02", 1)
def _02_1():
    # IDs run from 0 to vocab_size - 1; uint16 holds 0..65,535
    gpt2 = exercises.token_dtype("uint16", 50_257)
    llama3 = exercises.token_dtype("uint32", 128_256)
    return gpt2 and llama3


@solution("02", 2)
def _02_2():
    answer = 10**10 * 4  # 128,256 IDs need uint32: 4 bytes per token
    return exercises.corpus_disk_bytes(answer, 10**10, 128_256)


@solution("02", 3)
def _02_3(measured):
    # k × R = P + k × S, solved for k
    answer = measured.preprocess_s / (measured.raw_epoch_s - measured.shard_epoch_s)
    return exercises.break_even_epochs(answer, measured)


@solution("02", 4)
def _02_4():
    return exercises.one_token_at_a_time("b")


# --------------------------------------------------------------------------- notebook 03


@solution("03", 1)
def _03_1(prof):
    # S/B = S/(r·B) + S/D, solved for B: B = D·(1 − 1/r)
    answer = prof.decode_bps * (1 - 1 / prof.ratio) / 1e6
    return exercises.zstd_break_even(answer, prof)


@solution("03", 2)
def _03_2():
    # overlapped, the slower of transfer and decompression sets the pace
    answer = max(1e10 / 3 / 200e6, 1e10 / 800e6)
    return exercises.overlapped_read_seconds(answer)


@solution("03", 3)
def _03_3(prof):
    from iokit.costs import read_seconds

    speedup = read_seconds(1e9, 10e9) / read_seconds(1e9, 10e9, prof.ratio, prof.decode_bps)
    print(f"speedup {speedup:.2f}× (below 1: a slowdown)")
    return exercises.in_memory_speedup(speedup, prof)


@solution("03", 4)
def _03_4(sweep, whole):
    answer = min(p.block_bytes for p in sweep if p.codec == "zstd:3" and p.ratio >= 0.9 * whole)
    return exercises.smallest_good_block(answer, sweep, whole)


# --------------------------------------------------------------------------- notebook 04


@solution("04", 1)
def _04_1():
    import math

    per_stream = (4 << 20) / (0.05 + (4 << 20) / 100e6)  # bytes/s of one thread
    answer = math.ceil(2e9 / per_stream)
    return exercises.best_read_workers(answer, 0.05, 100e6, 2e9, 4 << 20)


@solution("04", 2)
def _04_2():
    s = (4.5 / 12.0 - 1 / 4) / (1 - 1 / 4)  # tn/t1 = s + (1 - s)/n, solved for s
    print(f"serial fraction {s:.3f}: at most {1 / s:.1f}× however many workers and cores")
    return exercises.serial_fraction(s, 12.0, 4.5, 4)


@solution("04", 3)
def _04_3():
    return exercises.processes_for_cores(8, 8)  # one process per core


# --------------------------------------------------------------------------- notebook 05


@solution("05", 1)
def _05_1():
    answer = 0.010 / (0.010 + 0.030)  # busy only while computing: S / (S + L)
    return exercises.naive_busy(answer, 0.030, 0.010)


@solution("05", 2)
def _05_2(stage_s):
    import math

    answer = math.ceil(sum(stage_s) / 0.002)  # Little's law: L / S batches in flight
    return exercises.min_prefetch(answer, sum(stage_s), 0.002)


@solution("05", 3)
def _05_3():
    answer = 8 / 0.020  # each worker makes one batch per 20 ms, side by side
    return exercises.loader_rate(answer, 8, 0.020)


@solution("05", 4)
def _05_4():
    return exercises.cpu_bound_fix("c")


# --------------------------------------------------------------------------- notebook 06


@solution("06", 1)
def _06_1(model):
    answer = float(model.predict_even(1e12, 1000, 64)) / 3600
    return exercises.cluster_hours(answer, model, 1e12, 1000, 64)


@solution("06", 2)
def _06_2(model):
    answer = model.best_pieces(10e9, 64, max_pieces=4096)
    return exercises.best_piece_count(answer, model, 10e9, 64)


@solution("06", 3)
def _06_3():
    answer = 8 // 3 + (2 < 8 % 3)  # n // world each, one more for the first n % world ranks
    return exercises.shards_of_rank(answer, 8, 3, 2)


@solution("06", 4)
def _06_4(shard_tokens):
    from iokit.ranks import rank_balance

    answer = rank_balance(shard_tokens, 3).idle_fraction
    return exercises.idle_fraction(answer, shard_tokens, 3)


@solution("06", 5)
def _06_5(shard_tokens):
    import math

    from iokit.costs import ShardReadModel

    total = sum(shard_tokens) * 2  # bytes of uint16 IDs
    window = 32_768 * 2  # the panel's windows: 32,768 tokens
    for n in (8, 32):
        per_rank = math.ceil(n / 3)
        requests = per_rank * (1 + math.ceil(total / n / window))
        secs = {p: float(ShardReadModel.from_preset(p).epoch_seconds(total, n, 3, window))
                for p in ("object-store", "local-nvme")}
        print(f"{n:>2} shards, 3 trainers: the busiest reads {per_rank} shards in {requests} "
              f"requests; model epoch {secs['object-store']:.2f} s on the object store, "
              f"{secs['local-nvme'] * 1e3:.1f} ms on local-nvme")
    # an open question: no check, the counts above are what to compare


# --------------------------------------------------------------------------- notebook 07


@solution("07", 1)
def _07_1():
    per_task = exercises.model_loads(44, 44, 4, "task")  # once in every task
    per_worker = exercises.model_loads(4, 44, 4, "worker")  # once in each of the 4 workers
    return per_task and per_worker


@solution("07", 2)
def _07_2(cost_model, docs):
    from iokit.lab.batch import batch_point

    task_bytes = batch_point(docs, "", workers=2, docs_per_task=64).task_bytes
    answer = cost_model.predict(task_bytes, 2, "task")
    print(f"{len(task_bytes)} tasks of 64 documents, the model loaded in each: {answer:.2f} s")
    return exercises.batch_seconds(answer, cost_model, task_bytes, 2, "task")


@solution("07", 3)
def _07_3(load, per_doc):
    import math

    # a task of d documents spends ℓ / (ℓ + d × t) loading; ≤ 10 % when d ≥ 9 ℓ / t
    answer = math.ceil(load.median * 0.9 / (0.1 * per_doc))
    return exercises.docs_per_task_for(answer, load.median, per_doc)


# --------------------------------------------------------------------------- notebook 08


@solution("08", 1)
def _08_1(exercise_signals):
    s = exercise_signals
    slowest = max(s.stage_s, key=s.stage_s.get)
    on_cpu = s.stage_cpu_s.get(slowest, 0.0) / s.stage_s[slowest]
    in_flight = sum(s.stage_s.values()) / s.nominal_step_s  # Little's law: L / S
    print(f"busy {s.compute_s / s.seconds:.0%}: the loop waits; the slowest stage, {slowest}, "
          f"is {on_cpu:.1%} CPU: the loader waits too; {in_flight:.1f} batches in flight "
          f"needed, {s.workers} workers keep at most {s.workers}")
    answer = "latency"  # too few requests in flight
    return exercises.which_bottleneck(answer, exercise_signals)


@solution("08", 2)
def _08_2():
    answer = 4 * 2  # prefetch_factor counts per worker; the kit's prefetch counts them all
    return exercises.torch_batches_in_flight(answer, 4, 2)


@solution("08", 3)
def _08_3():
    import math

    step_s, step_gil_s, loader_gil_s = 0.010, 0.004, 0.006
    interval = 0.005  # sys.getswitchinterval(): a waiting thread gets the GIL after this long
    # the workers cut into the step's Python once per switch interval past the first; 4 ms of
    # Python ends before the first is up, so the workers' Python runs in the step's sleep
    cuts = max(0, math.ceil((step_gil_s - 1e-4) / interval) - 1)
    answer = max(step_s + min(loader_gil_s, cuts * interval),  # the step, cut into
                 step_gil_s + loader_gil_s)  # the two Pythons taking turns
    return exercises.gil_step_seconds(answer, step_s, step_gil_s, loader_gil_s)
