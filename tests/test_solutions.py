"""Every exercise's solution passes its check, and no notebook runs a solution on Run All.

The solutions live in :mod:`iokit.lab.solutions` and take the notebook variables they need
by name. Here each of those variables is a real object of the kind the notebook makes, built
small (a real tiny corpus and its statistics, cost models with known parameters), so
nbval does not have to run the solutions to check them.
"""

import json
import re
from pathlib import Path

import pytest

from iokit.costs import (
    BatchCostModel,
    ClusterModel,
    CodecProfile,
    EpochCostModel,
    RequestCostModel,
)
from iokit.errors import ParameterError
from iokit.lab import solutions
from iokit.lab.compression import BlockBytesPoint
from iokit.timing import Timing

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
REVEAL = re.compile(r"""reveal\(\s*["'](\d\d)["']\s*,\s*(\d+)""")
VERDICTS = ("✓ correct", "✗ not quite")


@pytest.fixture(scope="module")
def variables(tiny_corpus):
    """One value for every notebook variable a solution may ask for."""
    from iokit.corpus import corpus_stats
    from iokit.probe import Signals

    points = [BlockBytesPoint("zstd:3", bs, 100_000, stored) for bs, stored in
              [(1024, 60_000), (4096, 45_000), (16_384, 38_000), (65_536, 36_000)]]
    points += [BlockBytesPoint("zstd-dict:3", bs, 100_000, 34_000) for bs in (1024, 4096)]
    return {
        "stats": corpus_stats(tiny_corpus),
        "corpus": tiny_corpus,
        "remote_model": RequestCostModel(overhead_s=0.02, bandwidth=80e6),
        "real_model": RequestCostModel(overhead_s=0.01, bandwidth=250e6),
        "measured": EpochCostModel(preprocess_s=3.0, raw_epoch_s=2.5, shard_epoch_s=0.1),
        "prof": CodecProfile("zstd:3", ratio=2.8, decode_bps=700e6),
        "sweep": points,
        "whole": 100_000 / 35_000,
        "stage_s": [0.020, 0.003, 0.002],
        "model": ClusterModel(bytes_per_s=5e6, overhead_s=0.05, startup_s=1.0),
        "shard_tokens": [1000, 1200, 900, 1100, 1000, 950, 1050, 980],
        "cost_model": BatchCostModel(load_s=0.1, bytes_per_s=2e6, task_s=0.005,
                                     startup_s=0.3, cores=2),
        "docs": tiny_corpus,  # notebook 07's documents
        "load": Timing([0.09, 0.10, 0.12], label="load the model"),
        "per_doc": 0.002,  # seconds to summarise one document
        "exercise_signals": Signals(  # notebook 08's, as its exercise cell makes them
            steps=100, seconds=1.25, compute_s=0.5, wait_s=0.75, cores=2, workers=2,
            prefetch=2, nominal_step_s=0.005,
            stage_s={"read": 0.030, "decompress": 0.00005, "batch": 0.00005},
            stage_cpu_s={"read": 0.0002, "decompress": 0.00005},
            bytes_per_token=2.0, itemsize=2),
    }


@pytest.mark.parametrize("key", sorted(solutions.SOLUTIONS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_every_solution_passes_its_check(key, variables, capsys):
    result = solutions.reveal(*key, **variables)
    out = capsys.readouterr().out
    assert out.startswith(f"# solution {key[0]}-{key[1]}")
    if result is None:  # an open question: it only prints what to compare
        assert "✗" not in out
    else:
        assert result is True, out
        assert "✗ not quite" not in out


def test_reveal_shows_the_code_and_uses_the_callers_variables(capsys):
    prof = CodecProfile("zstd:3", ratio=2.0, decode_bps=500e6)  # noqa: F841 (found by name)
    assert solutions.reveal("03", 1) is True
    out = capsys.readouterr().out
    assert "answer = prof.decode_bps * (1 - 1 / prof.ratio) / 1e6" in out
    assert "@solution" not in out and "def _03_1" not in out
    assert out.rstrip().endswith("✓ correct")


def test_reveal_names_a_missing_variable_and_an_unknown_exercise():
    with pytest.raises(ParameterError, match=r"'stats'.*run the notebook's cells above"):
        solutions.reveal("00", 1)
    with pytest.raises(ParameterError, match=r"no solution 03-9; notebook 03 has solutions 1, 2"):
        solutions.reveal(3, 9)
    with pytest.raises(ParameterError, match="no solutions here"):
        solutions.reveal("99", 1)


def notebook_cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def english_notebooks():
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", english_notebooks(), ids=lambda p: p.name)
def test_run_all_prints_no_solution(path):
    """The checked outputs (what Run All produced) hold no check verdict: the exercise cells run
    a check only on a learner's own answer, and no cell calls a solution."""
    for i, cell in enumerate(notebook_cells(path)):
        if cell["cell_type"] != "code":
            continue
        text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
        assert not any(v in text for v in VERDICTS), f"{path.name} cell {i} printed a verdict"
        for line in "".join(cell["source"]).splitlines():
            assert not REVEAL.search(line.split("#")[0]), \
                f"{path.name} cell {i} reveals a solution on Run All: {line.strip()}"


@pytest.mark.parametrize("path", english_notebooks(), ids=lambda p: p.name)
def test_each_notebook_offers_exactly_its_solutions(path):
    number = path.name[:2]
    offered = set()
    for cell in notebook_cells(path):
        offered.update((nb, int(k)) for nb, k in REVEAL.findall("".join(cell["source"])))
    assert {nb for nb, _ in offered} <= {number}, f"{path.name} offers another notebook's"
    assert offered == {k for k in solutions.SOLUTIONS if k[0] == number}
