"""Receivers of the accounts' own events: a new account or a change of role makes the admin
dashboard's count of accounts per role stale. ``create_app`` connects them
(``portal.app._connect_listeners``).
"""

from __future__ import annotations

from portal import events
from portal.accounts.queries import ROLE_COUNTS_KEY
from portal.platform.cache import services as cache


@events.user_registered.connect
def _forget_counts_on_registration(_sender=None, **_) -> None:
    cache.invalidate_on_commit(ROLE_COUNTS_KEY)


@events.account_changed.connect
def _forget_counts_on_change(_sender=None, *, change: str, **_) -> None:
    if change in ("created", "role"):
        cache.invalidate_on_commit(ROLE_COUNTS_KEY)
