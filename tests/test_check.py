"""`iokit check`: one line per item, a verdict, exit 0 when ready and 1 when not."""

import errno
import shutil
from collections import namedtuple

import pytest

from iokit.app import check
from iokit.app.cli import main


@pytest.fixture
def ready(monkeypatch, tmp_path):
    """Every package present, Chromium found, data in a fresh folder: the check passes."""
    monkeypatch.setattr(check, "_version", lambda name: "1.0")
    monkeypatch.setenv("IOKIT_CHROMIUM", shutil.which("sh"))
    monkeypatch.setenv("IOKIT_DATA", str(tmp_path / "data"))
    return tmp_path


def _run(capsys, *argv):
    code = main(["check", *argv])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, lines[:-1], lines[-1]


def test_ready_machine(ready, capsys):
    code, items, verdict = _run(capsys, "--scale", "tiny")
    assert code == 0 and verdict.startswith("ready:")
    names = [line[6:].split("  ")[0].strip() for line in items]
    assert names == ["Python", "packages", "extra 'bpe'", "extra 'dask'", "extra 's3'",
                     "extra 'profile'", "extra 'dev'", "extra 'spacy'", "extra 'spark'", "cores",
                     "free disk", "data folder", "Chromium"]
    assert all(line.startswith("ok") for line in items if "cores" not in line)
    assert any("made on first use" in line for line in items)


def test_missing_extra_is_a_warning_naming_what_to_install(ready, monkeypatch, capsys):
    monkeypatch.setattr(check, "_version", lambda name: None if name == "tokenizers" else "1")
    code, items, verdict = _run(capsys)
    (bpe,) = [line for line in items if "extra 'bpe'" in line]
    assert bpe.startswith("warn") and "missing tokenizers" in bpe and ".[bpe]" in bpe
    assert code == 0 and verdict.startswith("ready, with less") and "extra 'bpe'" in verdict


def test_missing_package_fails(ready, monkeypatch, capsys):
    monkeypatch.setattr(check, "_version", lambda name: None if name == "zstandard" else "1")
    code, items, verdict = _run(capsys)
    assert code == 1 and verdict.startswith("not ready") and "packages" in verdict
    assert any(line.startswith("FAIL") and "missing zstandard" in line for line in items)


def test_old_python_fails(ready, monkeypatch, capsys):
    monkeypatch.setattr(check, "MIN_PYTHON", (99, 0))
    code, items, _ = _run(capsys)
    assert code == 1 and items[0].startswith("FAIL") and "99.0 or newer" in items[0]


def test_too_little_disk_for_the_scale(ready, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(check.shutil, "disk_usage", lambda p: usage(10**9, 0, 200 * 10**6))
    code, items, _ = _run(capsys, "--scale", "tiny")
    assert code == 0  # 200 MB is enough for tiny
    code, items, verdict = _run(capsys, "--scale", "small")
    (disk,) = [line for line in items if "free disk" in line]
    assert code == 1 and disk.startswith("FAIL") and "scale small needs" in disk
    assert "free disk" in verdict


def test_data_folder_not_writable(ready, monkeypatch, capsys):
    def refuse(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(check.tempfile, "TemporaryFile", refuse)
    code, items, verdict = _run(capsys)
    (line,) = [line for line in items if "data folder" in line]
    assert code == 1 and line.startswith("FAIL") and "IOKIT_DATA" in line


def test_no_chromium_is_a_warning(ready, monkeypatch, capsys):
    monkeypatch.setenv("IOKIT_CHROMIUM", str(ready / "no-such-browser"))
    code, items, verdict = _run(capsys)
    assert code == 0 and items[-1].startswith("warn") and "browser tests" in items[-1]


def test_bad_scale_is_the_kits_one_line_error(ready, capsys):
    assert main(["check", "--scale", "huge"]) == 2
    assert capsys.readouterr().err.startswith("iokit: error: unknown scale 'huge'")
