"""Domain events: the one list of names that areas emit and listen to.

Areas never import each other to cause side effects; they emit a named signal and whoever
cares listens (notifications, earnings, analytics, security monitoring). Receivers run inside
the emitter's database transaction, so their writes commit or roll back with it; work that must
wait for the commit (sending e-mail) goes through the job queue.

Emit with keyword arguments only::

    events.user_registered.send(user=user)

| event | emitted by | arguments |
|---|---|---|
| ``user_registered`` | accounts | user |
| ``email_verified`` | accounts | user |
| ``user_logged_in`` | accounts | user, ip, user_agent |
| ``login_failed`` | accounts | email, ip, reason (``bad_credentials``, ``throttled``, ``inactive``) |
| ``password_changed`` | accounts | user, via (``change``, ``reset``, ``invite``) |
| ``account_changed`` | accounts (admin actions) | user, actor, change (``created``, ``role``, ``deactivated``, ``reactivated``) |
| ``permission_denied`` | web layer | user (or None), endpoint, needed |
| ``lesson_changed`` | learning (authoring) | lesson, change (``saved``, ``deleted``) |
| ``lesson_completed`` | learning | student user, lesson |
| ``quiz_submitted`` | learning | student user, quiz, attempt (graded or awaiting manual grading) |
| ``quiz_passed`` | learning | student user, quiz, score (points), attempt (its ``percent``) |
| ``quiz_graded`` | learning | student user, quiz, attempt: its last essay was graded by hand, so its score is final |
| ``assignment_submitted`` | learning | student user, submission |
| ``assignment_graded`` | learning | student user, submission, grade |
| ``course_completed`` | learning | student user, course |
| ``certificate_issued`` | learning | student user, certificate |
| ``transaction_committed`` | money ledger, after the commit | transaction_ids (the rows one commit added) |
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

user_registered = _signals.signal("user_registered")
email_verified = _signals.signal("email_verified")
user_logged_in = _signals.signal("user_logged_in")
login_failed = _signals.signal("login_failed")
password_changed = _signals.signal("password_changed")
account_changed = _signals.signal("account_changed")
permission_denied = _signals.signal("permission_denied")

lesson_changed = _signals.signal("lesson_changed")
lesson_completed = _signals.signal("lesson_completed")
quiz_submitted = _signals.signal("quiz_submitted")
quiz_passed = _signals.signal("quiz_passed")
quiz_graded = _signals.signal("quiz_graded")
assignment_submitted = _signals.signal("assignment_submitted")
assignment_graded = _signals.signal("assignment_graded")
course_completed = _signals.signal("course_completed")
certificate_issued = _signals.signal("certificate_issued")

transaction_committed = _signals.signal("transaction_committed")

#: Every event name, for documentation and the test that keeps this list and the table in step.
NAMES = tuple(sorted(_signals))
