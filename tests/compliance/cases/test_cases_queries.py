"""The reads behind the officers' dashboard and queues: each figure in its bucket, and the
counts that stop at the cap. Figures are compared before and after the test's own rows, as
other tests commit cases and verifications too."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.compliance.aml.models import MonitoringAlert
from portal.compliance.cases import queries
from portal.compliance.cases.models import CaseSeverity, CaseStatus, Disposition, SuspiciousActivity
from portal.compliance.kyc import personal_data
from portal.compliance.kyc.models import KycStatus, KycVerification
from portal.db import db
from portal.db.base import utcnow
from tests.compliance.factories import structured_case
from tests.factories import create_user


@pytest.fixture(autouse=True)
def _thresholds(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONITORING_LARGE_AMOUNTS", {"USD": "10000", "AZR": "100000"})


def _case(now, days_ago: float, *, severity=CaseSeverity.HIGH, closed: bool = False) -> SuspiciousActivity:
    detected = now - timedelta(days=days_ago)
    case = SuspiciousActivity(user_id=create_user("student").id, title="Bucket case", severity=severity,
                              detected_at=detected, due_at=detected + timedelta(days=30),
                              status=CaseStatus.CLOSED if closed else CaseStatus.OPEN,
                              disposition=Disposition.FALSE_POSITIVE if closed else None,
                              closed_at=now if closed else None)
    db.session.add(case)
    return case


def _waiting(now, days_ago: float, status=KycStatus.SUBMITTED) -> None:
    student, first = create_user("student"), create_user("compliance")
    verification_id = uuid.uuid4()
    db.session.add(KycVerification(
        id=verification_id, user_id=student.id, level=1, status=status,
        data_encrypted=personal_data.seal(verification_id, student.id, {}), country="ZA",
        submitted_at=now - timedelta(days=days_ago),
        first_approver_id=first.id if status == KycStatus.AWAITING_SECOND else None))


def _minus(after: dict, before: dict) -> dict:
    return {key: [a - b for a, b in zip(after[key], before[key], strict=True)] for key in after}


def test_the_dashboard_puts_each_open_case_and_waiting_verification_in_its_age_bucket():
    now = utcnow()
    officer = create_user("compliance")
    before = queries.dashboard(officer, now)
    # Age buckets (days): under 7, 7-14, 14-30, over 30 (overdue: due 30 days after detection).
    for days in (0.5, 6.9, 7.1, 13.9, 14.1, 29.9, 30.1, 45):
        _case(now, days)
    _case(now, 3, severity=CaseSeverity.LOW)
    _case(now, 3, closed=True)
    # KYC buckets (days): today, 1-3, 3-7, over 7.
    for days in (0.2, 1.5, 2.9, 3.1, 6.5, 9):
        _waiting(now, days)
    _waiting(now, 8, KycStatus.AWAITING_SECOND)
    db.session.flush()
    after = queries.dashboard(officer, now)
    opened = _minus(after.open_by_age, before.open_by_age)
    assert opened[CaseSeverity.HIGH] == [2, 2, 2, 2] and opened[CaseSeverity.LOW] == [1, 0, 0, 0]
    assert opened[CaseSeverity.CRITICAL] == opened[CaseSeverity.MEDIUM] == [0, 0, 0, 0]
    assert after.open_total - before.open_total == 9 and after.overdue - before.overdue == 2
    waiting = _minus(after.kyc_backlog, before.kyc_backlog)
    assert waiting == {KycStatus.SUBMITTED: [1, 2, 2, 1], KycStatus.AWAITING_SECOND: [0, 0, 0, 1]}
    assert after.queue_counts["unassigned"] - before.queue_counts["unassigned"] == 9


def test_the_dashboard_counts_todays_alerts():
    now = utcnow()
    officer = create_user("compliance")
    before = queries.dashboard(officer, now)
    case = structured_case()
    made = len(db.session.scalars(select(MonitoringAlert.id).where(MonitoringAlert.case_id == case.id)).all())
    after = queries.dashboard(officer, now)
    assert [day for day, _ in after.alerts_per_day][-1] == now.date() and len(after.alerts_per_day) == 14
    assert after.alerts_per_day[-1][1] - before.alerts_per_day[-1][1] >= made >= 1
    assert after.queue_counts["unassigned"] - before.queue_counts["unassigned"] == 1


def test_queue_counts_stop_at_the_cap(count_cap):
    officer = create_user("compliance")
    now = utcnow()
    for days in range(5):
        _case(now, days)
    db.session.flush()
    count_cap(3)
    assert queries.queue_counts(officer) == {"unassigned": 4, "mine": 0}  # 4: "3+", more than the cap
    supervisor = create_user("admin")
    page = queries.queue(supervisor, "all")
    assert page.counts["all"] == page.counts["unassigned"] == 4
    assert queries.dashboard(supervisor, now).queue_counts["all"] == 4


def test_the_case_counts_its_alerts_up_to_the_cap_and_shows_the_latest(count_cap):
    from portal.accounts.models import User
    from portal.compliance.aml import monitoring
    from tests.compliance.factories import old_student
    from tests.compliance.helpers import transfer

    case = structured_case()
    subject, other = db.session.get(User, case.user_id), old_student()
    monitoring.monitor([transfer(subject, other, "100").id for _ in range(6)])
    made = len(db.session.scalars(select(MonitoringAlert.id).where(MonitoringAlert.case_id == case.id)).all())
    assert made >= 5
    officer = create_user("compliance")
    view = queries.case_view(officer, case.id)
    assert view.alert_total == made == len(view.alerts)
    assert [a.transaction.created_at for a in view.alerts] == sorted((a.transaction.created_at for a in view.alerts),
                                                                   reverse=True)
    assert all(a.counterparty.startswith(("to ", "from ")) for a in view.alerts)
    count_cap(3)
    assert queries.case_view(officer, case.id).alert_total == 4  # shown as "3+"


def _walk(officer, queue: str, size: int) -> list:
    ids, cursor = [], None
    for _ in range(1000):
        page = queries.queue(officer, queue, cursor, size=size)
        ids += [row.case.id for row in page.rows]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor
    raise AssertionError("the queue never ended")


def test_the_all_queue_pages_open_cases_by_due_date_then_closed_ones():
    now = utcnow()
    supervisor = create_user("admin")
    opened = [_case(now, days) for days in (20, 35, 5, 12)]
    closed = [_case(now, days, closed=True) for days in (50, 3, 90)]
    db.session.flush()
    mine = {case.id for case in opened + closed}
    expected = ([c.id for c in sorted(opened, key=lambda c: c.due_at)]
                + [c.id for c in sorted(closed, key=lambda c: c.due_at)])
    for size in (2, 3, 25):
        assert [i for i in _walk(supervisor, "all", size) if i in mine] == expected, size
    unassigned = [i for i in _walk(supervisor, "unassigned", 2) if i in mine]
    assert unassigned == expected[:len(opened)]
    first = queries.queue(supervisor, "all")
    assert first.counts and all(row.alert_count == 0 for row in first.rows if row.case.id in mine)
    assert [row.case.title for row in first.rows if row.case.id in mine][:1] == ["Bucket case"]
