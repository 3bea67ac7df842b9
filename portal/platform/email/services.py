"""The e-mail outbox.

``queue_email`` writes a row in ``emails`` in the caller's transaction: if the request rolls
back, no e-mail exists. After the commit a job (``tasks``) delivers it (``delivery``); if the
SMTP server is down, the row stays ``queued`` with a later ``nextAttemptAt`` (exponential
backoff) and the periodic sweep tries again, until ``MAIL_MAX_ATTEMPTS`` marks it ``failed``. Nothing is lost: the row is the
source of truth, not the job.
"""

from __future__ import annotations

import uuid

from flask import current_app

from portal.db import db
from portal.db.base import utcnow
from portal.platform.email import tasks
from portal.platform.email.models import Email, EmailStatus
from portal.platform.jobs import defer_after_commit


def render(template: str, **context) -> tuple[str, str]:
    """(subject, body) from ``templates/email/<template>.txt``: first line ``Subject: ...``."""
    text = current_app.jinja_env.get_template(f"email/{template}.txt").render(**context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"email/{template}.txt must start with a Subject: line")
    return first.removeprefix("Subject:").strip(), body.lstrip("\n")


def queue_email(to: str, template: str, *, user_id: uuid.UUID | None = None, **context) -> Email:
    subject, body = render(template, **context)
    email = Email(
        user_id=user_id,
        to_address=to,
        subject=subject,
        body_text=body,
        template=template,
        status=EmailStatus.QUEUED,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    db.session.add(email)
    db.session.flush()
    defer_after_commit(db.session, tasks.deliver_email, email_id=str(email.id))
    return email
