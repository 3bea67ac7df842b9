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


def test_an_authorization_defers_no_card_monitoring_on_its_path(app, monkeypatch):
    from portal.compliance.aml import tasks
    from portal.platform import jobs

    deferred = []
    monkeypatch.setattr(jobs, "defer_now", lambda job, **kwargs: deferred.append((job, kwargs)))
    user = card_holder()
    _card, revealed = issued(user)
    answer = _authorize(revealed, amount="1", mcc="7995")
    db.session.commit()
    assert answer.approved
    assert [job for job, _ in deferred if job is tasks.monitor_card_transactions] == []


def test_the_sweep_judges_the_authorizations_of_its_slice_once(app):
    from portal.money.cards import tasks
    from portal.money.cards.models import CardTransaction

    user = card_holder()
    _card, revealed = issued(user)
    _age_kyc(user, 30)
    betting = _authorize(revealed, amount="20", mcc="7995", country="ZA")
    declines = [_authorize(revealed, amount="500", country="ZA") for _ in range(5)]
    made = db.session.get(CardTransaction, betting.reference).created_at
    slice_ = timedelta(seconds=tasks.MONITOR_SLICE_SECONDS)
    assert tasks.monitor_slice(made) == 0  # the slice before: nothing of this card's
    assert tasks.monitor_slice(made + slice_) == 2  # the category, and the fifth decline
    alerts = db.session.scalars(select(MonitoringAlert).where(MonitoringAlert.user_id == user.id)).all()
    assert sorted((a.card_transaction_id, frozenset(_rules(a))) for a in alerts) == sorted(
        [(betting.reference, frozenset({"card_high_risk_mcc"})), (declines[-1].reference, frozenset({"card_declines"}))])
    assert tasks.monitor_slice(made + slice_) == 0  # judged once


def test_the_sweep_runs_every_slice_behind_the_present():
    from portal.money.cards import tasks
    from portal.platform.jobs import job_app

    job_app.perform_import_paths()
    task = job_app.tasks["portal.money.cards.tasks.monitor_card_activity"]
    (periodic,) = [p for p in job_app.periodic_registry.periodic_tasks.values() if p.task is task]
    assert periodic.cron == f"* * * * * */{tasks.MONITOR_SLICE_SECONDS}" and task.queue == "monitoring"
    assert tasks.MONITOR_DELAY_SECONDS >= 30
