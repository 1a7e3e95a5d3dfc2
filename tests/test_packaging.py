"""pyproject.toml: the license as an SPDX string with its file (no setuptools deprecation
warning), and the extras the set-up check names."""

from pathlib import Path

import pytest

from iokit.app.check import EXTRAS

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_string_with_its_file():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    project = meta["project"]
    assert project["license"] == "MIT"
    assert all((REPO / f).is_file() for f in project["license-files"])
    assert any(r.replace(" ", "").startswith("setuptools>=77")
               for r in meta["build-system"]["requires"])


def test_the_check_knows_every_extra():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(extras) == set(EXTRAS)
    assert any(r.startswith("jupyter-server-proxy") for r in extras["dask"])
