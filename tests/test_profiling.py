"""Call trees for the icicle chart: from cProfile's caller/callee pairs and from py-spy's
collapsed stacks, and the chart itself."""

import pytest

from iokit.lab.profiling import Frame, cprofile, profile_tree, prune, stack_tree, top_functions

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def leaf(n):
    return sum(i * i for i in range(n))


def middle(n):
    return leaf(n) + leaf(n // 2)


def outer():
    return middle(200_000) + leaf(100_000)


def test_cprofile_tree_follows_the_calls():
    result, stats = cprofile(outer)
    assert result == outer()
    tree = profile_tree(stats, min_share=0.0)
    assert tree.name.endswith(".outer")
    names = [c.name.split(".")[-1] for c in tree.children]
    assert "middle" in names and "leaf" in names
    mid = next(c for c in tree.children if c.name.endswith(".middle"))
    assert [c.name.split(".")[-1] for c in mid.children] == ["leaf"]
    for _, node in tree.walk():  # a function's callees never take more than it did
        assert sum(c.seconds for c in node.children) <= node.seconds * (1 + 1e-9)
    assert "middle" in top_functions(stats)


def test_stack_tree_from_collapsed_stacks_and_focus():
    stacks = {"<module> (x.py:1);main (x.py:5);read (io.py:3)": 30,
              "<module> (x.py:1);main (x.py:5);tokenize (t.py:9)": 10,
              "<module> (x.py:1);import_stuff (x.py:2)": 60}
    tree = stack_tree(stacks, 0.01, "python")
    assert tree.seconds == pytest.approx(1.0)
    assert [c.name for c in tree.children[0].children] == ["import_stuff (x)", "main (x)"]
    focused = stack_tree(stacks, 0.01, focus="main")
    assert focused.name == "main (x)" and focused.seconds == pytest.approx(0.4)
    assert [c.name for c in focused.children] == ["read (io)", "tokenize (t)"]
    assert focused.children[0].self_seconds == pytest.approx(0.3)


def test_prune_drops_small_and_deep_frames():
    tree = Frame("a", 1.0, [Frame("b", 0.995, [Frame("c", 0.9)]), Frame("tiny", 0.005)])
    cut = prune(tree, min_share=0.01, max_depth=1)
    assert [c.name for c in cut.children] == ["b"] and cut.children[0].children == []


def test_icicle_draws_one_bar_per_frame():
    import matplotlib.pyplot as plt

    from iokit.lab.plots import icicle

    tree = Frame("a", 1.0, [Frame("b", 0.6, [Frame("c", 0.5)]), Frame("d", 0.3)])
    ax = icicle(tree)
    assert len(ax.patches) == 4
    assert "second" in ax.get_xlabel() and ax.get_ylabel() == "call depth"
    plt.close(ax.figure)
