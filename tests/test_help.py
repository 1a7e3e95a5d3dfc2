"""The command line's help reads as plain words: no reST markup; the tour says what it runs,
how long it takes and what it writes; --storage lists local among its choices."""

import argparse

from iokit.app.cli import build_parser


def _helps():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"iokit": parser.format_help(),
            **{name: p.format_help() for name, p in sub.choices.items()}}


def test_no_rest_markup_in_any_help():
    helps = _helps()
    assert set(helps) >= {"iokit", "check", "data", "tour", "shards", "bench", "report"}
    for name, text in helps.items():
        assert "`" not in text and ":func:" not in text, name


def test_tour_help_says_what_how_long_and_what_it_writes():
    text = " ".join(_helps()["tour"].split())
    for words in ("naive loop", "dask", "pipeline", "at tiny", "at small", "at large",
                  "What it writes", "temporary folder"):
        assert words in text, words


def test_storage_choices_include_local():
    for name in ("tour", "report"):
        text = " ".join(_helps()[name].split())
        assert "local (this disk" in text and "object-store" in text
