"""The port every payment provider adapter implements, and the shapes it answers with.

The portal never sees a card number: a payment starts at the provider, which returns the
address of its hosted payment page (``next_action_url``); the payer enters the card or phone
number there, passes any customer-action step (a 3-D Secure-like challenge), and comes back to
the portal's ``return_url``. The provider reports what happened by signed webhooks; ``fetch``
asks it directly, and that answer (not a webhook alone) settles an uncertain state.

Amounts are ``Decimal`` in major units of ``currency`` (``Decimal("12.50")`` USD), quantized to
the currency's scale by the caller; an adapter converts to and from its provider's minor units.
Every call that creates something takes an idempotency key, so a retry after a timeout never
makes a second payment or refund.

Errors: ``ProviderDeclined`` (the provider answered and refused: a declined card, an amount it
does not take; the message is safe to show), ``ProviderUnavailable`` (no answer, a timeout or a
5xx: the outcome is unknown, try again or reconcile later), ``WebhookRejected`` (a forged,
stale, replayed-out-of-window or malformed webhook).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable


class PaymentState(enum.StrEnum):
    """A payment's states, after Stripe's PaymentIntent (the portal's transition table lives in
    ``portal.money.payments.states``)."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  #: created; the payer has not paid yet
    REQUIRES_ACTION = "requires_action"  #: the payer must act (hosted page, challenge step)
    PROCESSING = "processing"  #: paid, the provider has not settled it yet (mobile money)
    SUCCEEDED = "succeeded"  #: the money is captured
    CANCELED = "canceled"  #: abandoned or canceled before it succeeded
    FAILED = "failed"  #: declined or failed for good


class RefundState(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class MethodKind(enum.StrEnum):
    CARD = "card"
    MOBILE_MONEY = "mobile_money"


class EventType(enum.StrEnum):
    """What a webhook tells, normalized across providers."""

    PAYMENT_UPDATED = "payment.updated"  #: a payment changed state (the snapshot says to what)
    REFUND_UPDATED = "refund.updated"  #: a refund changed state
    OTHER = "other"  #: anything else the provider sends; stored, not applied


@dataclass(frozen=True)
class ProviderMethod:
    """A payment method as the provider keeps it: never more than the portal may store."""

    ref: str  #: the provider's id for the method (to pay with it again, or detach it)
    kind: MethodKind
    brand: str = ""  #: "visa", "mastercard"; for mobile money the network ("mpesa")
    last4: str = ""  #: last four digits of the card or phone number
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class ProviderPayment:
    """The provider's view of one payment at one moment."""

    ref: str  #: the provider's id for the payment
    state: PaymentState
    amount: Decimal
    currency: str
    #: The provider's fee once known (after success), in the payment's currency.
    fee: Decimal | None = None
    amount_refunded: Decimal = Decimal(0)
    #: Where to send the payer (the hosted page, the challenge) while ``REQUIRES_ACTION``.
    next_action_url: str | None = None
    failure_code: str | None = None  #: "card_declined", "insufficient_funds", "stolen_card", ...
    failure_message: str | None = None  #: safe to show to the payer
    method: ProviderMethod | None = None  #: the method used, once known
    #: The payer asked to keep the method for later payments (``method`` is then saved).
    method_saved: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping = field(default_factory=dict, repr=False)  #: the provider's object, for the timeline


@dataclass(frozen=True)
class ProviderRefund:
    ref: str
    payment_ref: str
    state: RefundState
    amount: Decimal
    currency: str
    failure_reason: str | None = None
    raw: Mapping = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ProviderEvent:
    """A verified webhook. ``id`` is the provider's event id: applied once, whatever the order
    and however many times it comes."""

    id: str
    type: EventType
    created: datetime
    payment: ProviderPayment | None = None
    refund: ProviderRefund | None = None
    raw: Mapping = field(default_factory=dict, repr=False)


class ProviderError(Exception):
    """Base of what an adapter raises; ``str(error)`` is safe to show."""


class ProviderDeclined(ProviderError):
    """The provider answered and refused (``code`` as in ``ProviderPayment.failure_code``)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class ProviderUnavailable(ProviderError):
    """No usable answer (connection refused, timeout, 5xx): the outcome is unknown."""


class WebhookRejected(ProviderError):
    """Not a webhook to believe: bad or missing signature, stale timestamp, malformed body."""


@runtime_checkable
class Provider(Protocol):
    """A payment service provider. Adapters: ``sandbox`` (this repository's sandbox service)
    and ``stripe`` (the official SDK)."""

    #: The adapter's name as stored on payments ("sandbox", "stripe").
    name: str

    def create_payment(self, *, amount: Decimal, currency: str, method_kind: MethodKind, idempotency_key: str,
                       return_url: str, description: str, customer_ref: str | None = None,
                       saved_method_ref: str | None = None, save_method: bool = False,
                       metadata: Mapping[str, str] | None = None) -> ProviderPayment:
        """Start a payment. Without ``saved_method_ref``: ``REQUIRES_ACTION`` with the hosted
        page in ``next_action_url`` (the payer returns to ``return_url``). With it: charged at
        once off-session, answering ``SUCCEEDED``, ``PROCESSING``, ``REQUIRES_ACTION`` (a
        challenge) or raising ``ProviderDeclined``. ``customer_ref`` groups a payer's saved
        methods at the provider (see ``ensure_customer``)."""

    def ensure_customer(self, *, customer_ref: str | None, email: str, name: str) -> str:
        """The provider's customer id for a payer: ``customer_ref`` when given, else a new one."""

    def fetch(self, payment_ref: str) -> ProviderPayment:
        """The payment as the provider knows it now."""

    def capture(self, payment_ref: str, amount: Decimal | None = None) -> ProviderPayment:
        """Capture an authorized payment (all of it, or ``amount``)."""

    def cancel(self, payment_ref: str) -> ProviderPayment:
        """Cancel a payment that has not succeeded."""

    def refund(self, payment_ref: str, amount: Decimal, *, idempotency_key: str, reason: str) -> ProviderRefund:
        """Refund ``amount`` of a succeeded payment; usually ``PENDING`` first, settled later."""

    def fetch_refund(self, refund_ref: str) -> ProviderRefund:
        """The refund as the provider knows it now."""

    def list_methods(self, customer_ref: str) -> list[ProviderMethod]:
        """The payer's saved methods at the provider."""

    def detach_method(self, method_ref: str) -> None:
        """Forget a saved method at the provider (the portal removes its own row too)."""

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verify the signature (HMAC over timestamp and body, within the tolerance) and parse;
        raise ``WebhookRejected`` otherwise. Never trusts anything before the check."""
