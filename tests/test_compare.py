"""The comparison protocol: relative errors, verdicts, the table, and what is missing."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from iokit.errors import ParameterError  # noqa: E402
from iokit.lab.compare import (  # noqa: E402
    compare,
    format_comparisons,
    format_error,
    format_speedup,
    mark,
    median_run,
    show,
)
from iokit.timing import Timing  # noqa: E402


def test_relative_error_is_predicted_minus_measured_over_measured():
    c = compare("epoch", Timing([2.0, 1.0, 3.0]), model=2.5, guess=1.0)
    assert c.measured == 2.0 and (c.low, c.high, c.runs) == (1.0, 3.0, 3)
    assert c.model_error == pytest.approx(0.25)
    assert c.guess_error == pytest.approx(-0.5)


def test_mb_per_s_comes_from_the_median_time_and_the_bytes():
    c = compare("read", Timing([0.5, 1.0, 2.0], nbytes=10_000_000), model=5.0, unit="MB/s")
    assert c.measured == pytest.approx(10.0)
    assert (c.low, c.high) == (pytest.approx(5.0), pytest.approx(20.0))
    assert c.model_error == pytest.approx(-0.5)
    with pytest.raises(ParameterError, match="nbytes"):
        compare("read", Timing([1.0]), unit="MB/s")


@pytest.mark.parametrize("unit, predicted, want", [
    ("s", 1.05, "within 10 %: good"),
    ("s", 0.95, "within 10 %: good"),
    ("s", 1.2, "within 25 %: fair, 20 % too slow"),
    ("s", 0.8, "within 25 %: fair, 20 % too fast"),
    ("s", 2.3, "2.3× too slow"),
    ("s", 0.25, "4.0× too fast"),
    ("MB/s", 2.3, "2.3× too fast"),  # a rate predicted too high is optimistic
    ("×", 0.5, "2.0× too slow"),
])
def test_verdict_says_how_far_and_which_way(unit, predicted, want):
    assert compare("x", 1.0, model=predicted, unit=unit).model_verdict == want


def test_a_far_miss_names_what_the_model_leaves_out():
    c = compare("loop", 1.0, model=0.1, misses="the bytes over bandwidth")
    assert c.model_verdict == "10× too fast: it misses the bytes over bandwidth"
    assert compare("loop", 1.0, model=1.01, misses="x").model_verdict == "within 10 %: good"


def test_fractions_miss_by_points():
    c = compare("busy", 0.9, model=0.2, guess=0.85, unit="fraction", misses="overlap")
    assert c.guess_verdict == "within 10 points: good"
    assert c.model_verdict == "70 points too low: it misses overlap"
    assert compare("busy", 0.5, model=0.7, unit="fraction").model_verdict == "20 points too high"


def test_a_choice_is_right_wrong_or_a_tie():
    c = compare("winner", "zstd:19", model="zstd:3", guess="none", unit="choice",
                ties=["zstd:3"])
    assert c.model_verdict.startswith("right: a tie with zstd:19")
    assert c.guess_verdict == "wrong: zstd:19 won"
    assert compare("w", "none", guess="none", unit="choice").guess_verdict == "right"
    assert c.model_error is None and c.guess_error is None


def test_missing_guess_or_model_leaves_its_row_out():
    only_model = compare("t", Timing([1.0, 1.2, 0.9]), model=1.0)
    assert only_model.guess_error is None and only_model.guess_verdict == ""
    table = format_comparisons([only_model])
    assert "cost model" in table and "your guess" not in table
    neither = format_comparisons([compare("t", 2.0)])
    assert "cost model" not in neither and "your guess" not in neither and "2.00 s" in neither


def test_the_table_shows_values_in_their_units_errors_and_verdicts():
    table = format_comparisons([
        compare("naive loop", Timing([1.0, 1.5, 2.0]), model=1.5, guess=30, misses="nothing"),
        compare("speedup at 2 workers", 1.74, model=2.0, guess=1.0, unit="×"),
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["what", "value", "error", "verdict"]
    assert lines[1] == "naive loop"
    assert "1.50 s" in lines[2] and "median of 3 runs, 1.00 s to 2.00 s" in lines[2]
    assert "30.00 s" in lines[3] and "+1,900 %" in lines[3] and "20× too slow" in lines[3]
    assert "your guess" in lines[3] and "cost model" in lines[4] and "+0 %" in lines[4]
    assert lines[5] == "speedup at 2 workers" and "1.74×" in lines[6] and "1 run" in lines[6]
    assert "−43 %" in lines[7] and "1.7× too slow" in lines[7]
    assert "+15 %" in lines[8] and "fair, 15 % too fast" in lines[8]


def test_show_prints_one_table(capsys):
    a, b = compare("a", 1.0, model=1.0), compare("b", 2.0, guess=1.0)
    show(a, [b])
    out = capsys.readouterr().out
    assert out.strip() == format_comparisons([a, b])


def test_errors_format_with_a_sign():
    assert format_error(0.254) == "+25 %"
    assert format_error(-0.08) == "−8 %"
    assert format_error(None) == ""


def test_a_zero_measurement_has_no_relative_error():
    c = compare("idle", 0.0, model=0.2, unit="fraction")
    assert c.model_error is None
    assert c.model_verdict == "20 points too high"


def test_mark_draws_guess_and_model_where_asked():
    fig, ax = plt.subplots()
    c = compare("speedup", 1.7, model=2.0, guess=1.0, unit="×", low=1.5, high=1.8, runs=5)
    mark(ax, c, at=2, measured=True)
    points = {line.get_label(): tuple(line.get_xydata()[0]) for line in ax.lines
              if line.get_label() in ("your guess", "cost model")}
    assert points == {"your guess": (2.0, 1.0), "cost model": (2.0, 2.0)}
    fig2, ax2 = plt.subplots()
    mark(ax2, [c, compare("pick", "a", guess="b", unit="choice")], horizontal=True)
    xy = [tuple(line.get_xydata()[0]) for line in ax2.lines]
    assert (1.0, 0.0) in xy and (2.0, 0.0) in xy and len(xy) == 2  # the choice is skipped
    plt.close(fig)
    plt.close(fig2)


def test_median_run_is_the_run_whose_time_is_the_median():
    runs = ["warm-up", "a", "b", "c"]
    assert median_run(runs, Timing([3.0, 1.0, 2.0])) == "c"
    assert median_run(["a", "b"], Timing([2.0, 1.0])) == "b"  # even count: the faster middle


def test_a_note_replaces_the_spread_and_large_ratios_drop_decimals():
    c = compare("speedup", 1316.4, model=307.5, unit="×", note="ratio of the two medians")
    line = format_comparisons([c]).splitlines()[2]
    assert "1,316×" in line and line.endswith("ratio of the two medians")
    assert "17.5×" in str(compare("s", 17.49, unit="×"))


def test_speed_ratios_read_faster_or_the_time():
    assert format_speedup(1.74) == "1.74× faster"
    assert format_speedup(0.30) == "3.33× the time"
    assert format_speedup(0.0) == "no progress"
    assert format_speedup(2.0, than="one worker") == "2.00× faster than one worker"
    assert format_speedup(0.5, than="one worker") == "2.00× the time of one worker"


def test_the_tour_shows_its_cost_models_through_the_same_protocol(tiny_corpus, tmp_path):
    from iokit.app.tour import Context, model_note, stage_threaded_reads

    assert model_note(compare("reads", 400.0, model=500.0, unit="MB/s")) == \
        "model 500.0 MB/s (+25 %; within 25 %: fair, 25 % too fast)"
    row = stage_threaded_reads(Context(tiny_corpus, tmp_path))
    c = row.comparison
    assert c is not None and c.unit == "MB/s" and c.model > 0
    assert c.measured == pytest.approx(row.rate)
    assert model_note(c) in row.note
