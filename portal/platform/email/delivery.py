"""Delivery of the outbox: send one queued e-mail (SMTP, or the console in development) and
record the outcome; on failure the row waits for its next attempt with exponential backoff,
until ``MAIL_MAX_ATTEMPTS`` marks it ``failed``. The jobs in ``tasks`` call it; ``services``
queues the rows.
"""

from __future__ import annotations

import logging
import random
import re
import smtplib
import sys
import uuid
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from flask import current_app
from markupsafe import Markup, escape
from sqlalchemy import select

from portal.db import db
from portal.db.base import utcnow
from portal.platform.email.models import Email, EmailStatus

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 6 h, with up to 10 % jitter."""
    delay = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)
    return delay * (1 + random.random() / 10)


#: An http(s) address in running text; what follows it up to a space, a quote or an angle bracket.
_URL = re.compile(r"https?://[^\s<>\"']+")
#: Punctuation that ends a sentence rather than the address it follows.
_URL_TAIL = ".,;:!?)]}"


def _linkify(line: str) -> Markup:
    """One line of text as HTML: escaped, with each http(s) address made a link."""
    out, start = Markup(""), 0
    for match in _URL.finditer(line):
        url = match.group(0).rstrip(_URL_TAIL)
        end = match.start() + len(url)
        out += escape(line[start:match.start()])
        out += Markup('<a href="{0}">{0}</a>').format(url)
        start = end
    return out + escape(line[start:])


def html_body(text: str, subject: str) -> str:
    """The HTML alternative of a plain-text body: the same words, escaped, a paragraph per
    blank-line-separated block with its line breaks kept, and addresses made clickable.

    Made from the stored text when the message is built, so the outbox keeps one body and the
    two parts cannot say different things."""
    blocks = [block for block in re.split(r"\n[ \t]*\n", text.strip()) if block.strip()]
    paragraphs = Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(_linkify(line) for line in block.split("\n")))
        for block in blocks
    )
    return str(Markup(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{}</title></head>\n'
        '<body style="font-family: sans-serif; line-height: 1.5">\n{}\n</body></html>\n'
    ).format(subject, paragraphs))


def _message(email: Email) -> EmailMessage:
    """The message as sent: ``Date`` (RFC 5322 section 3.6 requires it; UTC, the time it is
    handed to the server) and a multipart/alternative whose text part comes first, so a client
    that shows HTML picks the last part and one that does not shows the text."""
    msg = EmailMessage()
    msg["From"] = current_app.config["MAIL_FROM"]
    msg["To"] = email.to_address
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(utcnow())
    sender = parseaddr(current_app.config["MAIL_FROM"])[1]
    msg["Message-ID"] = make_msgid(idstring=str(email.id), domain=sender.rpartition("@")[2] or None)
    msg.set_content(email.body_text)
    msg.add_alternative(html_body(email.body_text, email.subject), subtype="html")
    return msg


def _send(email: Email) -> None:
    config = current_app.config
    backend = config["MAIL_BACKEND"]
    if backend == "console":
        # Readable as it would be in a mail client (no transfer encoding), so links can be opened.
        sys.stdout.write(f"\n----- e-mail -----\nFrom: {config['MAIL_FROM']}\nTo: {email.to_address}\n"
                         f"Subject: {email.subject}\n\n{email.body_text}\n------------------\n")
        sys.stdout.flush()
        return
    if backend != "smtp":
        raise RuntimeError(f"Unknown MAIL_BACKEND {backend!r} (use smtp or console)")
    with smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["SMTP_TIMEOUT"]) as smtp:
        if config["SMTP_STARTTLS"]:
            smtp.starttls()
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        smtp.send_message(_message(email))


def deliver(email: Email) -> bool:
    """Try to send one locked, queued e-mail; record the outcome. Returns whether it was sent."""
    email.attempts += 1
    try:
        _send(email)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        email.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if email.attempts >= current_app.config["MAIL_MAX_ATTEMPTS"]:
            email.status = EmailStatus.FAILED
            log.error("giving up on e-mail %s after %s attempts: %s", email.id, email.attempts, exc)
        else:
            email.next_attempt_at = utcnow() + backoff(email.attempts)
            log.warning("e-mail %s attempt %s failed: %s", email.id, email.attempts, exc)
        return False
    email.status = EmailStatus.SENT
    email.sent_at = utcnow()
    email.last_error = None
    return True


def _locked_due(limit: int, email_id: uuid.UUID | None = None):
    stmt = (
        select(Email)
        .where(Email.status == EmailStatus.QUEUED, Email.next_attempt_at <= utcnow())
        .order_by(Email.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if email_id is not None:
        stmt = stmt.where(Email.id == email_id)
    return list(db.session.scalars(stmt))


def deliver_one(email_id: uuid.UUID) -> bool:
    """Deliver one e-mail if it is due and no other worker holds it."""
    return any(deliver(email) for email in _locked_due(1, email_id))


def deliver_due(limit: int = 50) -> tuple[int, int]:
    """Deliver every due e-mail (up to ``limit``); returns (sent, failed attempts)."""
    outcomes = [deliver(email) for email in _locked_due(limit)]
    return sum(outcomes), len(outcomes) - sum(outcomes)
