"""Notebook 06's panel headless, and its exercise checks."""

import pytest

from iokit.corpus import iter_documents
from iokit.costs import ClusterModel
from iokit.lab import exercises
from iokit.tokenize import WordTokenizer

pytest.importorskip("ipywidgets")


def test_shard_count_panel_measures_each_count_and_redraws(tiny_corpus, tmp_path):
    from iokit.lab.widgets import shard_count_panel

    tok = WordTokenizer.train((d.text for d in iter_documents(tiny_corpus)), vocab_size=4096)
    panel = shard_count_panel(tiny_corpus, tok, tmp_path, shard_counts=(1, 3), trainers=2,
                              storage="local-nvme")
    panel.run()
    xs, ys = panel.plot.data("measured, 2 trainers")
    assert xs == [1, 3] and all(y > 0 for y in ys)
    assert [n for n, _ in panel.results] == [1, 3]
    one = panel.results[0][1]
    assert one.tokens.tolist()[1] == 0 and one.idle_fraction > 0.4  # one shard, two trainers
    assert "model, 2 trainers, equal shards" in panel.plot.lines
    assert "local-nvme" in panel.status.value
    panel.controls["trainers"].value = 3
    panel.run()
    assert list(panel.plot.lines) == ["model, 3 trainers, equal shards", "measured, 3 trainers"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards-1", "shards-3"]


def test_exercise_checks(capsys):
    m = ClusterModel(10e6, 0.5, 10.0)
    assert exercises.cluster_hours(float(m.predict_even(1e12, 1000, 64)) / 3600, m, 1e12,
                                   1000, 64)
    assert not exercises.cluster_hours(1.0, m, 1e12, 1000, 64)
    assert exercises.best_piece_count(64, m, 1e9, 64)
    assert not exercises.best_piece_count(65, m, 1e9, 64)
    assert not exercises.best_piece_count("many", m, 1e9, 64)
    assert exercises.shards_of_rank(3, 8, 3, 0) and exercises.shards_of_rank(2, 8, 3, 2)
    assert not exercises.shards_of_rank(3, 8, 3, 2)
    assert exercises.idle_fraction(1 / 9, [100] * 8, 3)
    assert "not quite" in capsys.readouterr().out
