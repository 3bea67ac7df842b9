"""Milestones and the rewards students earn for them (spec service 9, the earnings half).

Rules, in one place:

- Admins define milestones for any course or for all of them; faculty only for courses they
  may edit (``portal.learning.lms.access``), never global ones, and with a capped reward
  (``FACULTY_REWARD_LIMITS``): a reward is paid from the rewards treasury, real money for the
  portal, so the people who may mint the most of it are the admins.
- Kinds: ``course_completed`` (one course, or any), ``quiz_passed`` (one quiz, any quiz of a
  course, or any quiz; an optional minimum score in percent) and ``streak`` (lessons completed
  on N UTC days in a row, in one course or in any). Fields that do not belong to the chosen
  kind are ignored, so a form that shows every field never fails for a field left filled in.
  Once someone has earned a milestone, its rule can no longer change (deactivate it and make
  another): what students earned must keep meaning what it said.
- Earning: the receivers of the learning events (``listeners``) call ``reward_*`` inside the
  emitter's transaction. Each matching active milestone is inserted as an ``Earning`` with
  ``INSERT ... ON CONFLICT (userId, milestoneId) DO NOTHING RETURNING``: the unique pair makes
  a second delivery of the event, or a concurrent one on another connection (which waits on the
  unique index until the first commits), insert nothing, so only the transaction that inserted
  the row pays it. Paying is one REWARD leg from the rewards system wallet to the student's
  wallet, in a savepoint: when the ledger refuses (a frozen wallet) the savepoint is undone,
  the earning stays pending and the learning request goes on. Database errors are not caught.
  The amount earned is the milestone's reward times the student's plan's ``reward_multiplier``
  (``portal.money.billing.entitlements``; 1 without a plan), rounded down to the currency.
- A pending earning is paid later: by the next delivery of a matching event, by an admin
  ("Pay" on one, "Pay pending" on all) or by the periodic job (``tasks``). Each locks the
  earning row first, so two of them never pay it twice.
- Admins reverse a credited earning with a reason: the ledger posts the reversing transaction
  (refused if the student no longer has the funds) and the earning becomes ``reversed``.

Services take the acting user, validate, change rows and flush; the caller commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert

from portal.accounts.models import Role, User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.learning.assessment.models import Quiz, QuizAttempt
from portal.learning.education.models import Course, Lesson
from portal.learning.lms import access
from portal.money.billing import entitlements
from portal.money.currency import CURRENCIES, currency, format_amount, parse_amount
from portal.money.earnings import queries
from portal.money.earnings.models import (
    EARNING_TRANSITIONS,
    Earning,
    EarningStatus,
    Milestone,
    MilestoneKind,
)
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType
from portal.platform.notifications.services import notify

log = logging.getLogger(__name__)

#: The largest reward a faculty member may set, per currency (admins are not limited).
FACULTY_REWARD_LIMITS: dict[str, Decimal] = {
    "AZR": Decimal("1000"), "USD": Decimal("100"), "BTC": Decimal("0.01"), "ETH": Decimal("0.5"),
}
MAX_TITLE = 160
MAX_DESCRIPTION = 500
MAX_REASON = 250
MIN_REASON = 5
STREAK_MIN, STREAK_MAX = 2, 365
#: Pending earnings paid by one "Pay pending" action or job run.
PAY_BATCH = 200
#: Where the student reads about their earnings (notifications link here).
EARNINGS_PATH = "/wallet/earnings"

#: The parts of a milestone that make its rule; they cannot change once it has been earned.
RULE_FIELDS = ("kind", "course_id", "quiz_id", "min_score", "streak_days")


class MilestoneInvalid(DomainError):
    status_code = 422
    #: Every field's problem when several were found (field -> message).
    errors: dict[str, str] | None = None


# ------------------------------------------------------------------------------ amounts


def display_amount(amount: Decimal, code: str) -> str:
    """An amount for people (``portal.money.currency.format_amount``)."""
    return format_amount(amount, code)


# ------------------------------------------------------------------------------ milestones


@dataclass
class MilestoneInput:
    """A milestone as a form sends it: text, checked and converted by the service."""

    title: str = ""
    description: str = ""
    kind: str = ""
    course_id: str | uuid.UUID | None = None
    quiz_id: str | uuid.UUID | None = None
    min_score: str | Decimal | None = None
    streak_days: str | int | None = None
    reward_amount: str | Decimal = ""
    reward_currency: str = "AZR"
    active: bool = True


def _uuid_or_none(raw, field: str, what: str) -> uuid.UUID | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(str(raw).strip())
    except ValueError:
        raise MilestoneInvalid(f"Choose {what} from the list.", field=field) from None


def _percent(raw) -> Decimal | None:
    text = str(raw if raw is not None else "").strip().removesuffix("%").strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MilestoneInvalid("Give the minimum score as a percentage, like 80.", field="min_score") from None
    if not value.is_finite() or value < 0 or value > 100:
        raise MilestoneInvalid("The minimum score is between 0 and 100 percent.", field="min_score")
    if value != value.quantize(Decimal("0.01")):
        raise MilestoneInvalid("The minimum score has at most two decimals.", field="min_score")
    return value.quantize(Decimal("0.01"))


def _streak_days(raw) -> int:
    text = str(raw if raw is not None else "").strip()
    if not text:
        raise MilestoneInvalid("How many days in a row?", field="streak_days")
    if not text.isdigit():
        raise MilestoneInvalid("Give the number of days as a whole number, like 7.", field="streak_days")
    days = int(text)
    if not STREAK_MIN <= days <= STREAK_MAX:
        raise MilestoneInvalid(f"A streak is {STREAK_MIN} to {STREAK_MAX} days.", field="streak_days")
    return days


def _reward(actor: User, raw_amount, raw_code: str) -> tuple[Decimal, str]:
    try:
        code = currency(raw_code).code
    except DomainError as exc:
        raise MilestoneInvalid(exc.message, field="reward_currency") from None
    try:
        amount = parse_amount(raw_amount, code)
    except DomainError as exc:
        raise MilestoneInvalid(exc.message, field="reward_amount") from None
    limit = FACULTY_REWARD_LIMITS.get(code)
    if actor.role != Role.ADMIN and limit is not None and amount > limit:
        raise MilestoneInvalid(f"A course reward is at most {display_amount(limit, code)}; an administrator "
                               "can set a larger one.", field="reward_amount")
    return amount, code


def _require_manager(actor: User) -> None:
    if actor.role not in (Role.ADMIN, Role.FACULTY):
        raise Forbidden("Only administrators and faculty manage milestones.")


def _title(raw: str) -> str:
    title = " ".join((raw or "").split())
    if not title:
        raise MilestoneInvalid("Give the milestone a title students will read.", field="title")
    if len(title) > MAX_TITLE:
        raise MilestoneInvalid(f"The title is at most {MAX_TITLE} characters.", field="title")
    return title


def _description(raw: str) -> str:
    description = (raw or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise MilestoneInvalid(f"The description is at most {MAX_DESCRIPTION} characters.", field="description")
    return description


def _kind(raw: str) -> MilestoneKind:
    try:
        return MilestoneKind(raw)
    except ValueError:
        raise MilestoneInvalid("Choose what the student must do.", field="kind") from None


def _course_and_quiz(actor: User, kind: MilestoneKind | None,
                     data: MilestoneInput) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    course_id = _uuid_or_none(data.course_id, "course_id", "a course")
    quiz_id = _uuid_or_none(data.quiz_id, "quiz_id", "a quiz") if kind == MilestoneKind.QUIZ_PASSED else None
    if quiz_id is not None:
        quiz = db.session.get(Quiz, quiz_id)
        if quiz is None:
            raise MilestoneInvalid("That quiz does not exist.", field="quiz_id")
        if course_id is not None and quiz.course_id != course_id:
            raise MilestoneInvalid("That quiz belongs to another course: choose the quiz's course, or another quiz.",
                                   field="quiz_id")
        course_id = quiz.course_id
    if course_id is not None and db.session.get(Course, course_id) is None:
        raise MilestoneInvalid("That course does not exist.", field="course_id")
    if actor.role != Role.ADMIN:
        if course_id is None:
            raise MilestoneInvalid("Choose one of your courses: milestones for every course are set by "
                                   "administrators.", field="course_id")
        if not access.may(actor, course_id, access.CAN_EDIT):
            raise Forbidden("You can set milestones only for courses you teach as an owner or instructor.")
    return course_id, quiz_id


def _checked(actor: User, data: MilestoneInput) -> dict:
    """The milestone's column values from ``data``. Every field is checked, so a form shows all
    its problems at once: the error raised names the first field and carries them all in
    ``errors`` (field -> message)."""
    _require_manager(actor)
    errors: dict[str, str] = {}

    def check(step, fallback=None):
        try:
            return step()
        except MilestoneInvalid as exc:
            errors.setdefault(exc.field, exc.message)
            return fallback

    title = check(lambda: _title(data.title))
    description = check(lambda: _description(data.description))
    kind = check(lambda: _kind(data.kind))
    course_id, quiz_id = check(lambda: _course_and_quiz(actor, kind, data), (None, None))
    min_score = check(lambda: _percent(data.min_score)) if kind == MilestoneKind.QUIZ_PASSED else None
    streak_days = check(lambda: _streak_days(data.streak_days)) if kind == MilestoneKind.STREAK else None
    amount, code = check(lambda: _reward(actor, data.reward_amount, data.reward_currency), (None, None))
    if errors:
        field, message = next(iter(errors.items()))
        error = MilestoneInvalid(message, field=field)
        error.errors = errors
        raise error
    return {"title": title, "description": description, "kind": kind, "course_id": course_id, "quiz_id": quiz_id,
            "min_score": min_score, "streak_days": streak_days, "reward_amount": amount, "reward_currency": code,
            "active": bool(data.active)}


def get_milestone(actor: User, milestone_id: uuid.UUID, *, for_update: bool = False) -> Milestone:
    """A milestone ``actor`` may manage (NotFound for the others: faculty do not learn of the
    milestones of courses they do not teach)."""
    _require_manager(actor)
    stmt = select(Milestone).where(Milestone.id == milestone_id)
    if for_update:
        stmt = stmt.with_for_update()
    milestone = db.session.scalar(stmt)
    if milestone is None or not queries.may_manage(actor, milestone):
        raise NotFound("That milestone does not exist, or it is not one of yours.")
    return milestone


def create_milestone(actor: User, data: MilestoneInput) -> Milestone:
    values = _checked(actor, data)
    milestone = Milestone(**values, created_by_id=actor.id)
    db.session.add(milestone)
    db.session.flush()
    return milestone


def update_milestone(actor: User, milestone_id: uuid.UUID, data: MilestoneInput) -> Milestone:
    """Change a milestone. Its rule (kind, course, quiz, minimum, days) is fixed once earned;
    the title, description and reward may change (past earnings keep the amount they had)."""
    milestone = get_milestone(actor, milestone_id, for_update=True)
    values = _checked(actor, data)
    changed_rule = any(getattr(milestone, name) != values[name] for name in RULE_FIELDS)
    if changed_rule and db.session.scalar(select(func.count()).select_from(Earning)
                                          .where(Earning.milestone_id == milestone.id)):
        raise Conflict("Students have already earned this milestone, so its rule cannot change. Deactivate it "
                       "and create a new one instead.", field="kind")
    for name, value in values.items():
        setattr(milestone, name, value)
    db.session.flush()
    return milestone


def set_active(actor: User, milestone_id: uuid.UUID, active: bool) -> Milestone:
    """Activate or deactivate: an inactive milestone pays nothing; what was earned stays."""
    milestone = get_milestone(actor, milestone_id, for_update=True)
    milestone.active = bool(active)
    db.session.flush()
    return milestone


# ------------------------------------------------------------------------------ earning


def _move(earning: Earning, to: EarningStatus) -> None:
    if to not in EARNING_TRANSITIONS[earning.status]:
        raise Conflict(f"A reward that is {earning.status.value} cannot become {to.value}.")
    earning.status = to


def _pay(earning: Earning, title: str, *, initiated_by_id: uuid.UUID | None = None) -> None:
    """Pay a pending earning (locked or just inserted by this transaction) in a savepoint.
    Raises the ledger's DomainError with the savepoint undone, so nothing of the attempt stays."""
    with db.session.begin_nested():
        wallet = ledger.open_user_wallet(earning.user_id, earning.currency)
        treasury = ledger.system_wallet(SystemWallet.REWARDS, earning.currency, spread_by=earning.user_id)
        [tx] = ledger.post([ledger.Leg(treasury, wallet, earning.amount, TransactionType.REWARD,
                                       f"Reward: {title}",
                                       {"earning_id": str(earning.id), "milestone_id": str(earning.milestone_id)})],
                           initiated_by_id=initiated_by_id)
        # Changed under the ledger's role (entering it runs a statement, which autoflushes): a
        # teacher whose grading passed the quiz cannot update the student's earnings row.
        with ledger.as_ledger():
            _move(earning, EarningStatus.CREDITED)
            earning.transaction_id = tx.id
            earning.credited_at = utcnow()
            db.session.flush()


def _try_to_pay(earning: Earning, title: str, *, new: bool, initiated_by_id: uuid.UUID | None = None) -> bool:
    """Pay and tell the student; on a refusal keep it pending, log it, and (for a new one) tell
    the student it is waiting. Only the ledger's refusals are caught."""
    # Read before paying: after a refusal the row is not read again (the acting user, say a
    # teacher whose grading passed the quiz, may not see it).
    earning_id, user_id, code, ref = earning.id, earning.user_id, earning.currency, earning.source_ref
    amount = display_amount(earning.amount, code)
    try:
        _pay(earning, title, initiated_by_id=initiated_by_id)
    except DomainError as exc:
        log.warning("earning %s of user %s stays pending: %s", earning_id, user_id, exc.message)
        if new:
            notify(user_id, "earning", f"You earned {amount} for {title}",
                   f"It will be paid into your wallet as soon as it can receive money ({exc.message})",
                   EARNINGS_PATH)
        return False
    if new:
        notify(user_id, "earning", f"You earned {amount} for {title}", f"{ref}. It is in your {code} wallet.",
               EARNINGS_PATH)
    else:
        notify(user_id, "earning", f"Your reward of {amount} for {title} was paid",
               f"It is in your {code} wallet.", EARNINGS_PATH)
    return True


def boosted_reward(amount: Decimal, code: str, multiplier: Decimal) -> Decimal:
    """A milestone's reward times the student's plan's ``reward_multiplier``, rounded down to
    the currency's scale (the treasury never pays a fraction of a unit more than earned)."""
    if multiplier == 1:
        return amount
    with localcontext(prec=100):
        return (amount * multiplier).quantize(currency(code).quantum, rounding=ROUND_DOWN)


def _earn(user: User, milestones: list[Milestone], source: str, refs: dict[uuid.UUID, str]) -> list[Earning]:
    """Record and pay each milestone ``user`` has not earned yet; pending earnings of these
    milestones from before are paid again. Returns the earnings this call inserted."""
    if not milestones:
        return []
    now = utcnow()
    by_id = {m.id: m for m in milestones}
    multiplier = entitlements.limit(user.id, "reward_multiplier")
    rows = [{"id": uuid.uuid4(), "user_id": user.id, "milestone_id": m.id,
             "amount": boosted_reward(m.reward_amount, m.reward_currency, multiplier),
             "currency": m.reward_currency, "source": source, "source_ref": refs.get(m.id, "")[:300],
             "status": EarningStatus.PENDING, "created_at": now, "updated_at": now} for m in milestones]
    with ledger.as_ledger():
        inserted = list(db.session.scalars(
            insert(Earning).values(rows)
            .on_conflict_do_nothing(index_elements=[Earning.user_id, Earning.milestone_id])
            .returning(Earning)))
        earlier = [m_id for m_id in by_id if m_id not in {e.milestone_id for e in inserted}]
        retry = list(db.session.scalars(
            select(Earning).where(Earning.user_id == user.id, Earning.milestone_id.in_(earlier),
                                  Earning.status == EarningStatus.PENDING)
            .with_for_update(skip_locked=True))) if earlier else []
    for earning in inserted:
        _try_to_pay(earning, by_id[earning.milestone_id].title, new=True)
    for earning in retry:
        _try_to_pay(earning, by_id[earning.milestone_id].title, new=False)
    return inserted


def _matching(kind: MilestoneKind, *where) -> list[Milestone]:
    return list(db.session.scalars(select(Milestone).where(Milestone.kind == kind, Milestone.active.is_(True),
                                                           *where).order_by(Milestone.created_at)))


def reward_course_completed(user: User, course: Course) -> list[Earning]:
    """``course_completed``: milestones for this course and for any course."""
    if user.role != Role.STUDENT:
        return []
    found = _matching(MilestoneKind.COURSE_COMPLETED,
                      or_(Milestone.course_id.is_(None), Milestone.course_id == course.id))
    return _earn(user, found, "course_completed", {m.id: course.title for m in found})


def best_quiz_percent(user_id: uuid.UUID, quiz_id: uuid.UUID) -> Decimal | None:
    """The student's best percent on a passed attempt at the quiz (read as the current actor:
    the student, or the staff member whose grading finished the attempt)."""
    return db.session.scalar(select(func.max(QuizAttempt.percent)).where(
        QuizAttempt.user_id == user_id, QuizAttempt.quiz_id == quiz_id, QuizAttempt.passed.is_(True)))


def reward_quiz_passed(user: User, quiz: Quiz, percent: Decimal | None = None) -> list[Earning]:
    """``quiz_passed``: milestones for this quiz, any quiz of its course, or any quiz, whose
    minimum (if any) the score reaches. ``percent`` defaults to the best passed attempt's."""
    if user.role != Role.STUDENT:
        return []
    found = _matching(MilestoneKind.QUIZ_PASSED,
                      or_(Milestone.quiz_id.is_(None), Milestone.quiz_id == quiz.id),
                      or_(Milestone.course_id.is_(None), Milestone.course_id == quiz.course_id))
    if not found:
        return []
    if any(m.min_score is not None for m in found):
        if percent is None:
            percent = best_quiz_percent(user.id, quiz.id)
        found = [m for m in found if m.min_score is None or (percent is not None and percent >= m.min_score)]
    ref = quiz.title if percent is None else f"{quiz.title} ({queries.percent_text(percent)})"
    return _earn(user, found, "quiz_passed", {m.id: ref for m in found})


def reward_lesson_completed(user: User, lesson: Lesson, today: date | None = None) -> list[Earning]:
    """``lesson_completed``: streak milestones (any course, or the lesson's) whose length the
    student's run of days ending today reaches."""
    if user.role != Role.STUDENT:
        return []
    found = _matching(MilestoneKind.STREAK,
                      or_(Milestone.course_id.is_(None), Milestone.course_id == lesson.course_id))
    if not found:
        return []
    today = today or utcnow().date()
    longest = max(m.streak_days for m in found)
    days = queries.activity_days(user.id, since=today - timedelta(days=longest - 1), until=today)
    overall = queries.streak_length(set().union(*days.values()) if days else set(), today)
    in_course = queries.streak_length(days.get(lesson.course_id, set()), today)
    reached = [m for m in found if (overall if m.course_id is None else in_course) >= m.streak_days]
    refs = {m.id: f"{m.streak_days} days in a row" + (f" in {_course_title(lesson.course_id)}"
                                                       if m.course_id else "")
            for m in reached}
    return _earn(user, reached, "lesson_completed", refs)


def _course_title(course_id: uuid.UUID) -> str:
    return db.session.scalar(select(Course.title).where(Course.id == course_id)) or "the course"


# ------------------------------------------------------------------------------ admin actions


def _require_admin(actor: User) -> None:
    if actor.role != Role.ADMIN:
        raise Forbidden("Only administrators pay or reverse rewards.")


def _locked_earning(earning_id: uuid.UUID) -> Earning:
    with ledger.as_ledger():
        earning = db.session.scalar(select(Earning).where(Earning.id == earning_id).with_for_update()
                                    .execution_options(populate_existing=True))
    if earning is None:
        raise NotFound("That reward does not exist.")
    return earning


def get_earning(actor: User, earning_id: uuid.UUID) -> Earning:
    """An earning, for an admin (NotFound when there is none)."""
    _require_admin(actor)
    with ledger.as_ledger():
        earning = db.session.get(Earning, earning_id)
    if earning is None:
        raise NotFound("That reward does not exist.")
    return earning


def _milestone_title(milestone_id: uuid.UUID) -> str:
    return db.session.scalar(select(Milestone.title).where(Milestone.id == milestone_id)) or "a milestone"


def pay_earning(actor: User, earning_id: uuid.UUID, key: str | None) -> tuple[Earning, bool]:
    """An admin pays one pending earning now. Returns ``(earning, replayed)``; a refusal of the
    ledger (the wallet is still frozen) is raised with the reason, and nothing changes."""
    get_earning(actor, earning_id)

    def perform() -> dict:
        earning = _locked_earning(earning_id)
        if earning.status != EarningStatus.PENDING:
            raise Conflict("This reward is not waiting to be paid: it is " + earning.status.value + ".")
        title = _milestone_title(earning.milestone_id)
        try:
            _pay(earning, title, initiated_by_id=actor.id)
        except DomainError as exc:
            raise Conflict(f"Not paid: {exc.message} It stays pending.") from None
        notify(earning.user_id, "earning",
               f"Your reward of {display_amount(earning.amount, earning.currency)} for {title} was paid",
               f"It is in your {earning.currency} wallet.", EARNINGS_PATH)
        return {"status": earning.status.value}

    _, replayed = ledger.once(actor.id, key, "earnings.pay", {"earning_id": str(earning_id)}, perform)
    return get_earning(actor, earning_id), replayed


@dataclass
class PayReport:
    paid: int = 0
    still_pending: int = 0
    #: Pending earnings another transaction held at that moment (paid by it, or next time).
    skipped: int = 0


def pay_pending(limit: int = PAY_BATCH, *, initiated_by_id: uuid.UUID | None = None) -> PayReport:
    """Pay up to ``limit`` pending earnings, oldest first; those the ledger still refuses stay
    pending. Rows another transaction has locked are skipped (they are being paid)."""
    report = PayReport()
    with ledger.as_ledger():
        pending = list(db.session.scalars(
            select(Earning).where(Earning.status == EarningStatus.PENDING)
            .order_by(Earning.created_at, Earning.id).limit(limit).with_for_update(skip_locked=True)))
    titles = dict(db.session.execute(select(Milestone.id, Milestone.title).where(
        Milestone.id.in_({e.milestone_id for e in pending}))).all()) if pending else {}
    for earning in pending:
        if _try_to_pay(earning, titles.get(earning.milestone_id, "a milestone"), new=False,
                       initiated_by_id=initiated_by_id):
            report.paid += 1
        else:
            report.still_pending += 1
    return report


def pay_all_pending(actor: User, key: str | None) -> tuple[PayReport, bool]:
    """The admin action "Pay pending": one batch, once per form."""
    _require_admin(actor)

    def perform() -> dict:
        report = pay_pending(initiated_by_id=actor.id)
        return {"paid": report.paid, "still_pending": report.still_pending}

    result, replayed = ledger.once(actor.id, key, "earnings.pay_pending", {"action": "pay_pending"}, perform)
    return PayReport(paid=result.get("paid", 0), still_pending=result.get("still_pending", 0)), replayed


def reverse_earning(actor: User, earning_id: uuid.UUID, reason: str, key: str | None) -> tuple[Earning, bool]:
    """An admin takes a credited reward back, with a reason the student reads. Refused, with
    nothing changed, when the student no longer has the funds."""
    get_earning(actor, earning_id)
    reason = " ".join((reason or "").split())
    if len(reason) < MIN_REASON:
        raise MilestoneInvalid("Say why the reward is taken back (the student reads it).", field="reason")
    if len(reason) > MAX_REASON:
        raise MilestoneInvalid(f"The reason is at most {MAX_REASON} characters.", field="reason")

    def perform() -> dict:
        earning = _locked_earning(earning_id)
        if earning.status != EarningStatus.CREDITED:
            raise Conflict("Only a paid reward can be reversed; this one is " + earning.status.value + ".")
        with ledger.as_ledger():
            original = db.session.get(Transaction, earning.transaction_id)
        try:
            ledger.reverse(original, initiated_by_id=actor.id, description=f"Reward reversed: {reason}")
        except ledger.InsufficientFunds as exc:
            raise Conflict(f"The student no longer has the funds to give this reward back ({exc.message}) "
                           "Nothing was reversed.") from None
        with ledger.as_ledger():
            _move(earning, EarningStatus.REVERSED)
            db.session.flush()
        title = _milestone_title(earning.milestone_id)
        notify(earning.user_id, "earning",
               f"Your reward of {display_amount(earning.amount, earning.currency)} for {title} was reversed",
               f"Reason: {reason}", EARNINGS_PATH)
        return {"status": earning.status.value}

    _, replayed = ledger.once(actor.id, key, "earnings.reverse", {"earning_id": str(earning_id), "reason": reason},
                              perform)
    return get_earning(actor, earning_id), replayed


def currencies() -> Iterable[str]:
    return CURRENCIES.keys()
