"""`make clean` removes everything the kit generated and never the learner's notebooks."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_keeps_only_what_is_not_generated(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    made = ["data/corpus-small-seed1234.jsonl", "data/own-books-text.jsonl",
            "data/scale-out-small/shards-8/shard-00000.bin", "data/shards-tiny-word/x.idx",
            "reports/report.html", ".venv/bin/python", "iokit/__pycache__/x.pyc",
            "notebooks/.ipynb_checkpoints/00_setup-checkpoint.ipynb", "build/lib/x.py",
            "iokit.egg-info/PKG-INFO", ".hypothesis/examples/x", ".ruff_cache/x"]
    kept = ["data/README.md", "my-notebooks/00_setup.ipynb",
            "my-notebooks/.ipynb_checkpoints/00_setup-checkpoint.ipynb",
            "notebooks/00_setup.ipynb", "iokit/corpus.py"]
    for name in made + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True, env=env)
    assert [n for n in made if (tmp_path / n).exists()] == []
    assert [n for n in kept if not (tmp_path / n).exists()] == []
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["README.md"]


def test_make_clean_leaves_iokit_data_alone_and_says_so(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "data").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "corpus-small-seed1234.jsonl").write_text("x")
    out = subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "IOKIT_DATA": str(elsewhere)})
    assert (elsewhere / "corpus-small-seed1234.jsonl").exists()
    assert f"left alone: IOKIT_DATA={elsewhere}" in out.stdout
