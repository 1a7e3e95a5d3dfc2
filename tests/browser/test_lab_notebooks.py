"""Each notebook in JupyterLab in headless Chromium: run all, move a widget, see the plot move.

nbval proves the notebooks execute in a kernel. This proves what a learner sees: the widgets
render in the browser (the lab extension is there and its version matches), no cell shows an
error, and changing a control then pressing Run redraws the live plot.

A new notebook with a panel needs one entry in ``CASES`` (a quick test below, which needs no
browser, fails until it has one).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class Case:
    notebook: str
    control: str  # the widget's description, as shown beside it
    keys: tuple = ()  # keys pressed on the control (a slider's first handle)
    option: str | None = None  # or: the option to choose in a dropdown
    button: str = "Run"  # the text on the panel's Run button


CASES = [
    # the lower end of the chunk-size range, 1 B → 16 B (four steps right)
    Case("01_naive_loop.ipynb", "chunk sizes", keys=("ArrowRight",) * 4, button="Run sweep"),
    # batch size 64 → 256: a second line joins the plot
    Case("02_preprocessing.ipynb", "batch size", keys=("ArrowRight",) * 2, button="Run sweep"),
    # storage bandwidth 100 → 316 MB/s (ten log steps): each codec gets a new measured point
    Case("03_compression.ipynb", "MB/s", keys=("ArrowRight",) * 10, button="Measure"),
    # workers 1–n → 2–n (the lower handle one step right): the curve starts at 2 workers
    Case("04_parallel_io.ipynb", "workers", keys=("ArrowRight",), button="Run"),
    # prefetch depth two steps deeper: the timeline and busy fraction are measured again
    Case("05_pipeline.ipynb", "prefetch", keys=("ArrowRight",) * 2, button="Train"),
    # trainers 2 → 3: every shard count is read again by three ranks
    Case("06_scale_out.ipynb", "trainers", keys=("ArrowRight",), button="Measure"),
]

RUN_ALL_TIMEOUT_S = 90
SWEEP_TIMEOUT_S = 60


def _ids(case):
    return case.notebook.removesuffix(".ipynb")


def test_every_notebook_with_a_widget_has_a_case():
    """A notebook whose committed outputs hold a widget needs an entry in CASES."""
    covered = {c.notebook for c in CASES}
    with_widgets = {path.name for path in NOTEBOOKS.glob("*.ipynb")
                    if any("application/vnd.jupyter.widget-view+json" in out.get("data", {})
                           for cell in json.loads(path.read_text())["cells"]
                           for out in cell.get("outputs", []))}
    assert with_widgets - covered == set(), "add these notebooks to CASES"


@pytest.mark.browser
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_notebook_runs_and_its_widget_redraws_the_plot(case, lab, page, screenshots):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    assert (NOTEBOOKS / case.notebook).exists(), f"{case.notebook}: in CASES, not in notebooks/"
    stem = case.notebook.removesuffix(".ipynb")
    page.goto(lab.notebook_url(case.notebook))
    indicator = page.locator(".jp-Notebook-ExecutionIndicator").first
    indicator.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
    page.locator(".jp-Cell .jp-InputPrompt").first.click()  # the notebook becomes current

    prompts = run_all_cells(page)
    check_no_errors(page, lab, case.notebook)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"cells not run: {prompts}"

    # The panel: its cell holds the control, the Run button and the live plot's image.
    button = page.locator(".jupyter-widgets.widget-button",
                          has_text=re.compile(rf"^\s*{re.escape(case.button)}\s*$"))
    cell = page.locator(".jp-CodeCell", has=button)
    button.first.wait_for()
    assert cell.count() == 1, f"{case.notebook}: no single cell with a '{case.button}' button"
    image = cell.locator(".jp-RenderedImage img").first
    try:
        image.wait_for(timeout=10_000)
    except PlaywrightTimeout:
        shown = cell.locator(".jp-OutputArea").inner_text()[-300:]
        pytest.fail(f"{case.notebook}: the panel's plot is not an image; the cell shows: {shown}")
    control = cell.locator(".widget-inline-hbox", has=page.locator(
        ".widget-label", has_text=re.compile(rf"^\s*{re.escape(case.control)}\s*$"))).first
    assert control.count() == 1, f"{case.notebook}: no control labelled '{case.control}'"
    cell.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / f"{stem}-panel.png")
    check_layout(cell, case.notebook)

    before_value = control_value(control)
    if case.option is not None:
        control.locator("select").select_option(label=case.option)
    else:
        target = control.locator(".noUi-handle, input, select").first
        target.focus()
        for key in case.keys:
            target.press(key)
    after_value = control_value(control)
    assert after_value != before_value, f"{case.control} did not change ({before_value!r})"

    before = image.get_attribute("src")
    button.click()
    # While the sweep runs the button is disabled and the plot grows point by point: keep a
    # screenshot of each new frame, and save the middle one as the "mid-sweep" picture.
    frames, seen = [], before
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while time.monotonic() < deadline:
        running = button.is_disabled()
        src = image.get_attribute("src")
        if running and src != seen:
            seen = src
            frames.append(page.screenshot())
        if not running and src != before:
            break
        if not running and "error:" in (status := panel_status(cell)):
            pytest.fail(f"{case.notebook}: after '{case.button}' the panel says: {status}")
        time.sleep(0.05)
    else:
        pytest.fail(f"{case.notebook}: the plot did not change within {SWEEP_TIMEOUT_S} s "
                    f"after '{case.button}'")
    if frames:
        (screenshots / f"{stem}-mid-sweep.png").write_bytes(frames[len(frames) // 2])
    after = image.get_attribute("src")
    assert after.startswith("data:image/png") and after != before
    status = panel_status(cell)
    assert "error:" not in status, f"{case.notebook}: the panel says {status!r}"
    cell.screenshot(path=screenshots / f"{stem}-after-run.png")


def run_all_cells(page) -> list[str]:
    """Edit → Clear Outputs of All Cells, Run → Run All Cells; wait until every cell has run
    (or the run stopped at an error); return the input prompts.

    Clearing first blanks the committed prompt numbers, so "[1]:" … "[n]:" in order (the
    kernel is fresh) can only mean this run finished.
    """
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("() => [...document.querySelectorAll("
                           "'.jp-CodeCell .jp-InputArea-prompt')].every(p => !/\\d/.test("
                           "p.textContent))")
    menu(page, "Run", "Run All Cells")
    n = prompts.count()
    expected = [f"[{i}]:" for i in range(1, n + 1)]
    deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
    while True:
        seen = [t.strip() for t in prompts.all_inner_texts()]
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0
        stopped = idle and "[*]:" not in seen and any(re.search(r"\d", t) for t in seen)
        if (seen == expected and idle) or stopped:
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"cells did not all run within {RUN_ALL_TIMEOUT_S} s: prompts {seen}")
        time.sleep(0.25)


def menu(page, name: str, item: str, timeout_s: float = 30) -> None:
    """Click menu ``name`` → ``item`` once the item is enabled (notebook commands stay disabled
    until the notebook is the current document)."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{name}$")).click()
        entry = page.locator(".lm-Menu-item:not(.lm-mod-disabled)", has=page.locator(
            ".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")))
        if entry.count() == 1:
            entry.click()
            return
        page.keyboard.press("Escape")
        if time.monotonic() > deadline:
            pytest.fail(f"menu {name} → {item} stayed disabled for {timeout_s} s")
        time.sleep(0.5)


def check_no_errors(page, lab, notebook: str) -> None:
    """No error output on the page or in the saved notebook; every widget rendered."""
    deadline = time.monotonic() + 10  # a widget view may still be loading: give it a moment
    while True:
        shown = page.locator(".jp-OutputArea-output").all_inner_texts()
        bad = [t for t in shown if "Traceback (most recent call last)" in t
               or "Error displaying widget" in t or "Loading widget..." in t]
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not bad, f"{notebook}: an output shows an error:\n{bad[0][:2000]}"
    page.keyboard.press("Control+s")
    page.locator(".jp-mod-dirty").first.wait_for(state="detached", timeout=10_000)
    errors = [(i, o.get("ename"), o.get("evalue"))
              for i, cell in enumerate(lab.contents(notebook)["cells"])
              for o in cell.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{notebook}: cells with errors (index, name, message): {errors}"


def check_layout(cell, notebook: str) -> None:
    """Every control in the panel is usable: sliders have a track to drag, labels are not cut."""
    cramped = cell.evaluate("""cell => {
        const bad = [];
        for (const t of cell.querySelectorAll('.noUi-target')) {
            const w = t.getBoundingClientRect().width;
            if (w < 100) bad.push(`a slider track ${Math.round(w)} px wide`);
        }
        for (const b of cell.querySelectorAll('.widget-button, .widget-label')) {
            if (b.scrollWidth > b.clientWidth + 1) bad.push(`'${b.textContent.trim()}' cut off`);
        }
        return bad;
    }""")
    assert not cramped, f"{notebook}: the panel's controls are squeezed: {', '.join(cramped)}"


def panel_status(cell) -> str:
    """The text of the panel's status line (Panel.say; errors start with "error:")."""
    return cell.locator(".widget-html").first.inner_text()


def control_value(control) -> str:
    """What the control shows: a slider's readout, a dropdown's choice."""
    readout = control.locator(".widget-readout")
    if readout.count():
        return readout.first.inner_text()
    return control.locator("select").first.input_value()
