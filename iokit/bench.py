"""Benchmarks: ratios measured side by side in one run, never absolute thresholds.

Each entry of :data:`FIGURES` is a function ``figure(corpus, workdir) -> list[Figure]``; the
techniques add theirs. ``iokit bench`` prints them all.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Figure:
    """One benchmark figure: what was compared, the measured value, and its unit."""

    name: str
    value: float
    unit: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.name:<60} {self.value:>10.3g} {self.unit:<10} {self.note}"


FIGURES: list[Callable[[Path, Path], list[Figure]]] = []


def run_bench(corpus, figures=None) -> list[Figure]:
    """Measure every figure on ``corpus`` in one run."""
    out: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="iokit-bench-") as tmp:
        for fn in figures or FIGURES:
            out.extend(fn(Path(corpus), Path(tmp)))
    return out


# --------------------------------------------------------------------------- pretokenized shards


def figure_pretokenized(corpus: Path, workdir: Path) -> list[Figure]:
    """(a) epoch from shards vs from text; (b) window sampling vs a numpy copy of its bytes."""
    from .corpus import iter_documents
    from .epochs import copy_rate, raw_epoch, sampling_rate, shard_epoch
    from .shards import open_shards, pretokenize
    from .timing import measure
    from .tokenize import WordTokenizer

    tok = WordTokenizer.train(d.text for d in iter_documents(corpus))
    folder = workdir / "shards-word"
    pretokenize(corpus, tok, folder)
    size = corpus.stat().st_size
    shards = open_shards(folder)
    raw = measure(lambda: raw_epoch(corpus, tok), repeat=3, warmup=1)
    pre = measure(lambda: shard_epoch(shards, size), repeat=5, warmup=1)
    shards.close()
    batch, block = 64, 1024
    sample = sampling_rate(folder, batch, block, batches=20, repeat=5)
    number = 50
    copy = copy_rate(sample.bytes_per_batch, number=number)
    fraction = (copy.median / number) / sample.seconds_per_batch
    return [
        Figure("pretokenized epoch speedup over raw-text epoch (word tokenizer)",
               raw.median / pre.median, "×",
               f"text {raw.median:.3g} s, shards {pre.median:.3g} s per epoch"),
        Figure(f"window sampling ({batch}×{block}, warm) / numpy copy of same bytes",
               fraction, "fraction",
               f"{sample.tokens_per_s / 1e6:,.1f} M tokens/s; copy "
               f"{copy.mb_per_s:,.0f} MB/s"),
    ]


FIGURES.append(figure_pretokenized)


# --------------------------------------------------------------------------- the pipeline


def figure_pipeline(corpus: Path, workdir: Path) -> list[Figure]:
    """Busy fraction of a 5 ms training step on the object store: naive loader vs 8 workers
    with prefetch, and the measured speedup in training steps per second."""
    from .pipeline import WALK, pipeline_walk

    folder = workdir / "shards-word"
    if not (folder / "shard-00000.idx").exists():
        from .corpus import iter_documents
        from .shards import pretokenize
        from .tokenize import WordTokenizer

        pretokenize(corpus, WordTokenizer.train(d.text for d in iter_documents(corpus)), folder)
    naive, best = pipeline_walk(folder, storage="object-store", step_s=0.005, steps=60,
                                walk=[WALK[0], WALK[2]], workdir=workdir)
    return [
        Figure("pipeline busy fraction, naive loader (object store, 5 ms step)",
               naive.run.busy_fraction, "fraction", f"model {naive.predicted_busy:.2f}"),
        Figure("pipeline busy fraction, 8 workers + prefetch 8 (same)",
               best.run.busy_fraction, "fraction", f"model {best.predicted_busy:.2f}"),
        Figure("pipeline training speedup, 8 workers + prefetch 8 / naive",
               best.run.steps_per_s / naive.run.steps_per_s, "×",
               f"{naive.run.steps_per_s:,.0f} → {best.run.steps_per_s:,.0f} steps/s"),
    ]


FIGURES.append(figure_pipeline)
