"""The commands with no kernelmon running and a live local jupyter_server: its kernels are
the server's rows (the server's model and its notebook), as in a running kernelmon; one
look at the machine cannot say that, so ``list`` builds the map and waits for its first
poll."""

from __future__ import annotations

from pathlib import Path

from tests.servers.realservers import start_jupyter_server
from tests.servers.test_client_jupyter_server import open_notebook

from .conftest import Cli


def test_list_shows_a_local_servers_kernel_as_the_servers_row(cli: Cli, tmp_path: Path):
    server = start_jupyter_server(tmp_path / "js")
    try:
        kid = open_notebook(server, "analysis.ipynb")["kernel"]["id"]
        model = cli.models("--runtime-dir", str(server.runtime_dir))[kid]
        assert model["origin"] == "server"
        assert model["notebook_path"] == "analysis.ipynb"
        assert model["server_url"] == server.url
        shown = cli("show", kid, "--runtime-dir", str(server.runtime_dir))
        assert shown.returncode == 0, shown.stderr
        assert "analysis" in shown.stdout
    finally:
        server.stop()
    assert not cli.qt_log.exists(), "the command line imported Qt"
