"""Card activity in transaction monitoring: many declines, a high-risk category, a purchase abroad
soon after a change to the identity verification; each raises one alert and opens a case."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal.compliance.aml import monitoring
from portal.compliance.aml.models import MonitoringAlert
from portal.compliance.kyc.models import KycVerification
from portal.db import db
from portal.money.cards import codes, network
from tests.money.cards.helpers import auth_body, card_holder, issued, message


def _authorize(revealed, **kwargs):
    return network.authorize(message("authorize", auth_body(revealed, **kwargs)))


def _rules(alert: MonitoringAlert) -> set[str]:
    return {rule["rule"] for rule in alert.rules}


def _age_kyc(user, days: int) -> None:
    for row in db.session.scalars(select(KycVerification).where(KycVerification.user_id == user.id)):
        row.submitted_at -= timedelta(days=days)
        row.decided_at -= timedelta(days=days)
    db.session.flush()


def test_many_declines_in_a_short_time_raise_an_alert_and_a_case(app):
    user = card_holder("1")
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    answers = [_authorize(revealed, amount="5", country="ZA") for _ in range(5)]
    assert {a.code for a in answers} == {codes.INSUFFICIENT_FUNDS}
    alerts = monitoring.monitor_card([a.reference for a in answers])
    assert len(alerts) == 1 and _rules(alerts[0]) == {"card_declines"}  # the fifth decline
    assert alerts[0].card_transaction_id == answers[-1].reference and alerts[0].case_id is not None
    assert monitoring.monitor_card([a.reference for a in answers]) == []  # once


def test_four_declines_are_not_many(app):
    user = card_holder("1")
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    answers = [_authorize(revealed, amount="5", country="ZA") for _ in range(4)]
    assert monitoring.monitor_card([a.reference for a in answers]) == []


def test_a_high_risk_category_raises_an_alert(app):
    user = card_holder()
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    betting = _authorize(revealed, amount="20", mcc="7995", country="ZA")
    cafe = _authorize(revealed, amount="2", mcc="5812", country="ZA")
    assert betting.approved and cafe.approved
    alerts = monitoring.monitor_card([betting.reference, cafe.reference])
    assert [(_rules(a), a.card_transaction_id) for a in alerts] == [({"card_high_risk_mcc"}, betting.reference)]


def test_a_purchase_abroad_right_after_a_kyc_change(app):
    user = card_holder()  # verified in ZA, decided days ago (the factory's times)
    _card, revealed = issued(user)
    _age_kyc(user, -7)  # the verification changed just now
    home = _authorize(revealed, amount="1", country="ZA")
    abroad = _authorize(revealed, amount="1", country="BR")
    alerts = monitoring.monitor_card([home.reference, abroad.reference])
    assert [(_rules(a), a.card_transaction_id) for a in alerts] == [({"card_abroad_after_kyc"}, abroad.reference)]


def test_abroad_long_after_the_change_is_quiet(app):
    user = card_holder()
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    abroad = _authorize(revealed, amount="1", country="BR")
    assert monitoring.monitor_card([abroad.reference]) == []


def test_a_switched_off_rule_does_not_fire(app, make_user):
    user = card_holder()
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    monitoring.save_rule(make_user("admin"), "card_high_risk_mcc", enabled=False, raw={"score": "25"})
    betting = _authorize(revealed, amount="20", mcc="7995", country="ZA")
    assert monitoring.monitor_card([betting.reference]) == []


def test_a_card_hold_defers_no_monitoring_job_and_is_judged_by_the_sweep(app, monkeypatch):
    """Nothing of the monitoring runs on an authorization's path: no job is deferred after its
    commit, not even the ledger's for the pending hold (a hold moves nothing the ledger's rules
    judge). The card sweep judges the authorization itself."""
    from portal.compliance.aml import listeners
    from portal.money.cards import tasks
    from portal.money.cards.models import CardTransaction
    from portal.platform import jobs

    deferred = []
    monkeypatch.setattr(jobs, "defer_now", lambda job, **kwargs: deferred.append((job, kwargs)))
    user = card_holder()
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    db.session.commit()  # the set-up's funding defers its own (ledger) monitoring
    assert deferred, "the spy sees the ledger's deferrals"
    deferred.clear()
    answer = _authorize(revealed, amount="1", mcc="7995", country="ZA")
    db.session.commit()
    assert answer.approved
    assert deferred == []
    listeners.defer_monitoring([answer.reference])  # the spy would have caught a deferral
    assert len(deferred) == 1
    jobs.job_app.perform_import_paths()
    assert not [name for name in jobs.job_app.tasks if "monitor_card" in name and "activity" not in name]

    made = db.session.get(CardTransaction, answer.reference).created_at
    _cursor_at(made - timedelta(seconds=1))
    assert tasks.monitor_backlog(made + timedelta(seconds=tasks.MONITOR_DELAY_SECONDS, minutes=1)) >= 1
    alerts = db.session.scalars(select(MonitoringAlert).where(MonitoringAlert.card_transaction_id
                                                              == answer.reference)).all()
    assert [_rules(a) for a in alerts] == [{"card_high_risk_mcc"}]


def _cursor_at(at) -> None:
    from portal.compliance.aml.models import MonitoringCursor
    from portal.money.cards import tasks

    cursor = db.session.scalar(select(MonitoringCursor).where(MonitoringCursor.name == tasks.CURSOR))
    if cursor is None:
        db.session.add(MonitoringCursor(name=tasks.CURSOR, checked_until=at))
    else:
        cursor.checked_until = at
    db.session.flush()


def _watermark():
    from portal.compliance.aml.models import MonitoringCursor
    from portal.money.cards import tasks

    return db.session.scalar(select(MonitoringCursor.checked_until).where(MonitoringCursor.name == tasks.CURSOR))


def _spy(monkeypatch) -> list:
    """Every authorization id the card rules are run on, in order (the rules still run)."""
    judged = []
    real = monitoring.monitor_card

    def spy(ids):
        judged.extend(ids)
        return real(ids)

    monkeypatch.setattr(monitoring, "monitor_card", spy)
    return judged


def test_the_sweep_judges_the_authorizations_once_and_stays_behind_the_settle_delay(app, monkeypatch):
    from portal.money.cards import tasks
    from portal.money.cards.models import CardTransaction

    user = card_holder()
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    betting = _authorize(revealed, amount="20", mcc="7995", country="ZA")
    declines = [_authorize(revealed, amount="500", country="ZA") for _ in range(5)]
    made = db.session.get(CardTransaction, betting.reference).created_at
    _cursor_at(made - timedelta(seconds=1))
    judged = _spy(monkeypatch)
    delay = timedelta(seconds=tasks.MONITOR_DELAY_SECONDS)
    assert tasks.monitor_backlog(made + delay) == 0  # not settled yet: nothing of this card's
    assert judged == [] and _watermark() == made
    assert tasks.monitor_backlog(made + delay + timedelta(minutes=1)) == 2  # the category, the fifth decline
    alerts = db.session.scalars(select(MonitoringAlert).where(MonitoringAlert.user_id == user.id)).all()
    assert sorted((a.card_transaction_id, frozenset(_rules(a))) for a in alerts) == sorted(
        [(betting.reference, frozenset({"card_high_risk_mcc"})), (declines[-1].reference, frozenset({"card_declines"}))])
    mine = {betting.reference, *(d.reference for d in declines)}
    assert sorted(i for i in judged if i in mine) == sorted(mine)  # each once
    assert _watermark() == made + timedelta(minutes=1)
    assert tasks.monitor_backlog(made + delay + timedelta(minutes=2)) == 0  # never again
    assert sorted(i for i in judged if i in mine) == sorted(mine)


def test_a_two_hour_outage_is_caught_up_over_a_few_runs(app, monkeypatch):
    from portal.db.base import utcnow
    from portal.money.cards import tasks
    from portal.money.cards.models import CardTransaction

    user = card_holder()
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    answers = [_authorize(revealed, amount="1", mcc="7995", country="ZA") for _ in range(12)]
    now = utcnow()
    down_since = now - timedelta(hours=2)
    # The worker was down for two hours; an authorization every ten minutes in them.
    for minutes, answer in zip(range(5, 120, 10), answers, strict=True):
        db.session.get(CardTransaction, answer.reference).created_at = down_since + timedelta(minutes=minutes)
    db.session.flush()
    _cursor_at(down_since)
    monkeypatch.setattr(tasks, "MONITOR_BATCH", 3)
    monkeypatch.setattr(tasks, "MONITOR_BATCHES", 2)
    judged = _spy(monkeypatch)
    runs = 0
    while _watermark() < now - timedelta(seconds=tasks.MONITOR_DELAY_SECONDS) and runs < 100:
        assert tasks.monitor_backlog(now) is not None
        runs += 1
    mine = [a.reference for a in answers]
    assert runs >= 2  # bounded runs: the backlog is not taken in one
    assert [i for i in judged if i in set(mine)] == mine  # every one, once, oldest first
    alerts = db.session.scalars(select(MonitoringAlert).where(MonitoringAlert.user_id == user.id)).all()
    assert sorted(a.card_transaction_id for a in alerts) == sorted(mine)
    assert _watermark() == now - timedelta(seconds=tasks.MONITOR_DELAY_SECONDS)


def test_the_sweep_runs_every_period_behind_the_present():
    from portal.money.cards import tasks
    from portal.platform.jobs import job_app

    job_app.perform_import_paths()
    task = job_app.tasks["portal.money.cards.tasks.monitor_card_activity"]
    (periodic,) = [p for p in job_app.periodic_registry.periodic_tasks.values() if p.task is task]
    assert periodic.cron == f"* * * * * */{tasks.MONITOR_PERIOD_SECONDS}" and task.queue == "monitoring"
    assert tasks.MONITOR_DELAY_SECONDS >= 30
