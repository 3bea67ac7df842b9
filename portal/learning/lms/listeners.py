"""Receivers of the learning events that issue certificates. ``create_app`` connects them
(``portal.app._connect_listeners``); they run inside the emitter's transaction.
"""

from __future__ import annotations

from portal import events
from portal.accounts.models import User
from portal.learning.education.models import Course
from portal.learning.lms.certificates import issue_certificate


@events.course_completed.connect
def _issue_on_completion(_sender=None, *, user: User, course: Course, **_) -> None:
    issue_certificate(user, course)
