"""``flask db-server stop`` stops the embedded server for real: its ``postmaster.pid`` is gone
and its process has exited. Each test runs a server of its own in a temporary data directory,
never the suite's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal.db import embedded


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def own_server():
    base = Path(tempfile.mkdtemp(prefix="azora-stop-"))
    base.chmod(0o755)  # as root the server runs as its own system user, which must reach it
    data_dir = base / "postgres"
    # Started by another process, as `make run` starts it; that process has exited since.
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from portal.db import embedded; embedded.admin_url(Path(sys.argv[1]))", str(data_dir)],
                   check=True, timeout=300)
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    assert _alive(pid)
    yield data_dir, pid
    try:
        embedded.stop(data_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_stop_removes_the_pid_file_and_ends_the_server(own_server):
    data_dir, pid = own_server

    assert embedded.stop(data_dir) is True

    assert not (data_dir / "postmaster.pid").exists()
    assert not _alive(pid)
    assert embedded.stop(data_dir) is False  # a second stop finds nothing running


def test_stop_works_while_another_process_holds_a_handle(own_server):
    """The library stops a server only when its last registered process lets go; a dev server or
    worker that opened it keeps it registered, which is what left the server running."""
    data_dir, pid = own_server
    handles = data_dir / ".handle_pids.json"
    other = os.getppid()  # a live process other than ours, as a running `make run` would be
    handles.write_text(f"[{other}, {os.getpid()}]")

    assert embedded.stop(data_dir) is True
    assert not (data_dir / "postmaster.pid").exists()
    assert not _alive(pid)


def test_cli_db_server_stop_stops_it(own_server, monkeypatch):
    from portal.cli import db_server

    data_dir, pid = own_server
    real_stop = embedded.stop
    monkeypatch.setattr(embedded, "stop", lambda: real_stop(data_dir))

    result = CliRunner().invoke(db_server, ["stop"])

    assert result.exit_code == 0, result.output
    assert "Stopped." in result.output
    assert not (data_dir / "postmaster.pid").exists()
    assert not _alive(pid)
