"""Live controls and plots for the notebooks (ipywidgets and matplotlib, imported lazily).

The pattern every notebook uses: a :class:`Panel` holds controls (sliders with
``continuous_update=False``, dropdowns) and a Run button; a :class:`LivePlot` is a matplotlib
figure built once and shown through a display handle, whose lines get new data point by point
while a sweep runs. ``panel.show()`` displays both and runs the defaults once, so a headless run
(nbval, ``nbconvert --execute``) still produces the plot, and a test can change a control,
call ``panel.run()`` and check the plotted data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


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

        self._handle = display(self.fig, display_id=True)


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

        return w.VBox([w.HBox([*self.controls.values(), self.button]), self.status])

    def show(self, run: bool = True) -> Panel:
        """Display the controls and the plot; run the defaults once (for headless runs)."""
        from IPython.display import display

        display(self.box)
        self.plot.show()
        if run:
            self.run()
        return self
