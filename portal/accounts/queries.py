"""Reads for the account pages."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from portal.accounts.models import Role, User, UserStatus
from portal.db import db
from portal.pagination import Page, keyset_page
from portal.platform.cache import services as cache


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def user_page(*, search: str = "", role: str = "", status: str = "", cursor: str | None = None,
              size: int = 25) -> Page:
    """Users newest first, filtered; unknown filter values are ignored rather than failing."""
    stmt = select(User)
    search = (search or "").strip()[:100]
    if search:
        pattern = _like(search.lower())
        stmt = stmt.where(or_(User.email.like(pattern, escape="\\"),
                              func.lower(User.full_name).like(pattern, escape="\\")))
    if role in Role._value2member_map_:
        stmt = stmt.where(User.role == Role(role))
    if status in UserStatus._value2member_map_:
        stmt = stmt.where(User.status == UserStatus(status))
    return keyset_page(stmt, User.created_at, User.id, cursor, size)


#: The accounts per role on the admin dashboard, in the shared cache: counting every user on each
#: view grew with the users. A new account or a change of role drops it (``listeners``); what
#: else adds accounts (the demo data's bulk load) shows within ``ROLE_COUNTS_SECONDS``.
ROLE_COUNTS_KEY = cache.shared_key("accounts-by-role")
ROLE_COUNTS_SECONDS = 60


def counts_by_role() -> dict[str, int]:
    return cache.get_or_compute(ROLE_COUNTS_KEY, _count_by_role, ROLE_COUNTS_SECONDS)


def _count_by_role() -> dict[str, int]:
    rows = db.session.execute(select(User.role, func.count()).group_by(User.role))
    return {role.value: count for role, count in rows}
