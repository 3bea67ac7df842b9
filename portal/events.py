"""Domain events: the one list of names that areas emit and listen to.

Areas never import each other to cause side effects; they emit a named signal and whoever
cares listens (notifications, earnings, analytics, security monitoring). Receivers run inside
the emitter's database transaction, so their writes commit or roll back with it; work that must
wait for the commit (sending e-mail) goes through the job queue.

Emit with keyword arguments only::

    events.user_registered.send(user=user)

Receivers live in their package's ``listeners`` module (``portal/<area>/<package>/listeners.py``,
named in the last column) and are connected in one place, when the app is created
(``portal.app._connect_listeners``), never as a side effect of importing a blueprint. A receiver
takes its arguments keyword-only, ``def _on_x(_sender=None, *, user, course, **_)``, so an event
sent without an argument it needs fails loudly instead of being skipped; ``tests/test_events.py``
keeps the last column and the connected receivers in step.

| event | emitted by | arguments | received by |
|---|---|---|---|
| ``user_registered`` | accounts | user | ``accounts``, ``platform.analytics`` |
| ``email_verified`` | accounts | user | (none) |
| ``user_logged_in`` | accounts | user, ip, user_agent | ``platform.analytics`` |
| ``login_failed`` | accounts | email, ip, reason (``bad_credentials``, ``throttled``, ``inactive``) | ``compliance.security`` |
| ``password_changed`` | accounts | user, via (``change``, ``reset``, ``invite``) | (none) |
| ``account_changed`` | accounts (admin actions) | user, actor, change (``created``, ``role``, ``deactivated``, ``reactivated``) | ``accounts``, ``compliance.security`` |
| ``permission_denied`` | web layer | user (or None), endpoint, needed | ``compliance.security`` |
| ``lesson_changed`` | learning (authoring) | lesson, change (``saved``, ``deleted``) | ``learning.tutoring`` |
| ``enrolled`` | learning | student user, course (a new enrolment, or a return after leaving) | ``platform.analytics`` |
| ``lesson_completed`` | learning | student user, lesson | ``learning.tutoring``, ``money.earnings``, ``platform.analytics`` |
| ``quiz_submitted`` | learning | student user, quiz, attempt (graded or awaiting manual grading) | ``learning.tutoring``, ``platform.analytics`` |
| ``quiz_passed`` | learning | student user, quiz, score (points), attempt (its ``percent``) | ``learning.education``, ``learning.tutoring``, ``money.earnings``, ``platform.analytics`` |
| ``quiz_graded`` | learning | student user, quiz, attempt: its last essay was graded by hand, so its score is final | ``learning.tutoring`` |
| ``assignment_submitted`` | learning | student user, submission | ``learning.tutoring``, ``platform.analytics`` |
| ``assignment_graded`` | learning | student user, submission, grade | ``learning.tutoring`` |
| ``course_completed`` | learning | student user, course | ``learning.lms``, ``money.earnings``, ``platform.analytics`` |
| ``tutor_asked`` | learning (the tutor) | student user, course, question (its ``tutor_questions`` row) | ``platform.analytics`` |
| ``certificate_issued`` | learning | student user, certificate | ``platform.analytics`` |
| ``transaction_committed`` | money ledger, after the commit | transaction_ids (the rows one commit added), moved (per row: type, phase, amount, currency, debit_user_id, credit_user_id) | ``compliance.aml``, ``platform.analytics`` |
| ``case_opened`` | compliance.cases | case (a new ``suspicious_activities`` row), source | ``platform.analytics`` |
| ``entitlement_asked`` | learning (the tutor), money.wallets (transfer limits): asking what a plan allows | user_id, feature; the receiver returns the value (``money.billing.entitlements``) | ``money.billing`` |
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
enrolled = _signals.signal("enrolled")
lesson_completed = _signals.signal("lesson_completed")
quiz_submitted = _signals.signal("quiz_submitted")
quiz_passed = _signals.signal("quiz_passed")
quiz_graded = _signals.signal("quiz_graded")
assignment_submitted = _signals.signal("assignment_submitted")
assignment_graded = _signals.signal("assignment_graded")
course_completed = _signals.signal("course_completed")
certificate_issued = _signals.signal("certificate_issued")
tutor_asked = _signals.signal("tutor_asked")
case_opened = _signals.signal("case_opened")

transaction_committed = _signals.signal("transaction_committed")
#: A question, not a notice: ``send`` returns ``[(receiver, value)]``; with no receiver (billing
#: not wired) the asker applies no limit. Lets learning honour plans without importing money.
entitlement_asked = _signals.signal("entitlement_asked")

#: Every event name, for documentation and the test that keeps this list and the table in step.
NAMES = tuple(sorted(_signals))
