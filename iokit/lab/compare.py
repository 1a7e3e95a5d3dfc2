"""Predict, measure, compare: one protocol for every notebook and the tour.

A key measurement comes with up to two predictions: the learner's **guess** (a plain variable
set in a cell before the measurement, ``my_guess_s = 30``) and the **cost model**'s. For each,
:func:`compare` works out the relative error against the measured median,

    error = (predicted − measured) / measured        (+0.25: predicted 25 % too much)

and a one-line verdict ("within 10 %: good", "2.3× too slow: it misses …"). :func:`show`
prints comparisons as a small table; :func:`mark` draws the guess and the model beside the
measurement on a plot.

Units say which way "too slow" points: a predicted *time* above the measured one is too slow;
a predicted *rate* (``MB/s``) or *speedup* (``×``) above it is too fast. A ``fraction`` (the
busy fraction, 0–1) misses by percentage points. A ``choice`` (which codec wins?) is right or
wrong, and counts as right when the pick measured within a few per cent of the winner (a tie).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from iokit.errors import ParameterError, check_choice
from iokit.timing import Timing, format_error, format_value

UNITS = ("s", "MB/s", "×", "fraction", "choice")
GOOD, FAIR = 0.10, 0.25  # |relative error| for "good" and "fair"


@dataclass
class Comparison:
    """One measurement (median, min, max over ``runs``) and what was predicted for it."""

    name: str
    measured: float | str
    unit: str = "s"
    low: float | None = None  # the measured spread: the slowest and fastest of the runs
    high: float | None = None
    runs: int = 1
    model: float | str | None = None
    guess: float | str | None = None
    misses: str = ""  # what the cost model leaves out, said when it misses by more than 25 %
    ties: tuple = field(default_factory=tuple)  # for a choice: picks measured within a tie
    note: str = ""  # how the measured value was made, when not one median (a ratio of medians)

    def error(self, predicted) -> float | None:
        """(predicted − measured) / measured, or None (nothing predicted, a choice, measured 0)."""
        if predicted is None or self.unit == "choice" or not self.measured:
            return None
        return (float(predicted) - float(self.measured)) / float(self.measured)

    @property
    def model_error(self) -> float | None:
        return self.error(self.model)

    @property
    def guess_error(self) -> float | None:
        return self.error(self.guess)

    def verdict(self, predicted, misses: str = "") -> str:
        """One line on how far ``predicted`` is from the measurement, and which way."""
        if predicted is None:
            return ""
        if self.unit == "choice":
            if predicted == self.measured:
                return "right"
            if predicted in self.ties:
                return f"right: a tie with {self.measured} (within a few %)"
            return f"wrong: {self.measured} won"
        measured, predicted = float(self.measured), float(predicted)
        if self.unit == "fraction":
            points = (predicted - measured) * 100
            if abs(points) <= GOOD * 100:
                text = f"within {GOOD * 100:.0f} points: good"
            else:
                text = f"{abs(points):.0f} points too {'high' if points > 0 else 'low'}"
                text += f": it misses {misses}" if misses and abs(points) > FAIR * 100 else ""
            return text
        err = self.error(predicted)
        if err is None:
            return "measured 0: no relative error"
        if abs(err) <= GOOD:
            return f"within {GOOD * 100:.0f} %: good"
        high = err > 0
        slow = high if self.unit == "s" else not high  # a time too high is too slow
        way = "too slow" if slow else "too fast"
        if abs(err) <= FAIR:
            return f"within {FAIR * 100:.0f} %: fair, {abs(err) * 100:.0f} % {way}"
        factor = predicted / measured if high else (
            measured / predicted if predicted > 0 else float("inf"))
        text = f"{factor:,.1f}× {way}" if factor < 10 else f"{factor:,.0f}× {way}"
        return text + (f": it misses {misses}" if misses else "")

    @property
    def model_verdict(self) -> str:
        return self.verdict(self.model, self.misses)

    @property
    def guess_verdict(self) -> str:
        return self.verdict(self.guess)

    def __str__(self) -> str:
        return format_comparisons([self])


def compare(name: str, measured, model=None, guess=None, *, unit: str = "s",
            low: float | None = None, high: float | None = None, runs: int | None = None,
            misses: str = "", ties: Iterable = (), note: str = "") -> Comparison:
    """Compare ``guess`` and ``model`` with ``measured``.

    ``measured`` is a :class:`~iokit.timing.Timing` (its median and min–max; for ``unit="MB/s"``
    its bytes over those times), a number (give ``low``/``high``/``runs`` if you know the
    spread), or, for ``unit="choice"``, the option that won (``ties``: others measured within
    noise of it). ``misses`` names what the cost model leaves out, for its verdict; ``note``
    says how the measured value was made when it is not one median ("ratio of two medians").
    """
    unit = check_choice("unit", unit, UNITS)
    if isinstance(measured, Timing):
        t = measured
        if unit == "MB/s":
            if t.mb_per_s is None:
                raise ParameterError(f"{name}: the Timing has no byte count, so no MB/s; "
                                     "measure it with nbytes=")
            value, low, high = t.mb_per_s, t.nbytes / t.max / 1e6, t.nbytes / t.min / 1e6
        else:
            value, low, high = t.median, t.min, t.max
        measured, runs = value, len(t.seconds)
    return Comparison(name, measured, unit, low, high, runs or 1, model, guess, misses,
                      tuple(ties), note)


def format_speedup(ratio: float, than: str = "") -> str:
    """A speed ratio in the kit's words: "1.74× faster (than ``than``)", or, below 1,
    "3.33× the time (of ``than``)"."""
    if ratio >= 1:
        return f"{format_value(ratio, '×')} faster" + (f" than {than}" if than else "")
    if ratio <= 0:
        return "no progress"
    return f"{format_value(1 / ratio, '×')} the time" + (f" of {than}" if than else "")


def _spread(c: Comparison) -> str:
    if c.note:
        return c.note
    runs = f"{c.runs} run{'s' * (c.runs != 1)}"
    if c.unit == "choice":
        return "measured winner" + (f" (ties: {', '.join(c.ties)})" if c.ties else "")
    if c.low is None or c.high is None or c.runs < 2:
        return runs
    return f"median of {runs}, {format_value(c.low, c.unit)} to {format_value(c.high, c.unit)}"


def format_comparisons(comparisons: Iterable[Comparison]) -> str:
    """Comparisons as a small table: for each, the measured row, then the guess and the model."""
    lines = [f"{'what':<34} {'value':>12} {'error':>8}  verdict"]
    for c in comparisons:
        lines.append(c.name)
        lines.append(f"  {'measured':<32} {format_value(c.measured, c.unit):>12} {'':>8}  "
                     f"{_spread(c)}")
        for who, value, err, verdict in (("your guess", c.guess, c.guess_error, c.guess_verdict),
                                         ("cost model", c.model, c.model_error, c.model_verdict)):
            if value is not None:
                lines.append(f"  {who:<32} {format_value(value, c.unit):>12} "
                             f"{format_error(err):>8}  {verdict}")
    return "\n".join(lines)


def show(*comparisons: Comparison | Iterable[Comparison]) -> None:
    """Print comparisons (or lists of them) as one table."""
    flat: list[Comparison] = []
    for c in comparisons:
        flat.extend([c] if isinstance(c, Comparison) else c)
    print(format_comparisons(flat))


def mark(ax, comparisons: Comparison | Iterable[Comparison], at=None, *,
         horizontal: bool = False, measured: bool = False):
    """Draw the guess (a star) and the cost model (a diamond) of each comparison on ``ax``.

    ``at`` gives each comparison's position along the other axis (an x value such as the
    worker count, or a bar's index; by default 0, 1, 2, ...). ``horizontal`` puts the values
    on the x axis (horizontal bars). ``measured`` also draws the measured median with its
    min–max as an error bar, for plots that do not show it already. Choices are skipped.
    """
    comps = [comparisons] if isinstance(comparisons, Comparison) else list(comparisons)
    if at is None:
        at = range(len(comps))
    elif not isinstance(at, Iterable):
        at = [at]
    labelled: set = set()

    def label(text):
        if text in labelled:
            return None
        labelled.add(text)
        return text

    for pos, c in zip(at, comps):
        if c.unit == "choice":
            continue
        points = [("your guess", c.guess, dict(marker="*", ms=13, color="tab:red")),
                  ("cost model", c.model, dict(marker="D", ms=8, mfc="none", mew=2,
                                               color="k"))]
        if measured:
            value = float(c.measured)
            err = None
            if c.low is not None and c.high is not None:
                err = [[value - c.low], [c.high - value]]
            kw = dict(xerr=err) if horizontal else dict(yerr=err)
            xy = (value, pos) if horizontal else (pos, value)
            ax.errorbar(*xy, fmt="o", color="tab:blue", capsize=4, label=label("measured"),
                        **kw)
        for who, value, style in points:
            if value is None:
                continue
            xy = (float(value), pos) if horizontal else (pos, float(value))
            ax.plot(*xy, ls="none", label=label(who), zorder=5, **style)
    ax.legend(fontsize="small")
    return ax


def median_run(runs: list, timing: Timing):
    """The one of ``runs`` (what each timed call returned, warm-up calls first) whose time is
    the median of ``timing``: the run to show when one run stands for all of them."""
    timed = runs[len(runs) - len(timing.seconds):]
    order = sorted(range(len(timing.seconds)), key=timing.seconds.__getitem__)
    return timed[order[(len(order) - 1) // 2]]
