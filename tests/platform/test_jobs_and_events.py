"""The job queue (in memory under test), work deferred until commit, jobs acting as a named
system actor, and the domain events: documented in one table and fired by their owners."""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import procrastinate
import pytest
from blinker import Signal
from procrastinate.testing import InMemoryConnector
from sqlalchemy import select, text

from portal import events
from portal.accounts import services as accounts
from portal.accounts.models import Role, UserStatus
from portal.app import session_policy
from portal.db import db
from portal.db.audit import AuditLog
from portal.platform import jobs
from portal.platform.email import services as email_services
from portal.platform.email import tasks
from portal.platform.email.models import Email, EmailStatus
from tests.conftest import TEST_DB
from tests.factories import PASSWORD, create_user

DELIVER = "portal.platform.email.tasks.deliver_email"


def _connector() -> InMemoryConnector:
    return jobs.job_app.connector


def _new_jobs(before: set[int]) -> list[dict]:
    return [job for job_id, job in _connector().jobs.items() if job_id not in before]


def _queue_email() -> Email:
    user = create_user("student")
    return email_services.queue_email(user.email, "verify_email", user_id=user.id, user=user,
                                      verify_url="https://portal.test/verify/x")


# ---------------------------------------------------------------- the queue under test

def test_the_job_queue_is_in_memory_under_test(app):
    assert app.config["JOB_QUEUE"] == "memory"
    assert isinstance(jobs.job_app.connector, InMemoryConnector)
    assert jobs.job_app.job_manager.connector is jobs.job_app.connector
    assert DELIVER in jobs.job_app.tasks
    assert "portal.platform.email.tasks.sweep_outbox" in jobs.job_app.tasks


def test_outside_tests_the_queue_lives_in_the_database(app):
    other = SimpleNamespace(config={"JOB_QUEUE": "postgres",
                                    "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    try:
        jobs.configure(other)
        assert isinstance(jobs.job_app.connector, procrastinate.PsycopgConnector)
        assert jobs.job_app.job_manager.connector is jobs.job_app.connector
    finally:
        jobs.configure(app)
    assert isinstance(jobs.job_app.connector, InMemoryConnector)


def test_email_job_is_deferred_only_after_commit():
    before = set(_connector().jobs)
    email = _queue_email()
    assert _new_jobs(before) == []  # nothing before the commit
    db.session.commit()
    [job] = _new_jobs(before)
    assert job["task_name"] == DELIVER
    assert job["args"] == {"email_id": str(email.id)}
    assert job["queue_name"] == "email"
    assert job["status"] == "todo"
    # the next commit does not defer it again
    db.session.commit()
    assert len(_new_jobs(before)) == 1


def test_no_job_when_the_transaction_rolls_back():
    before = set(_connector().jobs)
    create_user("student")
    db.session.commit()
    email_id = _queue_email().id
    db.session.rollback()
    assert db.session.get(Email, email_id) is None
    db.session.commit()  # a later commit must not defer the dropped job
    assert _new_jobs(before) == []


def test_a_rolled_back_savepoint_keeps_the_outer_transactions_jobs():
    before = set(_connector().jobs)
    email = _queue_email()
    with pytest.raises(RuntimeError), db.session.begin_nested():
        create_user("student")
        raise RuntimeError("undo the inner part only")
    db.session.commit()
    assert [j["args"] for j in _new_jobs(before)] == [{"email_id": str(email.id)}]


def test_a_released_savepoint_defers_nothing_before_the_real_commit():
    before = set(_connector().jobs)
    with db.session.begin_nested():
        email = _queue_email()
    assert _new_jobs(before) == []  # released, not committed: a worker must not see it yet
    db.session.commit()
    assert [j["args"] for j in _new_jobs(before)] == [{"email_id": str(email.id)}]


def test_a_job_that_cannot_be_deferred_does_not_fail_the_commit(caplog):
    class Broken:
        name = "broken.job"

        def defer(self, **kwargs):
            raise ConnectionError("queue down")

    user = create_user("student")
    jobs.defer_after_commit(db.session, Broken(), user_id=str(user.id))
    db.session.commit()  # no exception
    assert db.session.get(type(user), user.id) is not None
    assert "could not defer broken.job" in caplog.text


def test_jobs_act_as_the_named_system_actor(app, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "console")
    email = _queue_email()
    db.session.flush()
    assert tasks.deliver_email(email_id=str(email.id)) is True
    db.session.expire_all()
    assert db.session.get(Email, email.id).status == EmailStatus.SENT
    [row] = db.session.scalars(select(AuditLog).where(
        AuditLog.table_name == "emails", AuditLog.row_id == str(email.id), AuditLog.action == "UPDATE")).all()
    assert row.actor == "system:worker"
    assert row.actor_role == "system"
    assert "bodyText" not in row.new_values


def test_a_worker_runs_the_deferred_job(app, monkeypatch):
    """End to end through procrastinate: commit, then a worker that stops when the queue is
    empty delivers the e-mail."""
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "console")
    before = set(_connector().jobs)
    email = _queue_email()
    db.session.commit()
    [job] = _new_jobs(before)
    jobs.job_app.run_worker(queues=["email"], wait=False, install_signal_handlers=False,
                            listen_notify=False)
    assert _connector().jobs[job["id"]]["status"] == "succeeded"
    db.session.expire_all()
    sent = db.session.get(Email, email.id)
    assert sent.status == EmailStatus.SENT
    assert sent.attempts == 1


@pytest.mark.no_db_rollback
def test_on_the_database_queue_a_commit_defers_the_job_and_a_worker_delivers_it():
    """The real connector, as ``make run`` and production use it: the web process opens its
    pool on first use, the job row is in procrastinate_jobs, a worker sends the e-mail."""
    from portal.db.context import Actor, acting_as
    from tests.db import separate_app

    with separate_app(f"{TEST_DB}_jobs", JOB_QUEUE="postgres", MAIL_BACKEND="console") as (
            application, _owner, _app_url), application.app_context():
        with acting_as(Actor.system("tests")):
            email = _queue_email()
            db.session.commit()
            # the queue's rows are reached by system actors and the queue's own connections
            queued = db.session.execute(text(
                "SELECT task_name, args->>'email_id' FROM procrastinate_jobs WHERE status = 'todo'")).all()
        assert queued == [(DELIVER, str(email.id))]
        jobs.job_app.run_worker(queues=["email"], wait=False, install_signal_handlers=False,
                                listen_notify=False)
        db.session.expire_all()
        with acting_as(Actor.system("tests")):  # the outbox is read by admins and system actors
            assert db.session.get(Email, email.id).status == EmailStatus.SENT
        jobs.job_app.close()


# ---------------------------------------------------------------- events: the table

def _documented() -> dict[str, str]:
    """{event: emitted by} from the table in portal/events.py's docstring."""
    return dict(re.findall(r"^\| ``(\w+)`` \| ([^|]+?) \|", events.__doc__, re.MULTILINE))


def test_every_signal_is_in_the_table_and_in_names():
    signals = {name for name, value in vars(events).items() if isinstance(value, Signal)}
    assert signals == set(events.NAMES)
    assert set(_documented()) == signals
    for name in signals:
        assert getattr(events, name).name == name


# ---------------------------------------------------------------- events: fired by their owners

class Links:
    def verify_email(self, token: str) -> str:
        return f"https://portal.test/verify/{token}"

    def reset_password(self, token: str) -> str:
        return f"https://portal.test/reset/{token}"

    def accept_invite(self, token: str) -> str:
        return f"https://portal.test/invite/{token}"

    def login(self) -> str:
        return "https://portal.test/login"


@contextmanager
def received(signal: Signal):
    calls: list[dict] = []

    def receiver(sender, **kwargs):
        calls.append(kwargs)

    with signal.connected_to(receiver):
        yield calls


def _email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@tests.example"


def test_user_registered_fires_from_registration():
    with received(events.user_registered) as calls:
        user = accounts.register_student(_email("reg"), "New Student", PASSWORD, Links())
    assert calls == [{"user": user}]
    # a second registration of the same address creates no user and fires nothing
    with received(events.user_registered) as calls:
        assert accounts.register_student(user.email, "New Student", PASSWORD, Links()) is None
    assert calls == []


def test_email_verified_fires_once():
    user = create_user("student", verified=False)
    token = accounts.verification_token(user)
    with received(events.email_verified) as calls:
        accounts.verify_email(token)
        accounts.verify_email(token)
    assert calls == [{"user": user}]


def test_login_events_fire_from_authenticate(app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_ACCOUNT", 2)
    policy = session_policy(app)
    user = create_user("student")
    with received(events.user_logged_in) as ok, received(events.login_failed) as failed:
        result = accounts.authenticate(user.email, PASSWORD, ip="203.0.113.9", user_agent="pytest", policy=policy)
        assert result.user is not None
        assert ok == [{"user": user, "ip": "203.0.113.9", "user_agent": "pytest"}]
        for _ in range(2):
            accounts.authenticate(user.email, "wrong password 123", ip="203.0.113.9", user_agent="pytest",
                                  policy=policy)
        accounts.authenticate(user.email, PASSWORD, ip="203.0.113.9", user_agent="pytest", policy=policy)
    assert [c["reason"] for c in failed] == ["bad_credentials", "bad_credentials", "throttled"]
    assert all(c["email"] == user.email and c["ip"] == "203.0.113.9" for c in failed)
    assert len(ok) == 1  # the throttled attempt did not log in


def test_login_failed_inactive(app):
    user = create_user("student", status=UserStatus.DEACTIVATED)
    with received(events.login_failed) as failed:
        result = accounts.authenticate(user.email, PASSWORD, ip=None, user_agent=None, policy=session_policy(app))
    assert result.user is None
    assert [c["reason"] for c in failed] == ["inactive"]


def test_password_changed_fires_for_change_reset_and_invite():
    user = create_user("student")
    new_password = "another long passphrase 42"
    with received(events.password_changed) as calls:
        accounts.change_password(user, PASSWORD, new_password, keep_token=None)
        accounts.reset_password(accounts.password_reset_token(user), "a third long passphrase 7")
        admin = create_user("admin")
        invited = accounts.create_staff(admin, _email("invited"), "Invited Person", "faculty", Links())
        accounts.accept_invite(accounts.invite_token(invited), "invited person passphrase 9")
    assert [(c["user"], c["via"]) for c in calls] == [(user, "change"), (user, "reset"), (invited, "invite")]


def test_account_changed_fires_for_admin_actions():
    admin = create_user("admin")
    with received(events.account_changed) as calls:
        staff = accounts.create_staff(admin, _email("staff"), "Staff Person", "compliance", Links())
        accounts.change_role(admin, staff.id, Role.FACULTY)
        accounts.deactivate(admin, staff.id)
        accounts.reactivate(admin, staff.id)
    assert [(c["user"], c["actor"], c["change"]) for c in calls] == [
        (staff, admin, "created"), (staff, admin, "role"), (staff, admin, "deactivated"), (staff, admin, "reactivated"),
    ]


def test_permission_denied_fires_from_the_web_layer(client, login_as):
    student = login_as("student")
    with received(events.permission_denied) as calls:
        assert client.get("/admin/users").status_code == 403
    [call] = calls
    assert call["user"].id == student.id
    assert call["endpoint"].startswith("admin.")
    assert call["needed"] is not None


def test_receivers_run_inside_the_emitters_transaction():
    """A receiver's write commits or rolls back with the service's transaction."""
    from portal.platform.notifications.models import Notification
    from portal.platform.notifications.services import notify

    def on_registered(sender, user):
        notify(user.id, "welcome", "Welcome from a receiver")

    with events.user_registered.connected_to(on_registered):
        user = accounts.register_student(_email("tx"), "Tx Student", PASSWORD, Links())
    user_id = user.id
    db.session.flush()
    titles = db.session.scalars(select(Notification.title).where(Notification.user_id == user_id)).all()
    assert "Welcome from a receiver" in titles
    db.session.rollback()
    assert db.session.scalars(select(Notification).where(Notification.user_id == user_id)).all() == []
