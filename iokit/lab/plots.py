"""The kit's figures: plain matplotlib, drawn on axes the caller gives (or a new figure).

Every axis says what it shows and in which unit; sizes that span decades get log scales.
"""

from __future__ import annotations

import os

import numpy as np

from iokit.costs import amdahl_speedup
from iokit.lab.compression import pareto_front


def _axes(ax=None, figsize=(7, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _finish(ax, xlabel: str, ylabel: str):
    """Label both axes (with their units), draw a light log-friendly grid and the legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def doc_length_histogram(doc_bytes, ax=None):
    """Histogram of document sizes on a log axis: the long tail of long documents."""
    ax = _axes(ax)
    doc_bytes = np.asarray(doc_bytes)
    bins = np.logspace(np.log10(max(doc_bytes.min(), 1)), np.log10(doc_bytes.max() + 1), 40)
    ax.hist(doc_bytes, bins=bins, color="tab:blue", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("document size (bytes, log scale)")
    ax.set_ylabel("documents")
    med = float(np.median(doc_bytes))
    ax.axvline(med, color="k", ls="--", lw=1)
    ax.set_title(f"Document sizes: median {med:,.0f} B, largest {doc_bytes.max():,} B")
    return ax


def zipf_plot(word_counts, ax=None, exponent: float = 1.0):
    """Word frequency against rank on log-log axes, with a 1/rank**s reference line."""
    ax = _axes(ax)
    counts = np.asarray(word_counts, dtype=float)
    ranks = np.arange(1, len(counts) + 1)
    ax.loglog(ranks, counts, ".", ms=2, label="this corpus")
    ax.loglog(ranks, counts[0] * ranks**-exponent, "k--", lw=1,
              label=f"Zipf's law, frequency ∝ 1/rank^{exponent:g}")
    ax.set_xlabel("word rank (1 = most frequent, log scale)")
    ax.set_ylabel("occurrences (log scale)")
    ax.set_title(f"Word frequencies: {len(counts):,} distinct words")
    ax.legend()
    return ax


def seconds_label(t: float) -> str:
    """A time in seconds as a bar label on a seconds axis: "0.0123 s", "4.56 s", "1,234 s"."""
    return f"{t:,.0f} s" if t >= 1000 else f"{t:.3g} s"


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# Where a label may go around its point (offset in points, from the point to the label's
# lower-left or lower-right corner): right and up first, then below, to the left, further out.
LABEL_OFFSETS = [(4, 3), (4, -10), (-4, 3), (-4, -10), (4, 11), (4, -18), (-4, 11), (-4, -18),
                 (4, 19), (4, -26), (-4, 19), (-4, -26), (4, 27), (-4, 27)]


def place_labels(ax, items, fontsize: float = 7) -> list:
    """Annotate points so their labels overlap neither each other nor a marker: each label
    takes the first offset in :data:`LABEL_OFFSETS` whose box is free (by hand, in the spirit
    of adjustText). ``items`` are ``(x, y, text, color)``; returns the annotations."""
    ax.autoscale_view()
    px_per_pt = ax.figure.dpi / 72
    where = [ax.transData.transform((x, y)) for x, y, *_ in items]
    taken = [(px - 3 * px_per_pt, py - 3 * px_per_pt, px + 3 * px_per_pt, py + 3 * px_per_pt)
             for px, py in where]  # the markers
    notes = []
    for i in sorted(range(len(items)), key=lambda i: tuple(where[i])):
        x, y, text, color = items[i]
        px, py = where[i]
        w, h = len(text) * fontsize * 0.62 * px_per_pt, fontsize * 1.15 * px_per_pt
        for dx, dy in LABEL_OFFSETS:
            left = px + dx * px_per_pt - (w if dx < 0 else 0)
            box = (left, py + dy * px_per_pt, left + w, py + dy * px_per_pt + h)
            if not any(_overlaps(box, t) for t in taken):
                break
        else:
            dx, dy = LABEL_OFFSETS[0]  # crowded everywhere: the usual place
        taken.append(box)
        notes.append(ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                                 ha="left" if dx >= 0 else "right", fontsize=fontsize,
                                 color=color))
    return notes


def _stacked_seconds(results, colors: dict, rest: str, ax=None):
    """Stacked horizontal bars, one per result: its ``stage_seconds`` in ``colors``, and the
    rest of its wall time (labelled ``rest``) in gray. Returns the axes and the totals."""
    ax = _axes(ax, figsize=(7, 1.2 + 0.6 * len(results)))
    names = [r.name for r in results]
    left = np.zeros(len(results))
    for stage, color in colors.items():
        secs = np.array([r.stage_seconds.get(stage, 0.0) for r in results])
        ax.barh(names, secs, left=left, color=color, label=stage)
        left += secs
    totals = np.array([r.seconds for r in results])
    ax.barh(names, np.clip(totals - left, 0, None), left=left, color="lightgray", label=rest)
    ax.invert_yaxis()
    return ax, totals


def stage_breakdown(results, ax=None):
    """Stacked horizontal bars: seconds spent reading, processing and writing, per loop."""
    ax, _ = _stacked_seconds(results, {"read": "tab:blue", "process": "tab:orange",
                                       "write": "tab:green"}, "loop overhead", ax)
    ax.set_xlabel("seconds")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("Where the time goes")
    return ax


def throughput_model_curve(model, chunks):
    """x (bytes) and y (MB/s) of a request-cost model's throughput over a chunk-size range."""
    xs = np.logspace(np.log10(min(chunks)), np.log10(max(chunks)), 100)
    return xs, model.throughput(xs) / 1e6


def predicted_vs_measured(pairs, ax=None):
    """Grouped bars per stage: predicted and measured seconds, for (name, prediction, result)."""
    ax = _axes(ax)
    stages = ["read", "process", "write"]
    width = 0.8 / (2 * len(pairs))
    x = np.arange(len(stages))
    for i, (name, pred, result) in enumerate(pairs):
        offset = (2 * i - len(pairs) + 0.5) * width
        ax.bar(x + offset, [pred.stage_seconds[s] for s in stages], width, alpha=0.45,
               hatch="//", label=f"{name}: predicted", color=f"C{i}")
        ax.bar(x + offset + width, [result.stage_seconds.get(s, 0.0) for s in stages], width,
               label=f"{name}: measured", color=f"C{i}")
    ax.set_xticks(x, stages)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale)")
    ax.set_title("Predicted and measured time per stage")
    ax.legend(fontsize="small")
    return ax


def sweep_with_model(points, model, ax=None, label="measured"):
    """Throughput against chunk size (log-log) with the fitted request-cost model through it."""
    ax = _axes(ax)
    chunks = [p.request_bytes for p in points]
    ax.loglog(chunks, [p.mb_per_s for p in points], "o", label=label)
    ax.loglog(*throughput_model_curve(model, chunks), "--", label=f"model: {model}")
    return _finish(ax, "bytes per request (log scale)", "throughput (MB/s, log scale)")


# --------------------------------------------------------------------------- notebook 02


def epoch_breakdown(results, ax=None):
    """Stacked horizontal bars: seconds of one epoch spent reading and tokenizing, per way."""
    ax, totals = _stacked_seconds(results, {"read": "tab:blue", "tokenize": "tab:orange"},
                                  "other", ax)
    for i, t in enumerate(totals):
        ax.text(t, i, f" {seconds_label(t)}", va="center", fontsize="small")
    ax.set_xlim(0, totals.max() * 1.25)  # linear: stacked bars keep their proportions
    ax.set_xlabel("seconds per epoch")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("One epoch: from text, or from pretokenized shards")
    return ax


def break_even(model, max_epochs: int | None = None, ax=None):
    """Cumulative seconds after k epochs, on the fly (k·R) against pretokenized (P + k·S)."""
    ax = _axes(ax)
    be = model.break_even
    top = max_epochs or max(5, int(np.ceil(2 * be)) if np.isfinite(be) else 5)
    k = np.arange(0, top + 1)
    ax.plot(k, model.on_the_fly(k), "o-", color="tab:orange",
            label=f"tokenize every epoch: k × {model.raw_epoch_s:.3g} s")
    ax.plot(k, model.pretokenized(k), "s-", color="tab:blue",
            label=f"pretokenize once: {model.preprocess_s:.3g} s + k × {model.shard_epoch_s:.2g} s")
    if np.isfinite(be):
        ax.axvline(be, color="k", ls="--", lw=1, label=f"break-even: {be:.2f} epochs")
    ax.set_xlabel("epochs k")
    ax.set_ylabel("cumulative seconds")
    ax.set_title("When does tokenizing once pay?")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def disk_bytes(labels, nbytes, tokens=None, ax=None):
    """Horizontal bars of bytes on disk (MB), annotated with bytes per token where known."""
    ax = _axes(ax, figsize=(7, 1.2 + 0.5 * len(labels)))
    mb = np.asarray(nbytes, dtype=float) / 1e6
    bars = ax.barh(labels, mb, color="tab:blue")
    for i, bar in enumerate(bars):
        note = f"{mb[i]:,.2f} MB"
        if tokens is not None and tokens[i]:
            note += f" · {nbytes[i] / tokens[i]:.2f} B/token"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + note, va="center",
                fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, mb.max() * 1.45)
    ax.set_xlabel("bytes on disk (MB)")
    ax.set_title("The same corpus as text and as token IDs")
    return ax


# --------------------------------------------------------------------------- notebook 03


def codec_pareto(results_by_data: dict, ax=None, speed: str = "decompress_mb_s"):
    """Ratio against speed (log x) for each codec, one marker per data set, front joined.

    ``results_by_data`` maps a label ("text", "token IDs") to a list of CodecResult.
    """
    ax = _axes(ax)
    markers = "osD^v"
    labels = []
    for k, (label, results) in enumerate(results_by_data.items()):
        color = f"C{k}"
        xs = [getattr(r, speed) for r in results]
        ax.scatter(xs, [r.ratio for r in results], marker=markers[k % 5], color=color,
                   label=label, zorder=3)
        labels += [(x, r.ratio, r.name, color) for r, x in zip(results, xs)]
        front = pareto_front(results, speed)
        ax.plot([getattr(r, speed) for r in front], [r.ratio for r in front], "--",
                color=color, lw=1, label=f"{label}: Pareto front")
    ax.set_xscale("log")
    place_labels(ax, labels)  # after the scale is set: placement works in screen space
    what = "decompression" if speed.startswith("de") else "compression"
    return _finish(ax, f"{what} speed (MB/s of raw data, log scale)",
                   "compression ratio (raw / stored)")


def block_bytes_ratio(points, ax=None, whole: dict | None = None):
    """Ratio against block size (log x), one line per codec; ``whole`` = {label: ratio} lines."""
    ax = _axes(ax)
    by: dict = {}
    for p in points:
        by.setdefault(p.codec, []).append(p)
    for codec, pts in by.items():
        ax.plot([p.block_bytes for p in pts], [p.ratio for p in pts], "o-", label=codec)
    for k, (label, ratio) in enumerate((whole or {}).items()):
        ax.axhline(ratio, color="gray", ls=":" if k else "--", lw=1, label=label)
    ax.set_xscale("log", base=2)
    return _finish(ax, "block size (raw bytes, log scale)", "compression ratio (raw / stored)")


def read_time_comparison(comparisons, ax=None):
    """Grouped bars per storage: predicted (hatched) and measured seconds of each codec."""
    ax = _axes(ax, figsize=(8, 4))
    codecs = list(comparisons[0].predicted)
    x = np.arange(len(comparisons))
    width = 0.8 / (2 * len(codecs))
    for i, name in enumerate(codecs):
        off = (2 * i - len(codecs)) * width + width / 2
        ax.bar(x + off, [c.predicted[name] for c in comparisons], width, color=f"C{i}",
               alpha=0.45, hatch="//", label=f"{name}: predicted")
        ax.bar(x + off + width, [c.measured[name] for c in comparisons], width, color=f"C{i}",
               label=f"{name}: measured")
    ax.set_xticks(x, [f"{c.storage}\n{c.bandwidth / 1e6:,.0f} MB/s" for c in comparisons])
    ax.set_yscale("log")
    ax.set_ylabel("seconds to read the sample (log scale)")
    ax.legend(fontsize="x-small", ncol=2)
    ax.set_title("Reading from simulated storage: predicted and measured")
    return ax


# --------------------------------------------------------------------------- notebook 04


def speedup_vs_workers(series: dict, ax=None, serial_fraction: float | None = None):
    """Speedup against worker count, one line per series ``{label: (workers, speedups)}``.

    The ideal (speedup = workers) is drawn dashed; with ``serial_fraction``, Amdahl's law too.
    """
    ax = _axes(ax)
    top = 1
    for label, (workers, speedups) in series.items():
        ax.plot(workers, speedups, "o-", label=label)
        top = max(top, max(workers))
    xs = np.linspace(1, top, 50)
    ax.plot(xs, xs, "k:", lw=1, label="ideal (speedup = workers)")
    if serial_fraction is not None:
        cores = os.cpu_count() or 1  # workers beyond the cores take turns on them
        ax.plot(xs, amdahl_speedup(xs, serial_fraction, cores), "k--", lw=1,
                label=f"Amdahl (capped at {cores} cores), serial fraction {serial_fraction:.2f}")
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup over 1 worker (×)")
    ax.set_ylim(0, max(2.5, ax.get_ylim()[1]))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def read_scaling(points, model, request_bytes: int, ax=None):
    """Threaded read throughput against threads (log-log), with the model and its cap."""
    ax = _axes(ax)
    workers = [p.workers for p in points]
    ax.loglog(workers, [p.mb_per_s for p in points], "o", label="measured")
    xs = np.logspace(0, np.log10(max(workers)), 100)
    ax.loglog(xs, model.throughput(xs, request_bytes) / 1e6, "--",
              label="model: min(n × per-stream rate, aggregate)")
    ax.axhline(model.aggregate_bandwidth / 1e6, color="gray", lw=1, ls=":",
               label="aggregate bandwidth")
    ax.set_title(f"{request_bytes // 1024:,} KiB reads from a simulated object store")
    return _finish(ax, "threads (log scale)", "throughput (MB/s, log scale)")


def chunk_size_effect(points, ax=None):
    """Speedup against chunk size (items per task, log scale) at a fixed worker count; each
    point's speedup is over the single-worker runs timed in turn with it."""
    ax = _axes(ax)
    ax.semilogx([p.chunk_size for p in points], [p.speedup() for p in points],
                "o-", base=2, label=f"{points[0].workers} {points[0].kind}")
    ax.axhline(points[0].workers, color="k", ls=":", lw=1, label="ideal")
    ax.axhline(1, color="gray", lw=1)
    ax.set_ylim(0, points[0].workers + 0.5)
    return _finish(ax, "task size (documents per task, log scale)",
                   "speedup over 1 process (×)")


# --------------------------------------------------------------------------- notebook 05

STAGE_COLORS = {"read": "tab:blue", "decompress": "tab:orange", "batch": "tab:green",
                "train": "tab:purple", "wait": "tab:red", "tokenize": "tab:cyan",
                "transfer": "tab:olive"}


def timeline_gantt(timeline, ax=None, title: str = "", t_max: float | None = None,
                   rows=()):
    """A Gantt chart of a :class:`~iokit.timing.Timeline`: one row per worker (the training
    loop on top), one bar per span, coloured by stage (read, decompress, batch, train, wait).
    ``rows`` names workers to show even when they did nothing (an idle worker is an empty row,
    not a missing one)."""
    ax = _axes(ax, figsize=(8, 3))
    spans = list(timeline.spans)
    workers = sorted({s.worker for s in spans} | set(rows),
                     key=lambda w: (w != "trainer", w != "loop", w))
    t0 = min((s.start for s in spans), default=0.0)
    seen = set()
    for row, w in enumerate(workers):
        for stage, color in STAGE_COLORS.items():
            bars = [(s.start - t0, max(s.seconds, 1e-5)) for s in spans
                    if s.worker == w and s.stage == stage]
            if bars:
                ax.broken_barh(bars, (row - 0.4, 0.8), facecolors=color,
                               edgecolor="none" if w == "trainer" else "white",
                               linewidth=0.25,
                               label=stage if stage not in seen else None)
                seen.add(stage)
    ax.set_yticks(range(len(workers)), workers)
    ax.set_ylim(len(workers) - 0.5, -0.5)
    ax.set_xlim(0, t_max if t_max else max((s.end - t0 for s in spans), default=1.0))
    ax.set_xlabel("time since the loop started (s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def timelines_side_by_side(runs: dict, fig=None):
    """Gantt charts of several training runs (label → TrainRun), stacked on one time axis."""
    import matplotlib.pyplot as plt

    rows = [len({s.worker for s in r.timeline.spans}) for r in runs.values()]
    if fig is None:
        fig = plt.figure(figsize=(8, 1.2 + 0.45 * sum(rows) + 0.6 * len(runs)),
                         layout="constrained")
    axes = fig.subplots(len(runs), 1, sharex=True, gridspec_kw={"height_ratios": rows})
    axes = np.atleast_1d(axes)
    t_max = max(r.seconds for r in runs.values())
    for ax, (label, r) in zip(axes, runs.items()):
        timeline_gantt(r.timeline, ax=ax, t_max=t_max,
                       title=f"{label}: busy {r.busy_fraction:.0%}, {r.steps_per_s:,.0f} steps/s")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    return fig


def busy_predicted_vs_measured(labels, predicted, measured, ax=None):
    """Bars of the accelerator's busy fraction per configuration: the model against the run."""
    ax = _axes(ax, figsize=(7, 1.2 + 0.5 * len(labels)))
    y = np.arange(len(labels))
    ax.barh(y - 0.2, predicted, 0.4, color="lightgray", edgecolor="k", label="model")
    ax.barh(y + 0.2, measured, 0.4, color="tab:purple", label="measured")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("busy fraction (time computing / wall time)")
    ax.legend(loc="lower left", bbox_to_anchor=(1.0, 0.0), fontsize="small")
    ax.set_title("Is the training loop starved? Model against measurement")
    return ax


def busy_vs_prefetch(sweep, ax=None):
    """Busy fraction against prefetch depth: measured points and the model's line, from
    :func:`iokit.lab.training.prefetch_sweep`'s (depth, run, model) triples."""
    ax = _axes(ax)
    depths = [d for d, _, _ in sweep]
    ax.plot(depths, [r.busy_fraction for _, r, _ in sweep], "o", color="tab:purple",
            label="measured")
    ax.plot(depths, [m.busy_fraction(r.steps) for _, r, m in sweep], "--", color="k",
            label="model, with the first batch's wait")
    ax.plot(depths, [m.busy_fraction() for _, _, m in sweep], ":", color="gray",
            label="model, steady state")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("prefetch depth (batches made ahead of the loop)")
    ax.set_ylabel("busy fraction")
    m = sweep[0][2]
    ax.set_title(f"{m.workers} workers, {m.step_s * 1e3:g} ms steps, "
                 f"{m.load_s * 1e3:.1f} ms per batch: prefetch ≥ {m.min_prefetch()} keeps it busy")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


# --------------------------------------------------------------------------- notebook 06


def engine_times(timings, predicted: dict | None = None, ax=None):
    """Horizontal bars: each engine's median seconds (whiskers: fastest and slowest run), with
    the model's prediction as a marker where there is one (``label → seconds``)."""
    ax = _axes(ax, figsize=(7, 1.2 + 0.5 * len(timings)))
    y = np.arange(len(timings))
    med = np.array([t.timing.median for t in timings])
    lo = med - np.array([t.timing.min for t in timings])
    hi = np.array([t.timing.max for t in timings]) - med
    ax.barh(y, med, xerr=[lo, hi], color="tab:blue", alpha=0.7, capsize=3, label="measured")
    if predicted:
        pts = [(i, predicted[t.label]) for i, t in enumerate(timings) if t.label in predicted]
        ax.plot([p for _, p in pts], [i for i, _ in pts], "D", color="black", label="model")
    ax.set_yticks(y, [t.label for t in timings])
    ax.invert_yaxis()
    ax.set_xlabel("seconds to preprocess the corpus (median; whiskers: min and max)")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def piece_count_sweep(points, model, slots: int, ax=None):
    """Seconds against the number of pieces on ``slots`` workers: measured (median, whiskers
    min to max) and the cluster model for the same pieces."""
    ax = _axes(ax)
    n = [p.parts for p in points]
    med = np.array([p.timing.median for p in points])
    err = [med - [p.timing.min for p in points], [p.timing.max for p in points] - med]
    ax.errorbar(n, med, yerr=err, fmt="o", capsize=3, label=f"measured, {slots} workers")
    ax.plot(n, [model.predict(p.piece_bytes, slots) for p in points], "s--",
            label="model: start-up + waves × (piece / rate + overhead)")
    ax.set_xscale("log")
    total = sum(points[0].piece_bytes) if points else 0
    ax.set_xlabel(f"pieces (= shards) {total / 1e6:,.1f} MB of documents are cut into "
                  "(log scale)")
    ax.set_ylabel("seconds to preprocess")
    ax.legend(fontsize="small")
    return ax


def cluster_forecast(model, total_bytes: float, machines, pieces, cores: int = 2, ax=None):
    """Predicted hours to preprocess ``total_bytes`` on clusters of ``machines`` × ``cores``
    worker slots, one line per piece count (log-log), against a perfect speedup."""
    ax = _axes(ax)
    machines = np.asarray(machines)
    for n in pieces:
        hours = model.predict_even(total_bytes, n, machines * cores) / 3600
        ax.plot(machines, hours, "-", label=f"{n:,} pieces of {total_bytes / n / 1e6:,.0f} MB")
    ideal = (total_bytes / model.bytes_per_s / (machines * cores)) / 3600
    ax.plot(machines, ideal, "k:", label="perfect speedup, no overhead")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"machines ({cores} workers each, log scale)")
    ax.set_ylabel("predicted hours (log scale)")
    ax.set_title(f"preprocessing {total_bytes / 1e12:,.1f} TB with the measured costs")
    ax.legend(fontsize="small")
    return ax


# --------------------------------------------------------------------------- notebook 08


def icicle(tree, ax=None, title: str = "", min_label_share: float = 0.04):
    """An icicle chart of a call tree (:class:`iokit.lab.profiling.Frame`): the top function
    spans the whole width, each row below splits a function's time among the functions it
    called (the gap under a bar is time in the function itself). Read it at a glance: the
    widest bars deepest down are where the time goes."""
    import matplotlib as mpl

    frames = list(tree.walk())
    depth = max(d for d, _ in frames) + 1
    ax = _axes(ax, figsize=(9, 0.5 + 0.38 * depth))
    total = tree.seconds or 1.0
    cmap = mpl.colormaps["tab20"]
    colors: dict[str, object] = {}

    def draw(node, x0: float, d: int) -> None:
        module = node.name.split(".")[0].split(" ")[0]
        color = colors.setdefault(module, cmap(len(colors) % 20))
        ax.barh(d, node.seconds, left=x0, height=0.9, color=color, edgecolor="white",
                linewidth=0.5)
        if node.seconds >= min_label_share * total:
            width = node.seconds / total
            label = node.name if len(node.name) <= 90 * width else \
                node.name[:max(int(90 * width) - 1, 1)] + "…"
            ax.text(x0 + node.seconds / 2, d, label, ha="center", va="center", fontsize=7,
                    clip_on=True)
        x = x0
        for c in node.children:
            draw(c, x, d + 1)
            x += c.seconds

    draw(tree, 0.0, 0)
    ax.set_ylim(depth - 0.5, -0.5)
    ax.set_xlim(0, total)
    ax.set_yticks(range(depth), [str(i) for i in range(depth)])
    ax.set_ylabel("call depth")
    ax.set_xlabel("seconds (width = time in the function and what it called)")
    ax.set_title(title or f"Where {seconds_label(total)} went")
    return ax


def gil_steps(runs, ax=None):
    """Steps per second of a training loop fed by thread or process workers, for each share
    of the step that holds the GIL: measured bars and the pipeline model's marks."""
    ax = _axes(ax, figsize=(7, 3.5))
    shares = sorted({r.gil_share for r in runs})
    kinds = ["threads", "processes"]
    width = 0.38
    for i, kind in enumerate(kinds):
        rs = [next(r for r in runs if r.kind == kind and r.gil_share == g) for g in shares]
        x = np.arange(len(shares)) + (i - 0.5) * width
        ax.bar(x, [r.steps_per_s for r in rs], width,
               label=f"{'thread' if kind == 'threads' else 'process'} workers, measured",
               color="tab:blue" if kind == "threads" else "tab:green")
        ax.plot(x, [r.model.steps_per_s(r.run.steps) for r in rs], "k_", ms=22, mew=2,
                label="pipeline model" if i == 0 else None)
    ax.set_xticks(range(len(shares)), [f"{g:.0%} of the step\nholds the GIL" for g in shares])
    ax.set_ylabel("training steps per second")
    ax.set_title("A step that holds the GIL, fed by thread or process workers")
    ax.legend(fontsize="small", loc="lower left")
    ax.grid(True, axis="y", alpha=0.3)
    return ax
