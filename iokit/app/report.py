"""``iokit report``: the tour's table and figures as one HTML page, with the machine it ran on.

:func:`report_figures` draws the figures (every stage against its own baseline, the pipeline's
timelines and busy fractions); :func:`write_report` writes ``report.html`` with them embedded
and each figure as a PNG beside it, every file atomically.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import subprocess
from pathlib import Path

from iokit.app.tour import Row, ratio_words, speedup_of
from iokit.atomic import atomic_write, make_folder, write_bytes_atomic
from iokit.lab.machine import describe_machine
from iokit.lab.plots import busy_predicted_vs_measured, timelines_side_by_side


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


CAPTIONS = {  # each figure's file name, and what it shows in words
    "stages.png": "Each stage against its baseline, the same work done the plain way (named "
                  "in the table's note; log scale). Green: faster than its baseline; orange: "
                  "more time than its baseline; grey: a baseline itself.",
    "timeline.png": "The naive loader and the full pipeline on one timeline: where the "
                    "training loop waits for data, and where loading overlaps computing.",
    "busy.png": "How busy the training loop is at each step of the walk: the cost model's "
                "prediction against the measurement.",
}


def git_commit(folder=None) -> str | None:
    """The short commit of the kit's checkout (with ``+changes`` when files differ from it),
    or None outside a git checkout or without git."""
    folder = folder or Path(__file__).resolve().parent
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=folder, capture_output=True, text=True,
                                        timeout=10)
        head = run("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (" +changes" if dirty else "")


def report_figures(rows: list[Row], extra: dict) -> dict[str, bytes]:
    """The report's figures as PNG bytes, by file name."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figs = {}
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.4 * len(rows)), layout="constrained")
    ratios = [speedup_of(r, rows) for r in rows]
    words = [ratio_words(r, rows) for r in rows]
    kinds = ["baseline" if w == "baseline" else "faster" if x >= 1 else "slower"
             for w, x in zip(words, ratios)]
    colours = {"faster": "tab:green", "slower": "tab:orange", "baseline": "tab:gray"}
    y = range(len(rows))
    ax.barh(y, [x - 1 for x in ratios], left=1, color=[colours[k] for k in kinds])
    ax.plot([1 for k in kinds if k == "baseline"],
            [i for i, k in zip(y, kinds) if k == "baseline"], "|", color="tab:gray",
            markersize=14, markeredgewidth=3)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_xscale("log")
    low, high = min(ratios + [1.0]), max(ratios + [1.0])
    ax.set_xlim(low / 8, high * 8)  # room for the words beside the bars
    for i, (x, w) in enumerate(zip(ratios, words)):  # the words beside the bar's outer end
        left = x < 1
        ax.annotate(w, (x, i), xytext=(-4 if left else 4, 0), textcoords="offset points",
                    va="center", ha="right" if left else "left", fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.set_yticks(list(y), [r.stage for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("speed against the row's baseline (×, log scale; right of 1×: faster, "
                  "left: more time)")
    fig.legend(handles=[Patch(color=colours[k], label=label) for k, label in (
        ("faster", "faster than its baseline"), ("slower", "more time than its baseline"),
        ("baseline", "a baseline (rows below it are compared with it)"))],
        loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    ax.set_title("Every stage of the tour against its own baseline")
    figs["stages.png"] = _png(fig)
    plt.close(fig)
    walk = extra.get("walk") or []
    if walk:
        fig = timelines_side_by_side({walk[0].step.technique: walk[0].run,
                                      walk[-1].step.technique: walk[-1].run})
        figs["timeline.png"] = _png(fig)
        plt.close(fig)
        ax = busy_predicted_vs_measured([w.step.technique for w in walk],
                                        [w.predicted_busy for w in walk],
                                        [w.run.busy_fraction for w in walk])
        figs["busy.png"] = _png(ax.figure)
        plt.close(ax.figure)
    return figs


def write_report(rows: list[Row], extra: dict, out_dir, *, title: str = "iokit report",
                 about: str = "") -> Path:
    """Write ``report.html`` (figures embedded) and the figures as PNG files beside it, each
    file atomically; return the HTML's path."""
    out = make_folder(out_dir, "the report folder")
    figs = report_figures(rows, extra)
    for name, data in figs.items():
        write_bytes_atomic(out / name, data)
    m = describe_machine()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit()
    e = html.escape
    table = "".join(
        f"<tr><td>{e(r.stage)}</td><td>{r.seconds:.2f}&nbsp;s</td><td>{r.rate:,.1f}&nbsp;"
        f"{e(r.unit)}</td><td>{e(ratio_words(r, rows))}</td><td>{e(r.note)}</td>"
        "</tr>" for r in rows)
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    images = "".join(
        f'<figure><img alt="{e(CAPTIONS.get(n, n))}" src="data:image/png;base64,'
        f'{base64.b64encode(d).decode()}"><figcaption>{e(CAPTIONS.get(n, n))}</figcaption>'
        "</figure>" for n, d in figs.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .5em}}
td:nth-child(2),td:nth-child(3),td:nth-child(4){{text-align:right;white-space:nowrap}}
img{{max-width:100%}}</style>
</head><body>
<h1>{e(title)}</h1>
<p>{e(about)}</p>
<p class="stamp">Run on {e(when)}; iokit {e(commit or 'not from a git checkout')}.</p>
<h2>Machine</h2>
<p>{e(m['cpu'])}, {m['cores']} cores; {e(m['os'])}; Python {e(m['python'])};
cold reads {'possible' if m['cold_reads'] else 'not possible'}.<br>{e(packages)}</p>
<h2>Every stage, from the naive loop to the full pipeline</h2>
<p>Each row is compared with a baseline doing the same work, named in its note (the
naive loop when it names none): "N× faster" or "N× the time".</p>
<table><tr><th>stage</th><th>time</th><th>rate</th><th>vs baseline</th><th>note</th></tr>
{table}</table>
<h2>Figures</h2>
{images}
</body></html>
"""
    path = out / "report.html"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
