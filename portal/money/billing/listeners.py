"""Billing's receivers: other areas ask what a student's plan allows (``entitlement_asked``); the
payment gateway tells when an invoice payment ended (``invoice_payment_ended``)."""

from __future__ import annotations

from portal import events
from portal.money.billing import entitlements, services
from portal.money.payments.services import invoice_payment_ended


@events.entitlement_asked.connect
def _on_entitlement_asked(_sender=None, *, user_id, feature, **_):
    """The value of ``feature`` for ``user_id`` (``entitlements.of_user``)."""
    if feature not in entitlements.FEATURES:
        raise entitlements.UnknownFeature(f"Unknown feature {feature!r}.")
    return entitlements.of_user(user_id)[feature]


@invoice_payment_ended.connect
def _on_invoice_payment_ended(payment, *, outcome, **_):
    """Pay the invoice from the credited wallet, or count a failed charge (``services``)."""
    services.on_invoice_payment_ended(payment, outcome=outcome)
