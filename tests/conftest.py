"""Shared fixtures: a small generated corpus made once per test session."""

import os

import pytest

from iokit.corpus import generate_corpus

os.environ.setdefault("IOKIT_PROGRESS", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "network: downloads packages from PyPI (make wheelhouse); "
                            "leave out with -m 'not network'")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The tiny generated corpus (about 3 MB), in a temporary folder."""
    return generate_corpus(tmp_path_factory.mktemp("data") / "tiny.jsonl", "tiny", progress=False)

