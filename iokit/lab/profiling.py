"""Profiling a loop: where its time goes, function by function, as a tree a plot can draw.

:func:`cprofile` runs a function under the standard library's deterministic profiler and
:func:`profile_tree` turns its statistics into a :class:`Frame` tree (a function, the seconds
spent in it and below it, its callees): what :func:`iokit.lab.plots.icicle` draws. cProfile
records caller → callee pairs, not whole stacks, so a function called from two places has its
callees shared out in proportion (as snakeviz and gprof2dot do).

:func:`py_spy` samples a fresh Python process with py-spy (``pip install py-spy``, the
``profile`` extra: its wheel carries the binary) and gives whole stacks, at almost no cost to
the program; where py-spy is missing or may not read the process (ptrace not permitted in
some containers), it returns the reason instead, in one line.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Frame:
    """A function in the call tree: seconds in it and in everything it called from here."""

    name: str
    seconds: float
    children: list[Frame] = field(default_factory=list)

    @property
    def self_seconds(self) -> float:
        return max(self.seconds - sum(c.seconds for c in self.children), 0.0)

    def walk(self, depth: int = 0):
        yield depth, self
        for c in self.children:
            yield from c.walk(depth + 1)


def cprofile(fn, *args, **kwargs) -> tuple[object, pstats.Stats]:
    """``fn(*args, **kwargs)`` under cProfile: its result and the statistics."""
    prof = cProfile.Profile()
    result = prof.runcall(fn, *args, **kwargs)
    return result, pstats.Stats(prof)


def short_name(func: tuple) -> str:
    """``module.function`` for a pstats key ``(file, line, name)``; built-ins shortened."""
    file, _, name = func
    if file == "~":  # a built-in: "<method 'read' of '_io.FileIO' objects>"
        m = re.match(r"<(?:built-in )?method '?([\w.]+)'? of '?([\w.]+)'? objects?>", name)
        if m:
            return f"{m.group(2).split('.')[-1]}.{m.group(1)}"
        m = re.match(r"<built-in method ([\w.]+)>", name)
        return m.group(1) if m else name.strip("<>{}")
    return f"{Path(file).stem}.{name}"


def profile_tree(stats: pstats.Stats, min_share: float = 0.01, max_depth: int = 12) -> Frame:
    """The call tree of ``stats`` from its top function, pruned below ``min_share`` of the
    total (each function's callees shared out by the seconds it spent under each caller)."""
    raw = stats.stats  # func -> (calls, primitive calls, own seconds, cumulative, callers)
    children: dict = {}
    for func, (_, _, _, _, callers) in raw.items():
        for caller, (_, _, _, ct) in callers.items():
            children.setdefault(caller, []).append((func, ct))
    roots = [f for f, v in raw.items() if not v[4] and "disable" not in f[2]]
    top = max(roots, key=lambda f: raw[f][3])
    total = raw[top][3]

    def build(func, seconds: float, path: tuple) -> Frame:
        node = Frame(short_name(func), seconds)
        if len(path) >= max_depth:
            return node
        scale = seconds / raw[func][3] if raw[func][3] > 0 else 0.0
        for callee, ct in sorted(children.get(func, []), key=lambda c: -c[1]):
            share = ct * scale
            if callee in path or share < min_share * total:
                continue
            node.children.append(build(callee, min(share, seconds), path + (callee,)))
        return node

    return build(top, total, (top,))


def prune(tree: Frame, min_share: float = 0.01, max_depth: int = 12) -> Frame:
    """``tree`` without frames under ``min_share`` of its time or deeper than ``max_depth``."""
    def cut(node: Frame, depth: int) -> Frame:
        kids = [] if depth >= max_depth else [
            cut(c, depth + 1) for c in node.children if c.seconds >= min_share * tree.seconds]
        return Frame(node.name, node.seconds, kids)
    return cut(tree, 0)


def stack_tree(stacks: dict, seconds_per_sample: float, root: str = "all",
               focus: str | None = None, min_share: float = 0.01, max_depth: int = 12
               ) -> Frame:
    """A :class:`Frame` tree from collapsed stacks (``"a;b;c" -> samples``, as py-spy's raw
    format and flamegraph.pl use): each frame's seconds are the samples with it on the stack.
    With ``focus``, only stacks through a frame whose name starts with it, from that frame
    down (start-up and imports left out)."""
    top = Frame(root, 0.0)
    for stack, n in stacks.items():
        frames = stack.split(";")
        if focus is not None:
            at = next((i for i, f in enumerate(frames) if f.startswith(focus)), None)
            if at is None:
                continue
            frames = frames[at:]
        node = top
        node.seconds += n * seconds_per_sample
        for name in frames:
            name = re.sub(r" \((.*?):\d+\)$", lambda m: f" ({Path(m.group(1)).stem})", name)
            nxt = next((c for c in node.children if c.name == name), None)
            if nxt is None:
                nxt = Frame(name, 0.0)
                node.children.append(nxt)
            nxt.seconds += n * seconds_per_sample
            node = nxt
    for _, f in top.walk():
        f.children.sort(key=lambda c: -c.seconds)
    if focus is not None and len(top.children) == 1:
        top = top.children[0]
    return prune(top, min_share, max_depth)


def top_functions(stats: pstats.Stats, n: int = 8) -> str:
    """The ``n`` functions with the most time of their own: calls, own seconds, cumulative."""
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]
    lines = [f"{'function':<44} {'calls':>10} {'own s':>8} {'cumul. s':>9}"]
    for func, (_, nc, tt, ct, _) in rows:
        lines.append(f"{short_name(func)[:44]:<44} {nc:>10,} {tt:>8.3f} {ct:>9.3f}")
    return "\n".join(lines)


def py_spy_binary() -> str | None:
    """The py-spy program: beside this Python (a venv's bin/) or on the PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def py_spy(code: str, rate: int = 250, timeout: float = 120.0, focus: str | None = None
           ) -> tuple[Frame | None, str]:
    """Sample ``python -c code`` with py-spy: (its stack tree, "") or (None, why not).
    ``focus`` keeps the stacks through one function (see :func:`stack_tree`)."""
    exe = py_spy_binary()
    if exe is None:
        return None, ("py-spy is not installed (pip install -e '.[profile]' or pip install "
                      "py-spy); skipped")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with tempfile.TemporaryDirectory(prefix="iokit-pyspy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        try:
            proc = subprocess.run([exe, "record", "--format", "raw", "-r", str(rate), "-o",
                                   str(out), "--", sys.executable, "-c", code],
                                  capture_output=True, text=True, env=env, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"py-spy could not run ({type(exc).__name__}); skipped"
        if proc.returncode != 0 or not out.exists():
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            if "ermission" in proc.stderr or "ptrace" in proc.stderr:
                why = ("py-spy may not read another process here (ptrace not permitted: "
                       "run with --cap-add SYS_PTRACE in Docker)")
            return None, f"{why}; skipped"
        stacks = {}
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                stacks[stack] = stacks.get(stack, 0) + int(n)
    if not stacks:
        return None, "py-spy took no samples (the program ended too soon); skipped"
    tree = stack_tree(stacks, 1.0 / rate, "python", focus=focus)
    if not tree.seconds:
        return None, f"py-spy saw no stack through {focus}; skipped"
    return tree, ""
