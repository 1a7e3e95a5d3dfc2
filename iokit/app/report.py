"""``iokit report``: the tour's table and figures as one HTML page, with the machine it ran on.

:func:`report_figures` draws the figures (speedup of every stage, the pipeline's timelines and
busy fractions); :func:`write_report` writes ``report.html`` with them embedded and each figure
as a PNG beside it, every file atomically.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import subprocess
from pathlib import Path

from iokit.app.tour import Row
from iokit.atomic import atomic_write, make_folder, write_bytes_atomic
from iokit.lab.machine import describe_machine
from iokit.lab.plots import busy_predicted_vs_measured, timelines_side_by_side


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


CAPTIONS = {  # each figure's file name, and what it shows in words
    "stages.png": "How much faster each stage is (log scale). Blue: over the naive loop on "
                  "local disk. Purple: over the baseline its note names (the naive loader, or "
                  "one thread on the same simulated store).",
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
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.4 * len(rows)), layout="constrained")
    base = rows[0].seconds
    ax.barh([r.stage for r in rows], [r.speedup or base / r.seconds for r in rows],
            color=["tab:purple" if r.speedup else "tab:blue" for r in rows])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("speedup (log scale)\nblue: over the naive loop · purple: over the "
                  "baseline in its note")
    ax.set_title("Every stage of the tour")
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
    base = rows[0].seconds if rows else 1.0
    e = html.escape
    table = "".join(
        f"<tr><td>{e(r.stage)}</td><td>{r.seconds:.2f}&nbsp;s</td><td>{r.rate:,.1f}&nbsp;"
        f"{e(r.unit)}</td><td>{r.speedup or base / r.seconds:.1f}×</td><td>{e(r.note)}</td>"
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
<table><tr><th>stage</th><th>time</th><th>rate</th><th>speedup</th><th>note</th></tr>
{table}</table>
<h2>Figures</h2>
{images}
</body></html>
"""
    path = out / "report.html"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
