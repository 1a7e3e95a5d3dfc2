"""Under JupyterHub, dask's dashboard link goes through the Jupyter server's proxy."""

import os
import subprocess
import sys

import pytest

from iokit.lab.scale_out import PROXY_LINK, server_proxy_link

pytest.importorskip("distributed")


def _link(code: str, **env) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return out.stdout.strip().splitlines()[-1]


def test_template_only_under_jupyterhub():
    assert server_proxy_link({"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/"}) == PROXY_LINK
    assert server_proxy_link({}) is None


def test_a_cluster_link_goes_through_the_proxy():
    code = ("import dask.distributed, iokit.lab.scale_out\n"  # dask imported first
            "from iokit.engines import start_local_cluster, close_cluster\n"
            "c = start_local_cluster(1)\nprint(c.dashboard_link)\nclose_cluster(c)\n")
    link = _link(code, JUPYTERHUB_SERVICE_PREFIX="/user/ada/")
    assert link.startswith("/user/ada/proxy/") and link.endswith("/status")
    assert link.split("/")[4].isdigit()  # the dashboard's port


def test_without_jupyterhub_the_link_is_unchanged():
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_SERVICE_PREFIX"}
    code = ("import iokit.lab.scale_out\nfrom distributed.utils import format_dashboard_link\n"
            "print(format_dashboard_link('127.0.0.1', 8787))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "http://127.0.0.1:8787/status"


def test_the_link_without_dask_imported_first():
    code = ("import iokit.lab.scale_out\nfrom distributed.utils import format_dashboard_link\n"
            "print(format_dashboard_link('127.0.0.1', 8787))")
    assert _link(code, JUPYTERHUB_SERVICE_PREFIX="/hub/u/") == "/hub/u/proxy/8787/status"
