"""Property-based tests of the command line: whatever the arguments, only the kit's errors.

Hypothesis draws argument lists for ``iokit shards`` (the command with the most settings) from
hostile and ordinary values: worker and part counts from negative to absurd, unknown engines
and codecs, scheduler addresses that are not URLs or where nothing listens, output places that
cannot be written, corpora that are missing, empty, malformed or folders. Then free-form
argument lists for every command. Each run must end in one of three ways: success (exit 0),
the kit's one-line error (exit 2, ``iokit: error: ...`` on stderr), or argparse's own usage
error (``SystemExit(2)``); never a traceback.

Set ``IOKIT_FUZZ_EXAMPLES`` (examples per test) for longer local runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iokit.app import cli


def fuzz_settings(default: int):
    n = int(os.environ.get("IOKIT_FUZZ_EXAMPLES", default))
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """Corpora good and bad, a file where a folder should be, and a data folder."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    (root / "good.jsonl").write_text("".join(f'{{"text": "word{i} and more words {i % 3}"}}\n'
                                             for i in range(30)))
    (root / "bad.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')
    (root / "empty.jsonl").write_text("")
    (root / "txt").mkdir()
    (root / "txt" / "a.txt").write_text("a small text file")
    (root / "parts").mkdir()
    (root / "parts" / "part-00000.jsonl").write_text('{"text": "one two"}\n' * 3)
    (root / "afile").write_text("not a folder")
    (root / "nothing").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IOKIT_DATA", str(root / "data"))
        mp.setenv("IOKIT_PROGRESS", "0")
        yield root


CORPORA = ["good.jsonl", "bad.jsonl", "empty.jsonl", "txt", "parts", "missing.jsonl",
           "afile", "nothing"]
OUTS = ["{out}", "{out}/deeper", "{root}/afile/out", "{root}/afile", "/proc/iokit-fuzz",
        "/proc/self"]
SCHEDULERS = ["notaurl", "tcp://", "tcp://127.0.0.1:9", "tcp://127.0.0.1:99999",
              "http://127.0.0.1:8786", "127.0.0.1:9", "tcp://[::1]:9", " ", "tcp://a b:1"]
COUNTS = st.one_of(st.integers(-3, 40), st.sampled_from([0, 10_000, 10**12, 2**63]))
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)


def _run(argv: list[str], capsys) -> None:
    capsys.readouterr()  # what earlier examples printed
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's usage error (or --help)
        assert exc.code in (0, 2), argv
        return
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.startswith("iokit: error: ") and err.count("\n") == 1, (argv, err)


VALID = {"--corpus": "{root}/good.jsonl", "--out": "{out}", "--engine": "serial",
         "--parts": "3", "--workers": None, "--codec": None, "--scheduler": None,
         "--vocab-size": "50", "--text-field": None}
HOSTILE = {
    "--corpus": st.sampled_from([f"{{root}}/{c}" for c in CORPORA]),
    "--out": st.sampled_from(OUTS),
    "--engine": st.sampled_from(["threads", "processes", "dask", "gpu", ""]),
    "--parts": COUNTS.map(str),
    "--workers": COUNTS.map(str),
    "--codec": st.one_of(st.sampled_from(["zstd:3", "zlib:99", "brotli", "lzw", "zstd-dict:3",
                                          ":", "none"]), TEXT),
    "--scheduler": st.one_of(st.sampled_from(SCHEDULERS), TEXT),
    "--vocab-size": st.sampled_from(["-1", "0", "2", "3", str(10**9), "x"]),
    "--text-field": st.sampled_from(["text", "body", ""]),
}


@fuzz_settings(40)
@given(hostile=st.lists(st.sampled_from(sorted(HOSTILE)), max_size=3, unique=True),
       data=st.data())
def test_shards_with_any_settings_gives_only_the_kits_errors(place, capsys, hostile, data):
    # A valid run with up to three settings replaced by hostile or odd values.
    settings_ = dict(VALID, **{flag: data.draw(HOSTILE[flag], label=flag) for flag in hostile})
    if settings_["--engine"] == "dask" and settings_["--scheduler"] is None:
        settings_["--scheduler"] = "notaurl"  # a LocalCluster per example would take too long
    with tempfile.TemporaryDirectory(dir=place) as scratch:
        argv = ["shards"]
        for flag, value in settings_.items():
            if flag in ("--corpus", "--out"):
                value = value.format(out=Path(scratch) / "out", root=place)
            if value is not None:
                argv += [flag, value]
        _run(argv, capsys)


WORDS = st.sampled_from(["shards", "data", "tour", "report", "bench", "--scale", "tiny",
                         "huge", "--storage", "floppy", "--corpus", "--out", "--workers",
                         "--parts", "-1", "0", "--engine", "--codec", "--scheduler", "--help",
                         "--text-field", "--vocab-size", "=", "--"])


@fuzz_settings(60)
@given(argv=st.lists(st.one_of(WORDS, TEXT), max_size=8))
def test_any_argument_list_gives_only_the_kits_errors(place, capsys, argv):
    # Commands that would run real work on a valid corpus get a corpus that is not there.
    if argv and argv[0] in ("tour", "report", "bench", "shards", "data"):
        if argv[0] != "data":
            argv = [*argv, "--corpus", str(place / "missing.jsonl")]
        else:
            argv = [*argv, "--scale", "enormous"]
    _run(argv, capsys)
