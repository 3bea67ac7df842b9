"""The same ``quiz_passed`` sent at the same moment on two connections pays the reward once.

Both transactions find the milestone (they wait for each other at a barrier right after the
look-up), both insert the earning; the unique (user, milestone) pair lets one through, the
other waits on the index until the first commits and then inserts nothing, so it pays nothing.
The fixtures are committed, and removed afterwards as the database owner, ledger rows included
(with the rewards wallet's balance put back, so the ledger still verifies).
"""

from __future__ import annotations

import threading
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import func, select

from portal import events
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.db.urls import libpq_url
from portal.learning.assessment.models import Quiz
from portal.money.earnings import services
from portal.money.earnings.models import Earning, EarningStatus, MilestoneKind
from portal.money.wallets import ledger
from portal.money.wallets.models import Transaction
from tests.factories import create_user
from tests.learning.factories.assign import graded_attempt
from tests.learning.factories.quiz import make_course, make_quiz
from tests.money.factories import make_milestone
from tests.races import TIMEOUT, race


def _remove_as_owner(app, ids: dict) -> None:
    """Undo the committed rows: each ledger row's effect on its wallets, then the rows."""
    with psycopg.connect(libpq_url(app.config["MIGRATION_DATABASE_URL"])) as conn:
        conn.execute("SELECT set_config('app.user_id', '', true), set_config('app.role', 'system', true), "
                     "set_config('app.actor', 'system:tests', true)")
        users = [ids["student"], ids["teacher"]]
        txs = conn.execute('SELECT id, "debitWalletId", "creditWalletId", amount, phase FROM transactions '
                           'WHERE "debitUserId" = ANY(%s) OR "creditUserId" = ANY(%s)', (users, users)).fetchall()
        for _, debit, credit, amount, phase in txs:
            if phase in ("single", "post"):
                conn.execute("UPDATE wallets SET balance = balance + %s WHERE id = %s", (amount, debit))
                conn.execute("UPDATE wallets SET balance = balance - %s WHERE id = %s", (amount, credit))
        conn.execute('DELETE FROM earnings WHERE "userId" = ANY(%s)', (users,))
        conn.execute("DELETE FROM transactions WHERE id = ANY(%s)", ([row[0] for row in txs],))
        conn.execute('DELETE FROM wallets WHERE "userId" = ANY(%s)', (users,))
        conn.execute("DELETE FROM milestones WHERE id = %s", (ids["milestone"],))
        conn.execute("DELETE FROM courses WHERE id = %s", (ids["course"],))
        conn.execute('DELETE FROM notifications WHERE "userId" = ANY(%s)', (users,))
        conn.execute("DELETE FROM users WHERE id = ANY(%s)", (users,))
        conn.commit()


@pytest.fixture
def committed(app):
    with app.app_context(), acting_as(Actor.system("tests")):
        teacher, student = create_user("faculty"), create_user("student")
        course = make_course(teacher)
        # Not enrolled: the learning area's own receiver of quiz_passed then locks no enrolment,
        # so the only thing the two transactions meet on is the earnings' unique index.
        quiz = make_quiz(course, title="Race quiz")
        graded_attempt(quiz, student, 90)
        milestone = make_milestone(MilestoneKind.QUIZ_PASSED, quiz_id=quiz.id, course_id=course.id,
                                   min_score=Decimal(80), reward="7")
        ids = {"student": student.id, "teacher": teacher.id, "course": course.id, "quiz": quiz.id,
               "milestone": milestone.id}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        _remove_as_owner(app, ids)


@pytest.fixture
def only_the_earnings_receiver():
    """The tutor's receiver of quiz_passed serialises a student's insights per course (a lock the
    second transaction would wait on before reaching the barrier): this race is about the
    earnings' unique index alone, so that receiver sits it out."""
    from portal import events
    from portal.learning.tutoring import listeners

    events.quiz_passed.disconnect(listeners._on_quiz_passed)
    try:
        yield
    finally:
        events.quiz_passed.connect(listeners._on_quiz_passed)


@pytest.mark.no_db_rollback
def test_the_same_quiz_passed_on_two_connections_pays_once(app, committed, monkeypatch, only_the_earnings_receiver):
    barrier = threading.Barrier(2)
    real_matching = services._matching

    def matching_after_both_looked(*args, **kwargs):
        found = real_matching(*args, **kwargs)
        barrier.wait(timeout=TIMEOUT)
        return found

    monkeypatch.setattr(services, "_matching", matching_after_both_looked)
    inserted: list[int] = []
    real_earn = services._earn

    def counted_earn(user, milestones, source, refs):
        rows = real_earn(user, milestones, source, refs)
        inserted.append(len(rows))
        return rows

    monkeypatch.setattr(services, "_earn", counted_earn)

    def pass_quiz(student):
        quiz = db.session.get(Quiz, committed["quiz"])
        events.quiz_passed.send(user=student, quiz=quiz, score=Decimal(9))

    race(app, [(committed["student"], "student", pass_quiz)] * 2, barrier=barrier)
    assert sorted(inserted) == [0, 1]  # both tried; one row went in

    with app.app_context(), acting_as(Actor.system("tests")):
        earnings = list(db.session.scalars(select(Earning).where(Earning.user_id == committed["student"])))
        rewards = db.session.scalar(select(func.count()).select_from(Transaction)
                                    .where(Transaction.credit_user_id == committed["student"]))
        wallet = ledger.user_wallet(committed["student"], "AZR")
        report = ledger.verify()
        db.session.remove()
    assert len(earnings) == 1 and earnings[0].status == EarningStatus.CREDITED
    assert rewards == 1
    assert wallet.balance == Decimal(7)
    assert report.ok, report.problems
