"""Billing's receivers: other areas ask what a student's plan allows (``entitlement_asked``)."""

from __future__ import annotations

from portal import events
from portal.money.billing import entitlements


@events.entitlement_asked.connect
def _on_entitlement_asked(_sender=None, *, user_id, feature, **_):
    """The value of ``feature`` for ``user_id`` (``entitlements.of_user``)."""
    if feature not in entitlements.FEATURES:
        raise entitlements.UnknownFeature(f"Unknown feature {feature!r}.")
    return entitlements.of_user(user_id)[feature]
