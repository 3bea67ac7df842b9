"""Two officers deciding the same check at the same moment, each on its own connection: the row
lock lets one decide; the other is told the check is no longer waiting."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import delete

from portal.accounts.models import User
from portal.compliance.aml import screening
from portal.compliance.aml.models import AmlCheck, AmlStatus, AmlTrigger
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict
from tests.factories import create_user
from tests.races import TIMEOUT, race


@pytest.fixture
def committed_check(app):
    with app.app_context(), acting_as(Actor.system("tests")):
        student, first, second = create_user("student"), create_user("compliance"), create_user("compliance")
        check = AmlCheck(user_id=student.id, trigger=AmlTrigger.ON_DEMAND, screened_name="Someone",
                         threshold=Decimal(85), top_score=Decimal(90), status=AmlStatus.PENDING_REVIEW,
                         hits=[{"entryId": "x", "name": "Someone Else", "score": 90.0, "kind": "pep"}])
        db.session.add(check)
        db.session.commit()
        ids = {"check": check.id, "officers": [first.id, second.id], "users": [student.id, first.id, second.id]}
        db.session.remove()
    try:
        yield ids
    finally:
        with app.app_context(), acting_as(Actor.system("tests")):
            db.session.execute(delete(AmlCheck).where(AmlCheck.id == ids["check"]))
            db.session.execute(delete(User).where(User.id.in_(ids["users"])))
            db.session.commit()
            db.session.remove()


@pytest.mark.no_db_rollback
def test_two_officers_deciding_at_once_one_wins(app, committed_check, monkeypatch):
    """Both pass the officer check together (a barrier), then both lock the row: the second waits
    for the first to commit, reads the decided row and is refused."""
    barrier = threading.Barrier(2)
    real_check = screening._check_officer

    def check_then_wait(officer):
        real_check(officer)
        barrier.wait(timeout=TIMEOUT)

    monkeypatch.setattr(screening, "_check_officer", check_then_wait)

    def decide(index: int):
        return lambda officer: screening.review_check(officer, committed_check["check"], "false_positive",
                                                      f"Decided by officer number {index}.")

    results = race(app, [(officer_id, "compliance", decide(index))
                         for index, officer_id in enumerate(committed_check["officers"])],
                   expected=(Conflict,), barrier=barrier)
    outcomes = {index: "decided" if outcome.ok else "refused" for index, outcome in enumerate(results)}
    assert sorted(outcomes.values()) == ["decided", "refused"]
    winner = next(i for i, outcome in outcomes.items() if outcome == "decided")
    with app.app_context(), acting_as(Actor.system("tests")):
        check = db.session.get(AmlCheck, committed_check["check"])
        assert check.status == AmlStatus.FALSE_POSITIVE
        assert check.review_reason == f"Decided by officer number {winner}."
        assert check.reviewed_by_id == committed_check["officers"][winner]
        db.session.remove()
