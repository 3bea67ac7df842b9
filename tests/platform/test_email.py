"""The e-mail outbox: rows queued in the caller's transaction, delivered by jobs, retried with
backoff while the SMTP server is down, given up on after MAIL_MAX_ATTEMPTS, never lost."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.utils import parsedate_to_datetime

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from portal.db import db
from portal.db.base import utcnow
from portal.platform.email import delivery, services, tasks
from portal.platform.email.models import Email, EmailStatus
from tests.factories import create_user

VERIFY_URL = "https://portal.test/auth/verify/token-123"


def _queue(user=None, to: str | None = None) -> Email:
    user = user or create_user("student")
    return services.queue_email(to or user.email, "verify_email", user_id=user.id, user=user,
                                verify_url=VERIFY_URL)


def _reload(email: Email) -> Email:
    """The row as stored (what delivery changed is flushed first, as the job's commit would)."""
    db.session.flush()
    db.session.expire_all()
    return db.session.get(Email, email.id)


def _make_due(email: Email) -> None:
    db.session.flush()
    db.session.execute(update(Email).where(Email.id == email.id)
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.expire_all()


def _free_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self):
        self.envelopes = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.received.set()
        return "250 Message accepted"


class SmtpServer:
    def __init__(self, port: int):
        self.port = port
        self.inbox = _Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=port)

    def __enter__(self):
        self._controller.start()
        return self

    def __exit__(self, *exc):
        self._controller.stop()


@pytest.fixture
def smtp_config(app, monkeypatch):
    """Point delivery at 127.0.0.1 on a free port; returns the port (nothing listens yet)."""
    port = _free_port()
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "smtp")
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "SMTP_PORT", port)
    monkeypatch.setitem(app.config, "SMTP_TIMEOUT", 5)
    monkeypatch.setitem(app.config, "SMTP_STARTTLS", False)
    monkeypatch.setitem(app.config, "SMTP_USERNAME", "")
    return port


# ---------------------------------------------------------------- queueing

def test_queue_email_writes_a_queued_outbox_row():
    user = create_user("student", full_name="Thandi Mokoena")
    email = _queue(user)
    row = _reload(email)
    assert row.status == EmailStatus.QUEUED
    assert row.attempts == 0
    assert row.to_address == user.email
    assert row.user_id == user.id
    assert row.template == "verify_email"
    assert row.subject == "Confirm your e-mail address for Azora Portal"
    assert row.body_text.startswith("Hello Thandi,")
    assert VERIFY_URL in row.body_text
    assert row.next_attempt_at <= utcnow()
    assert row.sent_at is None and row.last_error is None


def test_a_rolled_back_transaction_leaves_no_email():
    user = create_user("student")
    db.session.commit()  # keep the user; only the e-mail is rolled back
    email_id = _queue(user).id
    db.session.rollback()
    assert db.session.get(Email, email_id) is None


def test_every_template_renders_a_subject_and_body():
    user = create_user("faculty")
    for template, context in {
        "verify_email": {"verify_url": VERIFY_URL},
        "reset_password": {"reset_url": VERIFY_URL},
        "invite": {"accept_url": VERIFY_URL, "inviter": None},
        "already_registered": {"reset_url": VERIFY_URL, "login_url": "https://portal.test/auth/login"},
    }.items():
        subject, body = services.render(template, user=user, **context)
        assert subject and not subject.startswith("Subject")
        assert VERIFY_URL in body, template


# ---------------------------------------------------------------- delivery

def test_console_backend_prints_and_marks_sent(app, monkeypatch, capsys):
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "console")
    email = _queue()
    assert delivery.deliver_one(email.id) is True
    out = capsys.readouterr().out
    assert f"To: {email.to_address}" in out
    assert "Subject: Confirm your e-mail address for Azora Portal" in out
    # printed as a reader sees it: the link whole on one line, not quoted-printable
    assert any(line.strip() == VERIFY_URL for line in out.splitlines()), out
    row = _reload(email)
    assert row.status == EmailStatus.SENT
    assert row.attempts == 1
    assert row.sent_at is not None
    assert row.last_error is None
    # a sent e-mail is not sent again
    assert delivery.deliver_one(email.id) is False
    assert _reload(email).attempts == 1


def test_smtp_delivery_reaches_a_real_server(app, smtp_config):
    email = _queue()
    with SmtpServer(smtp_config) as server:
        assert delivery.deliver_one(email.id) is True
    [envelope] = server.inbox.envelopes
    assert envelope.mail_from == "no-reply@azora.example"
    assert envelope.rcpt_tos == [email.to_address]
    message = message_from_bytes(envelope.original_content, policy=email_policy.default)
    assert message["From"] == app.config["MAIL_FROM"]
    assert message["To"] == email.to_address
    assert message["Subject"] == "Confirm your e-mail address for Azora Portal"
    assert str(email.id) in message["Message-ID"]
    assert VERIFY_URL in message.get_body(("plain",)).get_content()
    row = _reload(email)
    assert row.status == EmailStatus.SENT
    assert row.attempts == 1


def _sent_message(email: Email, port: int):
    """The message as the SMTP server received it."""
    with SmtpServer(port) as server:
        assert delivery.deliver_one(email.id) is True
    [envelope] = server.inbox.envelopes
    return message_from_bytes(envelope.original_content, policy=email_policy.default)


def test_a_sent_message_has_a_utc_date_header(smtp_config):
    email = _queue()
    before = utcnow().replace(microsecond=0)
    message = _sent_message(email, smtp_config)
    after = utcnow()
    assert len(message.get_all("Date")) == 1
    date = parsedate_to_datetime(message["Date"])
    assert date.utcoffset() == timedelta(0)
    assert before <= date <= after


def test_a_sent_message_is_text_then_html_alternatives(smtp_config):
    email = _queue()
    message = _sent_message(email, smtp_config)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    text = parts[0].get_content()
    assert text.startswith("Hello ") and VERIFY_URL in text  # the text part as before
    html = parts[1].get_content()
    assert f'<a href="{VERIFY_URL}">{VERIFY_URL}</a>' in html
    assert "<p>Hello " in html


def test_the_html_part_escapes_the_text_and_links_only_web_addresses():
    body = ('Hi <b>Ana</b> & "Ben",\n'
            "see https://portal.test/a?x=1&y=<2> now.\n\n"
            "javascript:alert(1) and (https://portal.test/b).\n")
    html = delivery.html_body(body, "Fish & <chips>")
    assert "<title>Fish &amp; &lt;chips&gt;</title>" in html
    assert "Hi &lt;b&gt;Ana&lt;/b&gt; &amp; &#34;Ben&#34;,<br>" in html
    # the address ends at the angle bracket, its & escaped in href and text; the full stop stays text
    assert '<a href="https://portal.test/a?x=1&amp;y=">https://portal.test/a?x=1&amp;y=</a>&lt;2&gt; now.' in html
    assert '(<a href="https://portal.test/b">https://portal.test/b</a>).' in html
    assert "javascript:alert(1)" in html and 'href="javascript' not in html
    assert html.count("<p>") == 2  # one paragraph per blank-line-separated block


def test_smtp_down_keeps_the_row_and_backs_off(smtp_config):
    email = _queue()
    delays = []
    for attempt in (1, 2, 3):
        before = utcnow()
        assert delivery.deliver_one(email.id) is False
        after = utcnow()
        row = _reload(email)
        assert row.status == EmailStatus.QUEUED
        assert row.attempts == attempt
        assert "ConnectionRefusedError" in row.last_error
        assert row.sent_at is None
        base = delivery.BACKOFF_BASE * 2 ** (attempt - 1)
        assert before + base <= row.next_attempt_at <= after + base * 1.1
        delays.append(row.next_attempt_at - after)
        # not due yet: another attempt now does nothing
        assert delivery.deliver_one(email.id) is False
        assert _reload(email).attempts == attempt
        _make_due(email)
    assert delays[0] < delays[1] < delays[2]


def test_gives_up_after_max_attempts(app, monkeypatch, smtp_config):
    monkeypatch.setitem(app.config, "MAIL_MAX_ATTEMPTS", 3)
    email = _queue()
    for _ in range(3):
        _make_due(email)
        delivery.deliver_one(email.id)
    row = _reload(email)
    assert row.status == EmailStatus.FAILED
    assert row.attempts == 3
    assert row.last_error
    # a failed e-mail stays in the outbox and is not tried again
    _make_due(email)
    assert delivery.deliver_one(email.id) is False
    row = _reload(email)
    assert (row.status, row.attempts) == (EmailStatus.FAILED, 3)


def test_backoff_grows_and_is_capped():
    for attempts, seconds in ((1, 30), (2, 60), (3, 120), (4, 240)):
        delay = delivery.backoff(attempts)
        assert timedelta(seconds=seconds) <= delay <= timedelta(seconds=seconds * 1.1)
    assert delivery.BACKOFF_MAX <= delivery.backoff(30) <= delivery.BACKOFF_MAX * 1.1


# ---------------------------------------------------------------- the periodic sweep

def test_sweep_delivers_due_rows_only(app, monkeypatch, capsys):
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "console")
    due, later = _queue(), _queue()
    db.session.execute(update(Email).where(Email.id == later.id)
                       .values(next_attempt_at=utcnow() + timedelta(minutes=5)))
    db.session.flush()
    tasks.sweep_outbox(0)
    assert _reload(due).status == EmailStatus.SENT
    waiting = _reload(later)
    assert waiting.status == EmailStatus.QUEUED
    assert waiting.attempts == 0
    out = capsys.readouterr().out
    assert f"To: {due.to_address}" in out
    assert f"To: {later.to_address}" not in out


def test_nothing_is_lost_when_smtp_comes_back(smtp_config):
    email = _queue()
    assert delivery.deliver_one(email.id) is False
    _make_due(email)
    assert delivery.deliver_one(email.id) is False
    assert _reload(email).attempts == 2
    _make_due(email)
    with SmtpServer(smtp_config) as server:
        tasks.sweep_outbox(0)
    row = _reload(email)
    assert row.status == EmailStatus.SENT
    assert row.attempts == 3
    assert row.last_error is None
    # Once, to its address (the sweep also sends what other tests committed to the outbox).
    assert [e.rcpt_tos for e in server.inbox.envelopes].count([email.to_address]) == 1
