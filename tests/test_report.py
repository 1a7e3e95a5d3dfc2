"""The whole-story commands: the tour runs the pipeline walk, the report writes its files."""

import base64
import html

import pytest

from iokit.app.cli import main
from iokit.app.report import report_figures, write_report
from iokit.app.tour import Context, Row, format_table, ratio_words, run_tour
from iokit.lab.training import WALK


@pytest.fixture(scope="module")
def story(tiny_corpus, monkeypatch_module):
    from iokit.app import tour

    # A short tour: pretokenize, then the walk's first and third steps.
    stages = [tour.stage_pretokenize, tour._walk_stage(WALK[0]), tour._walk_stage(WALK[2])]
    monkeypatch_module.setattr(tour, "STAGES", stages)
    monkeypatch_module.setattr(tour, "PIPELINE_STEPS", 12)
    return run_tour(tiny_corpus, storage="object-store")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_tour_rows_carry_the_walk(story):
    rows, extra = story
    assert len(rows) == 3 and len(extra["walk"]) == 2
    naive, best = extra["walk"]
    assert naive.run.steps == best.run.steps == 12
    assert rows[1].speedup == 1.0 and rows[2].speedup == pytest.approx(best.speedup)
    table = format_table(rows)
    assert "pipeline: + 8 worker threads" in table and "busy" in table


def test_report_writes_html_and_figures(story, tmp_path):
    rows, extra = story
    path = write_report(rows, extra, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["busy.png", "report.html", "stages.png", "timeline.png"]
    html = path.read_text(encoding="utf-8")
    for name in ("busy.png", "stages.png", "timeline.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64encode(data).decode() in html  # embedded: the page stands alone
    assert html.count("<tr>") == len(rows) + 1
    assert "<th>vs baseline</th>" in html and f"<td>{ratio_words(rows[2], rows)}</td>" in html
    assert "cores" in html and "Machine" in html


def test_report_figures_without_a_walk():
    figs = report_figures([Row("only", 1.0, 1e6)], {})
    assert list(figs) == ["stages.png"]


def test_report_into_an_unwritable_place(story, tmp_path):
    rows, extra = story
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from iokit.errors import StorageError

    with pytest.raises(StorageError, match="file"):
        write_report(rows, extra, blocker / "sub")


def test_report_command_rejects_unknown_storage(capsys):
    assert main(["report", "--storage", "floppy", "--out", "x"]) == 2
    assert "floppy" in capsys.readouterr().err


def test_context_is_unchanged():
    ctx = Context("c", "w")
    assert ctx.storage == "local" and ctx.extra == {}


def test_report_is_dated_stamped_and_captioned_in_words(story, tmp_path):
    import re

    from iokit.app.report import CAPTIONS, git_commit
    from iokit.lab.machine import cpu_name

    rows, extra = story
    page = write_report(rows, extra, tmp_path / "stamped").read_text(encoding="utf-8")
    assert re.search(r"Run on \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    commit = git_commit()
    assert (commit or "not from a git checkout") in page
    assert cpu_name() in page and "cores" in page
    assert "white-space:nowrap" in page and "&nbsp;s</td>" in page
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == 3 and not any(c.endswith(".png") for c in captions)
    assert set(captions) == {html.escape(c) for c in CAPTIONS.values()}


def test_simulated_reads_are_compared_with_the_same_store(tiny_corpus, tmp_path):
    from iokit.app.tour import stage_threaded_reads

    row = stage_threaded_reads(Context(tiny_corpus, tmp_path))
    assert row.speedup is not None  # not over the naive loop, which read the local disk
    assert "baseline: one thread on the same store" in row.note


def test_every_row_reads_against_its_baseline_in_the_kits_words():
    rows = [Row("naive", 4.0, 4e6, baseline=True), Row("chunked", 1.0, 4e6),
            Row("text epoch", 2.0, 4e6, speedup=1.0, baseline=True),
            Row("shard epoch", 0.01, 4e6, speedup=200.0),
            Row("compressed", 0.03, 4e6, speedup=0.5)]
    assert [ratio_words(r, rows) for r in rows] == \
        ["baseline", "4.00× faster", "baseline", "200× faster", "2.00× the time"]
    table = format_table(rows)
    assert "vs baseline" in table.splitlines()[0] and "speedup" not in table
    assert "2.00× the time" in table and "×  " not in table.replace("× faster", "").replace(
        "× the time", "")  # no bare ratios left
    # A row without a baseline of its own is compared with the first row, which is one.
    first, second = Row("first", 2.0, 1e6), Row("second", 1.0, 1e6)
    assert [ratio_words(r, [first, second]) for r in (first, second)] == \
        ["baseline", "2.00× faster"]


def test_the_pipeline_rows_name_their_baseline(story):
    rows, _ = story
    assert rows[1].baseline and "the baseline of the pipeline rows" in rows[1].note
    assert "baseline: the naive loader" in rows[2].note
    assert ratio_words(rows[1], rows) == "baseline"
    assert ratio_words(rows[2], rows).endswith(("× faster", "× the time"))
