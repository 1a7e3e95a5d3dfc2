"""Live controls and plots for the notebooks (ipywidgets and matplotlib, imported lazily).

The pattern every notebook uses: a :class:`Panel` holds controls (sliders with
``continuous_update=False``, dropdowns) and a Run button; a :class:`LivePlot` is a matplotlib
figure built once and shown through a display handle, whose lines get new data point by point
while a sweep runs. ``panel.show()`` displays both and runs the defaults once, so a headless run
(nbval, ``nbconvert --execute``) still produces the plot, and a test can change a control,
call ``panel.run()`` and check the plotted data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iokit.blocks import BlockReader
from iokit.corpus import resolve_scale
from iokit.costs import (
    PipelineModel,
    ShardReadModel,
    amdahl_speedup,
    fit_serial_fraction,
    predict_read_seconds,
)
from iokit.lab.chunks import chunk_sweep, fit_sweep, powers_of_two
from iokit.lab.compare import format_speedup
from iokit.lab.compression import compare_reads
from iokit.lab.epochs import sampling_rate
from iokit.lab.plots import throughput_model_curve, timeline_gantt
from iokit.lab.scale_out import PANEL_BYTES, corpus_head, read_by_rank, shards_for
from iokit.lab.scaling import tokenize_point
from iokit.lab.training import calibrate, run_training
from iokit.storage import PRESETS, SimulatedStore, StoragePreset, get_preset, open_storage
from iokit.timing import format_bytes


class LivePlot:
    """A figure with named series that can grow point by point, redrawn in place."""

    def __init__(self, xlabel: str, ylabel: str, *, title: str = "", xscale: str = "log",
                 yscale: str = "log", figsize=(7, 4)):
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=figsize, layout="constrained")
        self.ax = self.fig.add_subplot()
        self.ax.set_xlabel(xlabel)
        self.ax.set_ylabel(ylabel)
        self.ax.set_xscale(xscale)
        self.ax.set_yscale(yscale)
        if title:
            self.ax.set_title(title)
        self.ax.grid(True, which="both", alpha=0.3)
        self.lines: dict = {}
        self._handle = None

    def line(self, name: str, style: str = "o-", **kwargs):
        """The line called ``name``, created on first use."""
        if name not in self.lines:
            (self.lines[name],) = self.ax.plot([], [], style, label=name, **kwargs)
            self.ax.legend(loc="best", fontsize="small")
        return self.lines[name]

    def add_point(self, name: str, x: float, y: float, style: str = "o-") -> None:
        ln = self.line(name, style)
        xs, ys = list(ln.get_xdata()), list(ln.get_ydata())
        ln.set_data(xs + [x], ys + [y])
        self.redraw()

    def set_series(self, name: str, x, y, style: str = "--") -> None:
        self.line(name, style).set_data(list(x), list(y))
        self.redraw()

    def remove(self, name: str) -> None:
        """Take the series ``name`` off the plot and out of the legend."""
        self.lines.pop(name).remove()
        if self.lines:
            self.ax.legend(loc="best", fontsize="small")
        elif self.ax.get_legend() is not None:
            self.ax.get_legend().remove()

    def data(self, name: str):
        """The (x, y) data of a series, as lists (for tests and summaries)."""
        ln = self.lines[name]
        return list(ln.get_xdata()), list(ln.get_ydata())

    def clear(self) -> None:
        for ln in self.lines.values():
            ln.set_data([], [])

    def redraw(self) -> None:
        self.ax.relim()
        self.ax.autoscale_view()
        if self._handle is not None:
            self._handle.update(self.fig)

    def show(self) -> None:
        from IPython.display import display

        _ensure_png_figures(self.fig)
        self._handle = display(self.fig, display_id=True)


def _ensure_png_figures(fig) -> None:
    """Make IPython show figures as PNG images even if the notebook never imported pyplot.

    The notebook backend registers its PNG formatter when pyplot is first used; until then a
    figure displays as the text "<Figure size ...>" (which nbval masks, so only a browser sees
    it)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    try:
        shell.display_formatter.formatters["image/png"].lookup(fig)
    except KeyError:
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"})


@dataclass
class Panel:
    """Controls + a Run button + a live plot; ``run_fn(panel)`` does one sweep."""

    controls: dict
    plot: LivePlot
    run_fn: Callable[[Panel], None]
    description: str = "Run"
    status: object = None
    button: object = None
    results: list = field(default_factory=list)

    def __post_init__(self):
        import ipywidgets as w

        self.button = w.Button(description=self.description, button_style="primary",
                               icon="play")
        self.status = w.HTML()
        self.button.on_click(lambda _: self.run())

    def value(self, name: str):
        return self.controls[name].value

    def say(self, html: str) -> None:
        self.status.value = html

    def run(self) -> None:
        self.button.disabled = True
        self.say("running…")  # the last run's status would describe other settings
        try:
            self.results.clear()
            self.run_fn(self)
        except Exception as exc:  # shown in the panel, and raised for the notebook
            self.say(f"<b style='color:#b00'>error:</b> {exc}")
            raise
        finally:
            self.button.disabled = False

    @property
    def box(self):
        import ipywidgets as w

        # wrap onto a second row rather than squeeze sliders to nothing in a narrow notebook
        row = w.HBox([*self.controls.values(), self.button], layout=w.Layout(flex_flow="row wrap"))
        return w.VBox([row, self.status])

    def show(self, run: bool = True) -> Panel:
        """Display the controls and the plot; run the defaults once (for headless runs)."""
        from IPython.display import display

        display(self.box)
        self.plot.show()
        if run:
            self.run()
        return self


# --------------------------------------------------------------------------- notebook 01

SWEEP_STORAGES = {
    "local disk, warm cache": ("local", False),
    "local disk, cold cache": ("local", True),
    "simulated local-nvme": ("local-nvme", False),
    "simulated network-fs": ("network-fs", False),
    "simulated hdd": ("hdd", False),
    "simulated object-store": ("object-store", False),
}


def chunk_sweep_panel(path, lo: int = 1, hi: int = 4 << 20) -> Panel:
    """Notebook 01's panel: sweep chunk sizes on a storage, plot MB/s, fit the cost model.

    Controls: ``chunk sizes`` (a range of powers of two, bytes) and ``storage``.
    """
    import ipywidgets as w

    sizes = powers_of_two(1, 64 << 20)
    options = [(format_bytes(c), c) for c in sizes]
    controls = {
        "chunks": w.SelectionRangeSlider(options=options, index=(sizes.index(lo), sizes.index(hi)),
                                         description="chunk sizes", continuous_update=False,
                                         layout=w.Layout(width="420px")),
        "storage": w.Dropdown(options=list(SWEEP_STORAGES), description="storage"),
    }
    plot = LivePlot("bytes per read call (log scale)",
                    "throughput (MB/s, log scale)", title="Read throughput against chunk size")

    def run(panel: Panel) -> None:
        label = panel.value("storage")
        name, cold = SWEEP_STORAGES[label]
        storage = open_storage(name)
        lo_, hi_ = panel.value("chunks")
        chunks = powers_of_two(lo_, hi_)
        simulated = getattr(storage, "simulated", False)
        for key in (label, f"model fit: {label}"):
            if key in plot.lines:
                plot.lines.pop(key).remove()
        points = []
        kwargs = {"max_calls": 25, "repeat": 1, "warmup": 0} if simulated else {}
        for p in chunk_sweep(path, chunks, storage, cold=cold, **kwargs):
            points.append(p)
            plot.add_point(label, p.request_bytes, p.mb_per_s)
            panel.say(f"{label}: {format_bytes(p.chunk)} → {p.mb_per_s:,.1f} MB/s "
                      f"({p.calls:,} calls)")
        panel.results[:] = points
        if len(points) >= 2:
            model = fit_sweep(points)
            plot.set_series(f"model fit: {label}", *throughput_model_curve(model, chunks))
            panel.model = model
            panel.say(f"{label}: fitted {model}" + (" (simulated storage)" if simulated else ""))

    return Panel(controls, plot, run, description="Run sweep")


# --------------------------------------------------------------------------- notebook 02


def sampling_panel(folders: dict, model=None, *, batch: int = 16,
                   blocks: tuple[int, int] = (16, 1024)) -> Panel:
    """Notebook 02's panel: random-window sampling throughput against block size.

    ``folders`` maps a tokenizer name to its shard folder. Controls: ``batch`` size, a range of
    ``block`` sizes (powers of two), the ``tokenizer`` (shard set) and the page ``cache`` (warm,
    or dropped before every run). ``model`` (a SamplingCostModel), if given, is drawn dashed.
    """
    import ipywidgets as w

    batches = powers_of_two(1, 512)
    block_options = powers_of_two(4, 16384)
    controls = {
        "batch": w.SelectionSlider(options=batches, value=batch, description="batch size",
                                   continuous_update=False),
        "blocks": w.SelectionRangeSlider(options=block_options, index=(
            block_options.index(blocks[0]), block_options.index(blocks[1])),
            description="block sizes", continuous_update=False, layout=w.Layout(width="360px")),
        "tokenizer": w.Dropdown(options=list(folders), description="tokenizer"),
        "cache": w.Dropdown(options=["warm", "cold"], description="page cache"),
    }
    plot = LivePlot("block size (tokens per window, log scale)",
                    "sampled tokens per second (log scale)",
                    title="Random training windows from a memory-mapped shard")

    def run(panel: Panel) -> None:
        b, tok, cache = panel.value("batch"), panel.value("tokenizer"), panel.value("cache")
        label = f"{tok}, batch {b}, {cache}"
        if label in plot.lines:
            plot.lines.pop(label).remove()
        lo, hi = panel.value("blocks")
        sizes = powers_of_two(lo, hi)
        for t in sizes:
            n = max(1, min(50, 1_000_000 // (b * t)))
            r = sampling_rate(folders[tok], b, t, batches=n, cold=cache == "cold", repeat=3)
            panel.results.append(r)
            plot.add_point(label, t, r.tokens_per_s)
            panel.say(f"{label}: block {t:,} → {r.tokens_per_s / 1e6:,.2f} M tokens/s")
        if model is not None:
            key = f"model, batch {b}"
            if key in plot.lines:
                plot.lines.pop(key).remove()
            plot.set_series(key, sizes, model.tokens_per_s(b, sizes))

    return Panel(controls, plot, run, description="Run sweep")


# --------------------------------------------------------------------------- notebook 03

BREAK_EVEN_STORAGES = ["bandwidth slider", "local-nvme", "network-fs", "hdd", "object-store"]


def break_even_panel(paths: dict, profiles, lo_mb: float = 10, hi_mb: float = 10_000) -> Panel:
    """Notebook 03's panel: each codec's predicted read time against storage bandwidth (lines)
    and its measured time on the simulated store (points), and the winner of each.

    ``paths`` maps codec name to its block file, ``profiles`` are their measured
    :class:`~iokit.costs.CodecProfile`. Controls: ``storage`` (the slider's bandwidth with no
    latency, or a preset), ``bandwidth`` (MB/s) and ``overlap`` (decompress while fetching).
    Measured points accumulate across runs with the same latency and overlap.
    """
    import ipywidgets as w

    with BlockReader(next(iter(paths.values()))) as r:
        nbytes, blocks = r.size, r.table.n_blocks
    controls = {
        "storage": w.Dropdown(options=BREAK_EVEN_STORAGES, description="storage"),
        "bandwidth": w.FloatLogSlider(value=100, base=10, min=np.log10(lo_mb),
                                      max=np.log10(hi_mb), step=0.05, description="MB/s",
                                      continuous_update=False, readout_format=",.0f"),
        "overlap": w.Checkbox(value=False, description="decompress while fetching"),
    }
    plot = LivePlot("storage bandwidth (MB/s, log scale)",
                    f"seconds to read {nbytes / 1e6:,.1f} MB (log scale)",
                    title="When does compression pay? lines: model, points: measured")
    state = {"key": None}

    def run(panel: Panel) -> None:
        choice, overlap = panel.value("storage"), panel.value("overlap")
        if choice == "bandwidth slider":
            bw = panel.value("bandwidth") * 1e6
            preset = StoragePreset(f"{bw / 1e6:,.0f} MB/s", 0.0, bw, bw, "the slider")
        else:
            preset = get_preset(choice)
        latency = preset.latency
        key = (latency, overlap)
        if state["key"] != key:  # new curves: old points were measured under other settings
            for ln in list(plot.lines):
                plot.lines.pop(ln).remove()
            state["key"] = key
        bws = np.logspace(np.log10(lo_mb), np.log10(hi_mb), 60) * 1e6
        for i, prof in enumerate(profiles):
            ys = [predict_read_seconds([prof], nbytes, b, overlap=overlap, requests=blocks,
                                       latency=latency)[prof.name] for b in bws]
            plot.line(f"model: {prof.name}", "-", color=f"C{i}", lw=1).set_data(bws / 1e6, ys)
        plot.redraw()  # once for all the model lines
        cmp = compare_reads(paths, profiles, preset, prefetch=overlap)
        for i, prof in enumerate(profiles):
            plot.line(prof.name, "o", color=f"C{i}")
            plot.add_point(prof.name, cmp.bandwidth / 1e6, cmp.measured[prof.name], style="o")
        panel.results[:] = [cmp]
        panel.comparison = cmp
        rows = "".join(f"<tr><td>{n}</td><td>{cmp.predicted[n]:.3f} s</td>"
                       f"<td>{cmp.measured[n]:.3f} s</td></tr>" for n in cmp.predicted)
        agree = "agree" if cmp.predicted_winner == cmp.measured_winner else "disagree"
        panel.say(f"<b>{preset.name}</b> (simulated): {cmp.bandwidth / 1e6:,.0f} MB/s, "
                  f"{latency * 1e3:g} ms per request, {blocks} requests. Predicted winner "
                  f"<b>{cmp.predicted_winner}</b>, measured winner <b>{cmp.measured_winner}</b>"
                  f" ({agree}).<table><tr><th>codec</th><th>predicted</th><th>measured</th>"
                  f"</tr>{rows}</table>")

    return Panel(controls, plot, run, description="Measure")


# --------------------------------------------------------------------------- notebook 04


def parallel_panel(path, spans, max_workers: int = 8, workers=(1, 4), chunk_size: int = 16,
                   repeat: int | None = None) -> Panel:
    """Notebook 04's panel: tokenize with 1..n workers, plot the speedup, fit Amdahl's law.

    Controls: ``workers`` (a range), ``chunk size`` (documents per task) and ``kind``
    (processes or threads). Each point's runs alternate with runs of one worker, and its
    speedup compares the two (``repeat`` times; by default as many as suit the scale). Each
    kind keeps its own line (and fit), so threads and processes can be compared; a new run of
    a kind replaces that kind's line. After a run, ``panel.results`` holds the points (2
    workers and up) and ``panel.serial_fraction`` the fitted serial fraction.
    """
    import ipywidgets as w
    from matplotlib.ticker import MaxNLocator

    sizes = sorted({1 << k for k in range(0, 11)} | {chunk_size})
    controls = {
        "workers": w.IntRangeSlider(value=workers, min=1, max=max_workers, description="workers",
                                    continuous_update=False),
        "chunk": w.SelectionSlider(options=sizes, value=chunk_size, description="chunk size",
                                   continuous_update=False),
        "kind": w.Dropdown(options=["processes", "threads"], description="kind"),
    }
    plot = LivePlot("workers", "speedup over 1 worker (×)", xscale="linear", yscale="linear",
                    title="Tokenization speedup against workers")
    plot.ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # workers come whole
    kind_of: dict = {}  # line name -> the kind it belongs to

    def run(panel: Panel) -> None:
        lo, hi = panel.value("workers")
        chunk, kind = panel.value("chunk"), panel.value("kind")
        label = f"{kind}, {chunk} docs per task"
        for name in [n for n, k in kind_of.items() if k == kind]:  # this kind's earlier run
            plot.remove(name)
            del kind_of[name]
        kind_of[label] = kind
        widest = max([hi, *(max(plot.data(n)[0], default=1) for n in kind_of if n != label)])
        plot.set_series("ideal", [1, widest], [1, widest], style="k:")
        panel.say(f"measuring {label}, {lo} to {hi} workers…")
        points = []
        if lo == 1:
            plot.add_point(label, 1, 1.0)
        for n in range(max(lo, 2), hi + 1):
            p = tokenize_point(path, spans, kind, n, chunk, repeat=repeat, baseline=True)
            points.append(p)
            plot.add_point(label, n, p.speedup())
            panel.say(f"{label}: {n} workers {p.seconds * 1e3:,.0f} ms, "
                      f"{format_speedup(p.speedup(), 'one worker')} "
                      f"({p.baseline_seconds * 1e3:,.0f} ms, timed in turn)…")
        panel.results[:] = points
        if not points:
            panel.say(f"{label}: only 1 worker, nothing to compare; choose a range that reaches "
                      "2 workers or more")
            return
        cores = os.cpu_count() or 1  # beyond the cores, workers only take turns: not fitted
        s = fit_serial_fraction([1] + [p.workers for p in points],
                                [1.0] + [p.speedup() for p in points], cores=cores)
        panel.serial_fraction = s
        xs = np.linspace(1, hi, 50)
        fit = f"Amdahl fit ({kind}), capped at {cores} cores, serial fraction {s:.2f}"
        kind_of[fit] = kind
        plot.set_series(fit, xs, amdahl_speedup(xs, s, cores))
        best = max(points, key=lambda p: p.speedup())
        panel.say(f"{label}: best {best.speedup():.2f}× with {best.workers} workers; fitted "
                  f"serial fraction {s:.2f} (Amdahl: at most "
                  f"{1 / s if s > 0 else float('inf'):.1f}× however many workers)")

    return Panel(controls, plot, run, description="Run")


# --------------------------------------------------------------------------- notebook 05


def pipeline_panel(folder, *, storage: str = "object-store", workers: int = 4,
                   prefetch: int = 8, step_ms: float = 5.0, steps: int = 30,
                   batch_size: int = 16, block_size: int = 256) -> Panel:
    """Notebook 05's panel: train with a loader, draw its timeline, report the busy fraction.

    Controls: ``workers``, ``prefetch`` depth, ``step`` time (ms) and ``storage`` preset. Each
    run draws the Gantt chart of its timeline and says the measured busy fraction beside the
    model's (from a one-batch-at-a-time calibration of that storage, made once per storage).
    """
    import ipywidgets as w

    controls = {
        "workers": w.IntSlider(value=workers, min=0, max=8, description="workers",
                               continuous_update=False),
        "prefetch": w.IntSlider(value=prefetch, min=0, max=16, description="prefetch",
                                continuous_update=False),
        "step": w.FloatSlider(value=step_ms, min=0.5, max=40, step=0.5,
                              description="step (ms)", continuous_update=False),
        "storage": w.Dropdown(options=["local", *PRESETS], value=storage,
                              description="storage"),
    }
    plot = LivePlot("time since the loop started (s)", "", xscale="linear", yscale="linear",
                    figsize=(8, 3.5))
    calibrations: dict = {}
    common = {"batch_size": batch_size, "block_size": block_size, "seed": 0}

    def run(panel: Panel) -> None:
        st, step_s = panel.value("storage"), panel.value("step") / 1e3
        nw, depth = panel.value("workers"), panel.value("prefetch")
        if st not in calibrations:
            panel.say(f"calibrating {st}: one batch at a time …")
            calibrations[st] = calibrate(folder, storage=st, **common)
        r = run_training(folder, storage=st, step_s=step_s, steps=steps, workers=nw,
                         prefetch=depth, limit=steps, **common)
        model = PipelineModel(*calibrations[st], step_s, workers=nw, prefetch=depth,
                              cores=os.cpu_count() or 1)
        predicted = model.busy_fraction(r.steps)
        panel.results.append((r, model))
        plot.ax.clear()
        plot.lines.clear()
        # the loop makes batches itself too when they are quicker to make than to hand over
        lanes = ["trainer", "loop", *(f"worker-{i}" for i in range(nw))]
        timeline_gantt(r.timeline, ax=plot.ax, rows=lanes,
                       title=f"{st}, {nw} workers, prefetch {depth}, {step_s * 1e3:g} ms steps: "
                             f"busy {r.busy_fraction:.0%} (model {predicted:.0%})")
        plot.redraw()
        panel.busy = r.busy_fraction
        panel.say(f"busy <b>{r.busy_fraction:.0%}</b> measured, {predicted:.0%} predicted; "
                  f"{r.steps_per_s:,.0f} steps/s; limit: {model.bottleneck}")

    return Panel(controls, plot, run, description="Train")


# --------------------------------------------------------------------------- notebook 06

TRAINER_STORAGES = ("object-store", "network-fs", "hdd", "local-nvme")


def shard_count_panel(corpus, tokenizer, root, *, shard_counts=(1, 2, 3, 4, 6, 8, 12, 16, 32),
                      trainers: int = 2, storage: str = "object-store",
                      window_tokens: int = 32_768, max_trainers: int = 8) -> Panel:
    """Notebook 06's panel: how long an epoch takes when ``trainers`` ranks read the corpus
    cut into more and more shards, measured on a simulated store (points, streaming in) and
    predicted by :class:`~iokit.costs.ShardReadModel` for equal shards (line).

    Shard sets are made once per count in ``root/shards-N`` (one piece of the corpus each).
    Above the ``tiny`` scale they hold the corpus's first documents, up to
    :data:`~iokit.lab.scale_out.PANEL_BYTES` (in ``root/first-<size>/shards-N``): nine shard
    sets and nine simulated epochs of the whole corpus would take minutes per run.
    Controls: ``trainers`` (ranks reading at once) and ``storage`` (a simulated preset).
    """
    import ipywidgets as w

    limit = PANEL_BYTES[resolve_scale()]
    source = corpus_head(corpus, root, limit)
    if source != Path(corpus):
        root = Path(root) / f"first-{limit >> 20}MiB"

    controls = {
        "trainers": w.IntSlider(value=trainers, min=1, max=max_trainers, description="trainers",
                                continuous_update=False),
        "storage": w.Dropdown(options=TRAINER_STORAGES, value=storage, description="storage"),
    }
    plot = LivePlot("shards the corpus is cut into (log scale)",
                    "seconds for the slowest trainer's epoch (log scale)",
                    title="Epoch read time against shard count (simulated storage)")

    def run(panel: Panel) -> None:
        ranks, preset = panel.value("trainers"), panel.value("storage")
        for name in list(plot.lines):
            plot.lines.pop(name).remove()
        model = ShardReadModel.from_preset(preset)
        rows = []
        for n in shard_counts:
            folder = shards_for(source, tokenizer, Path(root) / f"shards-{n}", n)
            got = read_by_rank(folder, ranks, SimulatedStore(preset),
                               window_tokens=window_tokens)
            if not plot.lines:  # the model curve, once the set's size is known
                total = sum(got.shard_bytes)
                ns = np.unique(np.geomspace(1, max(shard_counts), 60).round().astype(int))
                window_bytes = window_tokens * total / max(int(got.tokens.sum()), 1)
                plot.set_series(f"model, {ranks} trainers, equal shards", ns,
                                model.epoch_seconds(total, ns, ranks, window_bytes), style="-")
            plot.add_point(f"measured, {ranks} trainers", n, got.epoch_seconds, style="o")
            panel.results.append((n, got))
            rows.append(f"<tr><td>{n}</td><td>{got.epoch_seconds:.3f} s</td>"
                        f"<td>{100 * got.idle_fraction:.0f} %</td>"
                        f"<td>{int(got.requests.max()):,}</td></tr>")
            panel.say(f"<b>{ranks} trainers</b> reading from a simulated <b>{preset}</b> "
                      f"({model.latency * 1e3:g} ms per request). <table><tr><th>shards</th>"
                      "<th>slowest trainer</th><th>idle</th><th>requests (busiest)</th></tr>"
                      f"{''.join(rows)}</table>")

    return Panel(controls, plot, run, description="Measure")
