"""Two officers deciding the same verification at the same moment, each on its own connection:
the row lock makes the second wait, then see the first decision and be refused."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete

from portal.accounts.models import User
from portal.compliance.kyc import services
from portal.compliance.kyc.models import KycStatus, KycVerification
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict
from tests.factories import create_user
from tests.races import TIMEOUT, race


@pytest.fixture
def committed(app):
    with app.app_context(), app.test_request_context(), acting_as(Actor.system("tests")):
        student = create_user("student")
        officers = [create_user("compliance"), create_user("compliance")]
        verification = services.submit_level1(student, legal_name="Race Condition", birth_date="1990-01-01",
                                              country="ZA", address="1 Parallel Street, Cape Town 8001")
        ids = {"verification": verification.id, "student": student.id, "officers": [o.id for o in officers]}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        with app.app_context(), acting_as(Actor.system("tests")):
            db.session.execute(delete(User).where(User.id.in_([ids["student"], *ids["officers"]])))
            db.session.commit()
            db.session.remove()


@pytest.mark.no_db_rollback
def test_an_approval_and_a_rejection_at_once_decide_once(app, committed, monkeypatch):
    barrier = threading.Barrier(2)
    real_locked = services._locked

    def locked_together(verification_id):
        barrier.wait(timeout=TIMEOUT)  # both have checked nothing yet and ask for the lock now
        return real_locked(verification_id)

    monkeypatch.setattr(services, "_locked", locked_together)
    first, second = committed["officers"]
    verification = committed["verification"]
    approve, reject = race(app, [(first, "compliance", lambda officer: services.approve(officer, verification)),
                                 (second, "compliance",
                                  lambda officer: services.reject(officer, verification, "Document unreadable."))],
                           expected=(Conflict,), barrier=barrier, request_context=True)
    outcomes = {name: "decided" if outcome.ok else outcome.refused.message
                for name, outcome in (("approve", approve), ("reject", reject))}
    assert sorted(str(v)[:7] for v in outcomes.values()) == ["This ve", "decided"], outcomes
    loser = next(v for v in outcomes.values() if v != "decided")
    assert "was already" in loser and "nothing was changed" in loser
    with app.app_context(), acting_as(Actor.system("tests")):
        row = db.session.get(KycVerification, committed["verification"])
        winner = next(k for k, v in outcomes.items() if v == "decided")
        assert row.status == (KycStatus.APPROVED if winner == "approve" else KycStatus.REJECTED)
        db.session.remove()
