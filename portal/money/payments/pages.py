"""Reads for the student's and faculty's payment pages: one's payments (keyset pages), one
payment with its course and refunds, saved methods, a course's checkout and purchase state,
and a teacher's sales. Reads only; the writes are ``services``.

Every read of a payment or method is scoped to its owner here, on top of row-level security,
so another user's id is a ``NotFound`` whoever asks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import urlsplit

from sqlalchemy import func, select

from portal.accounts.models import Role, User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import NotFound
from portal.money.currency import format_amount
from portal.money.payments import admin_queries, queries, services
from portal.money.payments.models import Payment, PaymentMethod, PayWith, Purpose, Refund
from portal.money.payments.providers.base import PaymentState
from portal.money.payments.states import OPEN_PAYMENT_STATES, OUTSTANDING_REFUND_STATES
from portal.money.wallets import ledger
from portal.pagination import Page, keyset_page

PAGE_SIZE = 20


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# -- Payments -------------------------------------------------------------------------------------


def payments_of(user: User, *, state: PaymentState | None = None, cursor: str | None = None,
                size: int = PAGE_SIZE) -> Page:
    """The user's payments, newest first, optionally in one state (one query)."""
    stmt = select(Payment).where(Payment.user_id == user.id)
    if state is not None:
        stmt = stmt.where(Payment.state == state)
    return keyset_page(stmt, Payment.created_at, Payment.id, cursor, size)


def own_payment(user: User, payment_id) -> Payment:
    """The user's own payment (never another's, whatever the role), or ``NotFound``."""
    found = _uuid(payment_id)
    payment = db.session.get(Payment, found) if found else None
    if payment is None or payment.user_id != user.id:
        raise NotFound("There is no such payment.")
    return payment


def payment_by_key(user: User, key: str) -> Payment:
    """The user's payment made by the checkout form with ``key`` (the provider's return)."""
    payment = db.session.scalar(select(Payment).where(Payment.user_id == user.id,
                                                      Payment.idempotency_key == (key or "")[:100]))
    if payment is None:
        raise NotFound("There is no such payment.")
    return payment


@dataclass
class PaymentView:
    payment: Payment
    course: object | None
    refunds: list[Refund]
    #: What reached the wallet (the amount: the portal bears the provider's fee).
    credited: Decimal | None
    #: The provider's page while the payer must act there (only an http(s) address).
    continue_url: str | None
    can_refund: bool
    refundable: Decimal
    refund_rule: str


def safe_external(url: str | None) -> str | None:
    """``url`` when it may be followed out of the portal (an ``http(s)`` address with a host and
    nothing unprintable), else None: a provider's page address is never trusted blindly."""
    if not url or not url.isprintable():
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def payment_view(user: User, payment_id) -> PaymentView:
    """One payment of the user's, with its course and refunds (three queries at most)."""
    payment = own_payment(user, payment_id)
    course = None
    refunds: list[Refund] = []
    can_refund, left, rule = False, Decimal(0), ""
    if payment.purpose == Purpose.COURSE_PURCHASE:
        from portal.learning.education.models import Course

        course = db.session.get(Course, payment.course_id)
        refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)
                                          .order_by(Refund.created_at.desc())))
        if payment.state == PaymentState.SUCCEEDED:
            outstanding = any(r.state in OUTSTANDING_REFUND_STATES for r in refunds)
            left = payment.amount - sum((r.amount for r in refunds if r.state in OUTSTANDING_REFUND_STATES),
                                        Decimal(0))
            can_refund = not outstanding and left > 0
            rule = _rule_text(services.course_refund_rule(payment)) if can_refund else ""
    credited = payment.amount if payment.state == PaymentState.SUCCEEDED and payment.purpose == Purpose.TOP_UP else None
    continue_url = (safe_external(payment.next_action_url)
                    if payment.state in (PaymentState.REQUIRES_ACTION, PaymentState.REQUIRES_PAYMENT_METHOD) else None)
    return PaymentView(payment, course, refunds, credited, continue_url, can_refund, left, rule)


def _rule_text(rule: services.RefundRule) -> str:
    """What asking for a refund now would do, in the student's words."""
    if rule.automatic:
        days = rule.days_since
        when = "today" if days == 0 else f"{days} day{'' if days == 1 else 's'} ago"
        return (f"Ask now and the money comes back at once: you bought it {when} and completed "
                f"{rule.progress_percent}% of it.")
    return f"Ask now and finance decides. {rule.explanation.split(':')[0]}."


# -- Saved methods --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedMethod:
    id: uuid.UUID
    kind: PayWith
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    is_default: bool
    expired: bool


def _expired(method: PaymentMethod, today: date) -> bool:
    if not method.exp_month or not method.exp_year:
        return False
    return (method.exp_year, method.exp_month) < (today.year, today.month)


def saved(method: PaymentMethod, today: date | None = None) -> SavedMethod:
    """A saved method as the pages show it: what the portal keeps, and whether it expired."""
    today = today or utcnow().date()
    return SavedMethod(method.id, method.kind, method.brand, method.last4, method.exp_month, method.exp_year,
                       method.is_default, _expired(method, today))


def methods_of(user: User) -> list[SavedMethod]:
    """The user's saved methods, default first, each marked expired or not (one query)."""
    today = utcnow().date()
    return [saved(m, today) for m in queries.saved_methods(user)]


def method_for(user: User, method_id) -> SavedMethod:
    found = _uuid(method_id)
    method = db.session.get(PaymentMethod, found) if found else None
    if method is None or method.user_id != user.id or method.removed_at is not None:
        raise NotFound("There is no such payment method.")
    return saved(method)


# -- Courses --------------------------------------------------------------------------------------


@dataclass
class Purchase:
    """A paid course seen by one student: what the course page shows instead of "Enrol"."""

    price: Decimal
    currency: str
    price_text: str
    #: Bought (and not refunded): enrolling again is free.
    owned: bool
    #: A payment for it that has not ended yet (the student may be paying right now).
    pending_payment_id: uuid.UUID | None = None

    @property
    def must_buy(self) -> bool:
        return not self.owned


def course_purchase(user: User, course) -> Purchase | None:
    """None for a free course; else its price and whether ``user`` owns it (two queries)."""
    if not course.is_paid:
        return None
    text = format_amount(course.price, course.price_currency)
    if user.role != Role.STUDENT:
        return Purchase(course.price, course.price_currency, text, owned=False)
    owned = services.owned_purchase(user.id, course.id) is not None
    pending = None
    if not owned:
        pending = db.session.scalar(select(Payment.id).where(
            Payment.user_id == user.id, Payment.course_id == course.id, Payment.purpose == Purpose.COURSE_PURCHASE,
            Payment.state.in_(tuple(OPEN_PAYMENT_STATES))).order_by(Payment.created_at.desc()).limit(1))
    return Purchase(course.price, course.price_currency, text, owned=owned, pending_payment_id=pending)


@dataclass
class Checkout:
    course: object
    price: Decimal
    currency: str
    balance: Decimal
    methods: list[SavedMethod] = field(default_factory=list)
    refund_rule: str = ""
    #: The student's earlier purchase, when they bought it and left: coming back is free.
    owned: Payment | None = None
    #: Enrolled already (bought, or enrolled while the course was free): nothing to buy.
    enrolled: bool = False

    @property
    def wallet_covers(self) -> bool:
        return self.balance >= self.price


def checkout(user: User, course_id) -> Checkout:
    """A paid, published course's checkout for ``user``: the buy box's facts
    (``queries.course_checkout``: price, wallet balance, ownership, saved methods) with the
    course, the earlier purchase and the refund rule in words. ``NotFound`` for a course that
    does not exist, is not published or is free."""
    from flask import current_app

    from portal.learning.education.models import Course, CourseStatus

    found = _uuid(course_id)
    course = db.session.get(Course, found) if found else None
    if course is None or course.status != CourseStatus.PUBLISHED or not course.is_paid:
        raise NotFound("That course is not for sale.")
    facts = queries.course_checkout(user, course)
    owned = db.session.get(Payment, facts.owned_payment_id) if facts.owned_payment_id else None
    days = current_app.config.get("COURSE_REFUND_DAYS", 14)
    most = current_app.config.get("COURSE_REFUND_MAX_PROGRESS_PERCENT", 20)
    rule = (f"Changed your mind? Within {days} days and with at most {most}% of the lessons done, a refund is "
            "given at once; later, finance decides.")
    today = utcnow().date()
    return Checkout(course, course.price, course.price_currency, facts.available or Decimal(0),
                    [saved(m, today) for m in facts.methods], rule, owned, facts.enrolled)


# -- Sales ----------------------------------------------------------------------------------------


@dataclass
class RecentSale:
    payment_id: uuid.UUID
    course_id: uuid.UUID
    course_title: str
    amount: Decimal
    currency: str
    refunded: Decimal
    at: datetime


@dataclass
class SalesReport:
    courses: list
    recent: list[RecentSale]


def sales_report(user: User, *, recent_size: int = 20) -> SalesReport:
    """Sales of the courses ``user`` owns or teaches (every course for an admin): per course the
    totals (``admin_queries.course_sales``) and the latest sales, two statements.

    Teachers do not read payments through row-level security, so the latest sales are read with
    the ledger's role, limited here to the teacher's courses; like the totals they name no payer
    (what a student paid and how is theirs and finance's to see)."""
    from portal.learning.education.models import Course
    from portal.learning.lms.models import CourseManagement

    stmt = (select(Payment.id, Course.id, Course.title, Payment.amount, Payment.currency, Payment.amount_refunded,
                   func.coalesce(Payment.credited_at, Payment.created_at))
            .join(Course, Course.id == Payment.course_id)
            .where(Payment.purpose == Purpose.COURSE_PURCHASE, Payment.state == PaymentState.SUCCEEDED)
            .order_by(Payment.created_at.desc(), Payment.id.desc()).limit(recent_size))
    if user.role != Role.ADMIN:
        stmt = stmt.where(select(CourseManagement.id).where(CourseManagement.course_id == Course.id,
                                                            CourseManagement.user_id == user.id).exists())
    with ledger.as_ledger():
        recent = [RecentSale(*row) for row in db.session.execute(stmt).all()]
    return SalesReport(admin_queries.course_sales(user).courses, recent)
