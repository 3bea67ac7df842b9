"""AML screening services: candidates and explained hits, the threshold, the officers' review
(transitions, reasons, the case a confirmation opens), and row-level security."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from portal.compliance.aml import screening, watchlist
from portal.compliance.aml.models import AmlCheck, AmlStatus, AmlTrigger, WatchlistEntry
from portal.compliance.cases.models import CaseEvent, CaseSeverity, SuspiciousActivity
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from tests.compliance.factories import verify
from tests.factories import create_user


@pytest.fixture
def sample():
    return watchlist.load_sample(None)


@pytest.fixture
def student():
    return create_user("student", full_name="Thabo Mokoena")


def test_a_namesake_spelled_differently_is_a_hit_explained(sample, student):
    check = screening.screen_user(student.id, "Sergey Zlatogorov", date(1958, 11, 2), "ru",
                                  verification_id=None)
    assert check.status == AmlStatus.PENDING_REVIEW
    assert check.trigger == AmlTrigger.KYC_SUBMISSION
    assert check.screened_country == "RU"
    assert check.threshold == Decimal("85.00")
    hit = check.hits[0]
    assert hit["name"] == "Sergei Petrovich Zlatogorov"
    assert hit["matchedName"] == "Sergey Zlatogorov" and hit["matchedAlias"] is True
    assert hit["nameScore"] == 100.0
    assert hit["nameParts"] == [{"screened": "sergey", "listed": "sergey", "score": 100.0, "how": "same"},
                                {"screened": "zlatogorov", "listed": "zlatogorov", "score": 100.0, "how": "same"}]
    assert hit["agreeing"] == ["birth_date", "country"] and hit["disagreeing"] == []
    assert hit["score"] == 100.0 and hit["adjustment"] == 8.0
    assert hit["listSource"] == "Sample sanctions list" and hit["kind"] == "sanction"
    assert hit["listBirthDate"] == "1958-11-02" and hit["listCountry"] == "RU"
    assert check.top_score == Decimal("100.00")
    stored = db.session.execute(select(AmlCheck).where(AmlCheck.id == check.id)
                                .execution_options(populate_existing=True)).scalar_one()
    assert stored.hits == check.hits


def test_transliterated_and_reordered_names_hit(sample, student):
    cyrillic = screening.screen_user(student.id, "Златогоров Сергей", None, None)
    assert cyrillic.hits and cyrillic.hits[0]["name"] == "Sergei Petrovich Zlatogorov"
    arabic = screening.screen_user(student.id, "Muhammad ibn Rashidun al-Qatrani", None, None)
    assert arabic.hits[0]["name"] == "Mohammed bin Rashidun Al-Qatrani"
    chinese = screening.screen_user(student.id, "张伟强", None, None)
    assert chinese.hits[0]["name"] == "Zhang Weiqiang"


def test_a_name_in_arabic_script_finds_its_latin_spelling(sample, student):
    """The list has this person only in Latin script; Arabic writes no short vowels."""
    check = screening.screen_user(student.id, "عمر فاروق زبيداني", None, None)
    assert check.hits and check.hits[0]["name"] == "Omar Farouk Zubaydani"
    assert {part["how"] for part in check.hits[0]["nameParts"]} == {"same consonants (Arabic script)"}


def test_each_hit_is_explained_part_by_part(sample, student):
    check = screening.screen_user(student.id, "Mohamed bin Rashidun Al-Qatrani", None, None)
    parts = {part["screened"]: part for part in check.hits[0]["nameParts"]}
    assert parts["mohamed"]["listed"] == "mohammed" and parts["mohamed"]["how"] == "spelling variant"
    assert parts["qatrani"] == {"screened": "qatrani", "listed": "qatrani", "score": 100.0, "how": "same"}


def test_a_different_person_is_clear(sample, student):
    check = screening.screen_user(student.id, "Thabo Mokoena", date(2001, 5, 5), "ZA")
    assert check.status == AmlStatus.CLEAR
    assert check.hits == [] and check.top_score == 0


def test_a_disagreeing_birth_date_and_country_lower_the_score(sample, student):
    agreeing = screening.screen_user(student.id, "Bogdan Przemylski", date(1975, 4, 18), "PL")
    differing = screening.screen_user(student.id, "Bogdan Przemylski", date(1999, 1, 1), "ZA", threshold=50)
    unknown = screening.screen_user(student.id, "Bogdan Przemylski", None, None)
    assert agreeing.hits[0]["score"] == 100.0
    assert unknown.hits[0]["score"] == 100.0 and unknown.hits[0]["agreeing"] == []
    assert differing.hits[0]["score"] == 80.0  # 100 - 15 (birth date) - 5 (country)
    assert differing.hits[0]["disagreeing"] == ["birth_date", "country"]
    # At the configured threshold the namesake born 24 years later is not a hit.
    assert screening.screen_user(student.id, "Bogdan Przemylski", date(1999, 1, 1), "ZA").status == AmlStatus.CLEAR


def test_the_threshold_changes_the_outcome(sample, student):
    # One letter different in the surname: a weaker match.
    name = "Viktor Bramblov"
    low = screening.screen_user(student.id, name, None, None, threshold=70)
    high = screening.screen_user(student.id, name, None, None, threshold=95)
    assert low.status == AmlStatus.PENDING_REVIEW and low.hits[0]["name"] == "Viktor Aleksandrovich Brambolov"
    assert 70 <= low.top_score < 95
    assert high.status == AmlStatus.CLEAR and high.hits == []
    assert (low.threshold, high.threshold) == (Decimal(70), Decimal(95))


def test_the_configured_threshold_is_the_default(app, sample, student, monkeypatch):
    monkeypatch.setitem(app.config, "AML_MATCH_THRESHOLD", 99)
    check = screening.screen_user(student.id, "Viktor Bramblov", None, None)
    assert check.threshold == Decimal(99) and check.status == AmlStatus.CLEAR


@pytest.mark.parametrize("value", ["49", "100.5", "abc", "NaN", "Infinity", "-1"])
def test_thresholds_outside_50_to_100_are_refused(sample, student, value):
    with pytest.raises(DomainError) as caught:
        screening.screen_user(student.id, "Anyone", None, None, threshold=value)
    assert caught.value.field == "threshold"


@pytest.mark.parametrize("name", ["", "   ", "--- ...", "x" * 301, "Nul\x00Name"])
def test_a_name_is_required(sample, student, name):
    with pytest.raises(DomainError) as caught:
        screening.screen_user(student.id, name, None, None)
    assert caught.value.field == "name"


def test_an_empty_watchlist_screens_clear(student):
    db.session.execute(WatchlistEntry.__table__.delete())
    assert screening.screen_user(student.id, "Sergey Zlatogorov", None, None).status == AmlStatus.CLEAR


def test_hits_are_capped_and_sorted(student):
    rows = "\n".join(f"Ivan Grozdanovski,,19{50 + i}-01-01,MK,List {i},sanction" for i in range(30))
    watchlist.import_csv(None, ("name,aliases,birth_date,country,list_source,kind\n" + rows).encode())
    check = screening.screen_user(student.id, "Ivan Grozdanovski", date(1960, 1, 1), "MK")
    assert len(check.hits) == screening.MAX_HITS
    assert check.hits[0]["listBirthDate"] == "1960-01-01" and check.hits[0]["score"] == 100.0
    assert [h["score"] for h in check.hits] == sorted((h["score"] for h in check.hits), reverse=True)


def test_candidates_share_a_key_with_the_name(sample):
    """The candidate pass keeps entries sharing a token prefix or folded key, not the whole list."""
    keys = screening.matching.blocking_keys(screening.matching.normalize_name("Sergey Zlatogorov"))
    found = {c.name for c in screening._load_candidates(keys)}
    assert "Sergei Petrovich Zlatogorov" in found
    assert len(found) < sample.imported / 4


# ---------------------------------------------------------------------------------- review


@pytest.fixture
def officer():
    return create_user("compliance", full_name="Olivia Officer")


@pytest.fixture
def pending(sample, student):
    return screening.screen_user(student.id, "Sergey Zlatogorov", date(1958, 11, 2), "RU")


def test_an_officer_confirms_and_a_case_opens(officer, pending, student):
    check = screening.review_check(officer, pending.id, "confirmed", "Same birth date, country and name.")
    assert check.status == AmlStatus.CONFIRMED
    assert check.reviewed_by_id == officer.id and check.reviewed_at is not None
    assert check.review_reason == "Same birth date, country and name."
    case = db.session.scalar(select(SuspiciousActivity).where(SuspiciousActivity.user_id == student.id))
    assert case is not None and case.severity == CaseSeverity.CRITICAL and case.risk_score == 100
    assert "Sergei Petrovich Zlatogorov" in case.title
    event = db.session.scalar(select(CaseEvent).where(CaseEvent.case_id == case.id))
    assert event.data["source"] == "aml_screening" and event.data["amlCheckId"] == str(check.id)
    assert event.actor_id == officer.id


def test_a_second_confirmation_joins_the_open_case(officer, sample, student):
    first = screening.screen_user(student.id, "Sergey Zlatogorov", None, None)
    second = screening.screen_user(student.id, "Layla Nasrallahni", None, None)
    screening.review_check(officer, first.id, "confirmed", "The officer compared the documents.")
    screening.review_check(officer, second.id, "confirmed", "The officer compared the documents.")
    cases = db.session.scalars(select(SuspiciousActivity).where(SuspiciousActivity.user_id == student.id)).all()
    assert len(cases) == 1
    assert db.session.scalar(select(func.count()).select_from(CaseEvent)
                             .where(CaseEvent.case_id == cases[0].id)) == 2


def test_a_confirmed_pep_is_a_high_case(officer, sample, student):
    check = screening.screen_user(student.id, "Layla Nasrallahni", None, None)
    screening.review_check(officer, check.id, "confirmed", "Same person as on the PEP list.")
    case = db.session.scalar(select(SuspiciousActivity).where(SuspiciousActivity.user_id == student.id))
    assert case.severity == CaseSeverity.HIGH


def test_a_false_positive_opens_no_case_and_sends_nothing(officer, pending, student):
    from portal.platform.notifications.models import Notification

    before = db.session.scalar(select(func.count()).select_from(Notification).where(Notification.user_id == student.id))
    check = screening.review_check(officer, pending.id, "false_positive", "The listed man is 40 years older.")
    assert check.status == AmlStatus.FALSE_POSITIVE
    assert db.session.scalar(select(SuspiciousActivity).where(SuspiciousActivity.user_id == student.id)) is None
    after = db.session.scalar(select(func.count()).select_from(Notification).where(Notification.user_id == student.id))
    assert after == before


@pytest.mark.parametrize(("decision", "reason", "field"), [
    ("", "A good long reason", "decision"),
    ("clear", "A good long reason", "decision"),
    ("pending_review", "A good long reason", "decision"),
    ("confirmed", "", "reason"),
    ("confirmed", "   too short ", "reason"),
    ("false_positive", "x" * 1001, "reason"),
])
def test_a_decision_needs_a_valid_choice_and_reason(officer, pending, decision, reason, field):
    with pytest.raises(DomainError) as caught:
        screening.review_check(officer, pending.id, decision, reason)
    assert caught.value.field == field
    assert db.session.get(AmlCheck, pending.id).status == AmlStatus.PENDING_REVIEW


def test_only_a_pending_check_can_be_decided(officer, pending, sample, student):
    screening.review_check(officer, pending.id, "false_positive", "A namesake, different birth date.")
    with pytest.raises(Conflict, match="false positive"):
        screening.review_check(officer, pending.id, "confirmed", "Changed my mind about it.")
    clear = screening.screen_user(student.id, "Nobody Onthelist", None, None)
    with pytest.raises(Conflict):
        screening.review_check(officer, clear.id, "confirmed", "There is nothing to confirm.")


def test_review_of_an_unknown_check_is_not_found(officer):
    import uuid

    with pytest.raises(NotFound):
        screening.review_check(officer, uuid.uuid4(), "confirmed", "A good long reason")


@pytest.mark.parametrize("role", ["student", "faculty"])
def test_only_officers_review(pending, role):
    with pytest.raises(Forbidden):
        screening.review_check(create_user(role), pending.id, "confirmed", "A good long reason")
    assert db.session.get(AmlCheck, pending.id).status == AmlStatus.PENDING_REVIEW


# ---------------------------------------------------------------------------------- on demand


def test_on_demand_screening_uses_the_kyc_data(officer, sample):
    student = create_user("student", full_name="Someone Else")
    verify(student, 1, country="PL", legal_name="Bohdan Przemylski")
    check = screening.screen_on_demand(officer, student.email.upper(), "80")
    assert check.trigger == AmlTrigger.ON_DEMAND
    assert check.screened_name == "Bohdan Przemylski"
    assert check.screened_birth_date == date(1999, 4, 1) and check.screened_country == "PL"
    assert check.threshold == Decimal(80)
    assert check.verification_id is not None
    # The alias matches exactly; the birth date differs (-15), the country agrees (+3).
    assert check.hits[0]["name"] == "Bogdan Przemylski" and check.hits[0]["score"] == 88.0
    assert check.hits[0]["disagreeing"] == ["birth_date"] and check.hits[0]["agreeing"] == ["country"]


def test_on_demand_screening_falls_back_to_the_account_name(officer, sample):
    student = create_user("student", full_name="Layla Nasrallahni")
    check = screening.screen_on_demand(officer, student.email, None)
    assert check.screened_name == "Layla Nasrallahni" and check.verification_id is None
    assert check.status == AmlStatus.PENDING_REVIEW


@pytest.mark.parametrize("email", ["", "nobody@tests.example"])
def test_on_demand_needs_a_student(officer, sample, email):
    with pytest.raises(DomainError) as caught:
        screening.screen_on_demand(officer, email, None)
    assert caught.value.field == "email"


def test_on_demand_refuses_a_non_student(officer, sample):
    with pytest.raises(DomainError, match="No student"):
        screening.screen_on_demand(officer, create_user("faculty").email, None)


def test_students_cannot_screen_on_demand(sample, student):
    with pytest.raises(Forbidden):
        screening.screen_on_demand(student, student.email, None)


# ---------------------------------------------------------------------------------- RLS


def test_a_student_screened_at_submission_sees_no_check(sample, student):
    """The KYC submission runs as the student: the screening reads the watchlist and records
    its check, and the student then reads nothing of it, not even with no WHERE at all."""
    with acting_as(Actor.for_user(student.id, "student"), db.session):
        check = screening.screen_user(student.id, "Sergey Zlatogorov", None, None)
        assert check.status == AmlStatus.PENDING_REVIEW
        db.session.expunge_all()
        assert db.session.execute(text("SELECT count(*) FROM aml_checks")).scalar_one() == 0
        assert db.session.execute(text("SELECT count(*) FROM suspicious_activities")).scalar_one() == 0
    with acting_as(Actor.for_user(create_user("compliance").id, "compliance"), db.session):
        assert db.session.execute(text("SELECT count(*) FROM aml_checks WHERE \"userId\" = :u"),
                                  {"u": student.id}).scalar_one() == 1


def test_only_admins_and_the_system_write_the_watchlist(sample, student):
    for role, user in (("student", student), ("compliance", create_user("compliance"))):
        with acting_as(Actor.for_user(user.id, role), db.session):
            assert db.session.execute(text("SELECT count(*) FROM watchlist_entries")).scalar_one() == sample.imported
            assert db.session.execute(text("DELETE FROM watchlist_entries")).rowcount == 0
    admin = create_user("admin")
    with acting_as(Actor.for_user(admin.id, "admin"), db.session):
        assert db.session.execute(text("UPDATE watchlist_entries SET country = country")).rowcount == sample.imported


# ---------------------------------------------------------------------------------- the list


def test_the_list_is_pending_oldest_first_then_the_rest_newest_first_across_pages(officer, sample, student):
    from datetime import timedelta

    from portal.db.base import utcnow

    now = utcnow()
    made = []
    for minutes, name in [(50, "Layla Nasrallahni"), (40, "Nobody One"), (30, "Sergey Zlatogorov"),
                          (20, "Nobody Two"), (10, "Bogdan Przemylski")]:
        check = screening.screen_user(student.id, name, None, None)
        check.created_at = now - timedelta(minutes=minutes)
        made.append(check)
    db.session.flush()
    layla, nobody1, sergey, nobody2, bogdan = made
    expected = [layla, sergey, bogdan, nobody2, nobody1]
    seen, cursor = [], None
    for _ in range(5):
        page = screening.checks(officer, None, cursor, size=2)
        seen += [row.check.id for row in page.items]
        if not page.has_next:
            break
        cursor = page.next_cursor
    assert seen == [c.id for c in expected]
    pending = screening.checks(officer, "pending_review", None, size=10)
    assert [r.check.id for r in pending.items] == [layla.id, sergey.id, bogdan.id] and not pending.has_next
    clear = screening.checks(officer, "clear", None, size=1)
    assert [r.check.id for r in clear.items] == [nobody2.id]
    assert [r.check.id for r in screening.checks(officer, "clear", clear.next_cursor, size=1).items] == [nobody1.id]
    assert [r.check.id for r in screening.checks(officer, "bogus", "not-a-cursor", size=10).items] == \
        [c.id for c in expected]
    counts = screening.status_counts(officer)
    assert (counts["pending_review"], counts["clear"], counts["all"]) == (3, 2, 5)
