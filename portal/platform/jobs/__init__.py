"""The job queue: procrastinate on the portal's own PostgreSQL.

Jobs live in the ``procrastinate_*`` tables (installed by our migrations), so more workers on
more machines scale it with no broker to add. ``flask worker`` runs a worker.

Tasks are declared with ``@task`` (or ``@periodic``): each run gets an app context, acts as
the named system actor ``system:worker``, and commits once or rolls back, like a request.

Work that must only happen after the current request commits (an e-mail must not be sent for
a registration that rolled back) is deferred with ``defer_after_commit``; work whose reason is
committed already (a listener of an after-commit event) is deferred at once with ``defer_now``.
"""

from __future__ import annotations

import functools
import logging
import os

import procrastinate
from procrastinate.testing import InMemoryConnector
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.db import unit_of_work
from portal.db.context import Actor
from portal.db.urls import libpq_url

log = logging.getLogger(__name__)

#: The one procrastinate app of the process. Its connector is set by ``configure``.
job_app = procrastinate.App(connector=InMemoryConnector(), import_paths=["portal.platform.email.tasks",
                                                                      "portal.platform.cache.tasks",
                                                                      "portal.platform.analytics.tasks",
                                                                      "portal.learning.assessment.tasks",
                                                                      "portal.money.earnings.tasks",
                                                                      "portal.money.exchange.tasks",
                                                                      "portal.money.wallets.tasks",
                                                                      "portal.money.payments.tasks",
                                                                      "portal.money.cards.tasks",
                                                                      "portal.money.billing.tasks",
                                                                      "portal.money.lending.tasks",
                                                                      "portal.compliance.aml.tasks",
                                                                      "portal.learning.tutoring.tasks",
                                                                      "portal.platform.gateway.tasks"])
_flask_app = None
WORKER = Actor.system("worker")
#: The process whose connection pool for deferring is open (a fork must open its own).
_open_in_pid: int | None = None


def configure(flask_app) -> None:
    """Point the queue at the app's database (or keep it in memory for tests)."""
    global _flask_app, _open_in_pid
    _flask_app = flask_app
    _open_in_pid = None
    if flask_app.config.get("JOB_QUEUE") == "memory":
        connector = InMemoryConnector()
    else:
        # A small pool: a web process only inserts a job now and then; a worker grows it.
        connector = procrastinate.PsycopgConnector(
            conninfo=queue_conninfo(flask_app.config["SQLALCHEMY_DATABASE_URI"]), min_size=1, max_size=8)
    job_app.connector = connector
    job_app.job_manager.connector = connector


def queue_conninfo(database_url: str) -> str:
    """The queue's connection string: the app's, plus the connection-level setting
    ``app.job_queue=on`` that the row-level security policies of the ``procrastinate_*``
    tables ask for (migration 0008). The app's own connections never set it, so a request
    reaches no job (their arguments name e-mails and users) unless it acts as a system actor."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    conninfo = libpq_url(database_url)
    options = conninfo_to_dict(conninfo).get("options") or ""
    return make_conninfo(conninfo, options=f"{options} -c app.job_queue=on".strip())


def _open_for_deferring() -> None:
    """Open the queue's connection pool in this process on first use: after gunicorn forks its
    workers, never before, so no two processes share a connection.

    A process that only defers (a web worker, a command) opens procrastinate's synchronous pool:
    each job is then one plain statement from the caller's thread, where the asynchronous pool
    ran each through an event loop in another thread (a tenth of a transfer's CPU). A worker
    opens the asynchronous pool itself (``run_worker``), and deferring there goes through it."""
    global _open_in_pid
    if _open_in_pid != os.getpid():
        connector = job_app.connector
        if isinstance(connector, procrastinate.PsycopgConnector):
            connector.get_sync_connector().open()
        else:
            job_app.open()
        _open_in_pid = os.getpid()


def defer_now(job, **kwargs) -> None:
    """Defer ``job`` at once, opening this process's connection to the queue first if needed.

    For work whose cause is already committed (a receiver of an after-commit event). A queue
    that cannot take the job raises: the caller decides whether that may fail its request."""
    _open_for_deferring()
    job.defer(**kwargs)


def run_worker(concurrency: int) -> None:
    """Run a worker in this process until it is stopped. The worker opens its own (async) pool,
    which jobs deferred from inside tasks use too."""
    global _open_in_pid
    _open_in_pid = os.getpid()
    job_app.run_worker(concurrency=concurrency, install_signal_handlers=True)


def _in_app(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if _flask_app is None:
            raise RuntimeError("The job queue is not configured: create the Flask app first.")
        with _flask_app.app_context(), unit_of_work(WORKER):
            return fn(*args, **kwargs)

    return run


def task(**options):
    """Declare a job. The function runs in an app context as ``system:worker``."""

    def decorate(fn):
        return job_app.task(name=f"{fn.__module__}.{fn.__name__}", **options)(_in_app(fn))

    return decorate


def periodic(cron: str, **options):
    """Declare a job that the worker defers on a cron schedule (6th field: seconds)."""

    def decorate(fn):
        declared = job_app.task(name=f"{fn.__module__}.{fn.__name__}", pass_context=False, **options)(_in_app(fn))
        return job_app.periodic(cron=cron)(declared)

    return decorate


def defer_after_commit(session: Session, job, **kwargs) -> None:
    """Defer ``job`` once ``session`` commits; drop it if the transaction rolls back."""
    pending = session.info.setdefault("jobs_after_commit", [])
    pending.append((job, kwargs))


@event.listens_for(Session, "after_commit")
def _defer_pending(session: Session) -> None:
    if session.in_nested_transaction():
        # A savepoint released (SQLAlchemy reports it as a commit too): nothing is committed
        # yet; the outer commit defers the jobs, or its rollback drops them.
        return
    pending = session.info.pop("jobs_after_commit", [])
    for job, kwargs in pending:
        try:
            defer_now(job, **kwargs)
        except Exception:  # the periodic sweep picks the work up; never fail a committed request
            log.exception("could not defer %s; the periodic sweep will retry", job.name)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop("jobs_after_commit", None)
