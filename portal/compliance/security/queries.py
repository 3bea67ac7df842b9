"""Reads for the security pages: the searchable event log and the list of blocks.

Both are keyset-paginated on ``(createdAt DESC, id DESC)`` and load each page in one query
(the e-mails of the people named come with it through outer joins), so a page's statement count
does not grow with the data.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Row, Select, String, and_, bindparam, cast, func, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import CIDR, INET
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.compliance.security.models import (
    BlockedEntity,
    BlockKind,
    SecurityEvent,
    SecurityEventKind,
    Severity,
)
from portal.db import db
from portal.errors import DomainError
from portal.pagination import Page, decode_cursor, encode_cursor

PAGE_SIZE = 50


class BadFilter(DomainError):
    status_code = 422


@dataclass
class EventFilters:
    kind: str = ""
    severity: str = ""
    email: str = ""
    ip: str = ""
    date_from: str = ""
    date_to: str = ""
    #: Messages for filter values that could not be used (shown beside the form).
    errors: dict[str, str] = field(default_factory=dict)

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in (("kind", self.kind), ("severity", self.severity), ("email", self.email),
                                  ("ip", self.ip), ("from", self.date_from), ("to", self.date_to)) if v}


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _ip_filter(value: str, errors: dict[str, str]) -> tuple[str, str] | None:
    """("network", "10.0.0.0/8") for every address within a CIDR range, ("address", ...) for one
    address, None (with a message in ``errors``) for anything else."""
    value = value.strip()
    try:
        if "/" in value:
            return "network", str(ipaddress.ip_network(value, strict=False))
        return "address", str(ipaddress.ip_address(value))
    except ValueError:
        errors["ip"] = "Not an address or a CIDR range."
        return None


@dataclass
class EventRow:
    #: The event's columns the page shows (``_EVENT_COLUMNS``; not its details or user agent).
    event: Row
    user_email: str | None
    actor_email: str | None


_EVENT_COLUMNS = (SecurityEvent.id, SecurityEvent.kind, SecurityEvent.severity, SecurityEvent.ip_address,
                  SecurityEvent.path, SecurityEvent.summary, SecurityEvent.created_at)


@functools.cache
def _event_statement(kind: bool, severity: bool, email: bool, ip: str | None, start: bool, end: bool,
                     after: bool, size: int):
    """The events page's statement for one shape of filters, built once; the values are bound
    (``kind``, ``severity``, ``email``, ``network`` or ``address``, ``start``, ``end``,
    ``after_at``, ``after_id``)."""
    subject, actor = aliased(User), aliased(User)
    stmt: Select = (
        select(*_EVENT_COLUMNS, subject.email.label("user_email"), actor.email.label("actor_email"))
        .outerjoin(subject, subject.id == SecurityEvent.user_id)
        .outerjoin(actor, actor.id == SecurityEvent.actor_id)
    )
    at = SecurityEvent.created_at.type
    if kind:
        stmt = stmt.where(SecurityEvent.kind == bindparam("kind", type_=SecurityEvent.kind.type))
    if severity:
        stmt = stmt.where(SecurityEvent.severity == bindparam("severity", type_=SecurityEvent.severity.type))
    if email:
        # The account concerned or acting, or the address typed at a failed login.
        address = bindparam("email", type_=String())
        stmt = stmt.where(or_(subject.email == address, actor.email == address,
                              SecurityEvent.details["email"].astext == address))
    if ip == "network":
        stmt = stmt.where(SecurityEvent.ip_address.op("<<=")(cast(bindparam("network", type_=String()), CIDR)))
    elif ip == "address":
        stmt = stmt.where(SecurityEvent.ip_address == cast(bindparam("address", type_=String()), INET))
    if start:
        stmt = stmt.where(SecurityEvent.created_at >= bindparam("start", type_=at))
    if end:
        stmt = stmt.where(SecurityEvent.created_at < bindparam("end", type_=at))
    if after:
        stmt = stmt.where(tuple_(SecurityEvent.created_at, SecurityEvent.id)
                          < tuple_(bindparam("after_at", type_=at), bindparam("after_id", type_=SecurityEvent.id.type)))
    return stmt.order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc()).limit(size + 1)


def event_page(filters: EventFilters, cursor: str | None, size: int = PAGE_SIZE) -> Page:
    """Security events newest first, filtered; one query (built once per shape of filters).
    Filter values that make no sense are reported in ``filters.errors`` and left out rather
    than failing."""
    errors = filters.errors
    params: dict = {}
    if filters.kind:
        if filters.kind in SecurityEventKind._value2member_map_:
            params["kind"] = SecurityEventKind(filters.kind)
        else:
            errors["kind"] = "Unknown kind."
    if filters.severity:
        if filters.severity in Severity._value2member_map_:
            params["severity"] = Severity(filters.severity)
        else:
            errors["severity"] = "Unknown severity."
    if filters.email:
        params["email"] = filters.email.strip().lower()[:254]
    ip = _ip_filter(filters.ip, errors) if filters.ip else None
    if ip is not None:
        params[ip[0]] = ip[1]
    start, end = _parse_date(filters.date_from), _parse_date(filters.date_to)
    if filters.date_from and start is None:
        errors["from"] = "Not a date."
    if filters.date_to and end is None:
        errors["to"] = "Not a date."
    if start and end and end < start:
        errors["to"] = "The end is before the start."
        end = None
    if start:
        params["start"] = datetime.combine(start, time.min, UTC)
    if end:
        params["end"] = datetime.combine(end + timedelta(days=1), time.min, UTC)
    position = decode_cursor(cursor)
    if position is not None:
        params["after_at"], params["after_id"] = position
    stmt = _event_statement("kind" in params, "severity" in params, "email" in params, ip[0] if ip else None,
                            "start" in params, "end" in params, position is not None, size)
    rows = db.session.execute(stmt, params).all()
    items = [EventRow(row, row.user_email, row.actor_email) for row in rows[:size]]
    next_cursor = None
    if len(rows) > size:
        last = items[-1].event
        next_cursor = encode_cursor(last.created_at, last.id)
    return Page(items, next_cursor)


@dataclass
class BlockRow:
    block: BlockedEntity
    user_email: str | None
    created_by_email: str | None
    lifted_by_email: str | None
    in_force: bool

    @property
    def target(self) -> str:
        """What is blocked, as people write it: an address, a range or an e-mail."""
        if self.block.kind == BlockKind.USER:
            return self.user_email or "a deleted account"
        network = ipaddress.ip_network(str(self.block.network), strict=False)
        return str(network.network_address) if self.block.kind == BlockKind.IP else str(network)


BLOCK_VIEWS = ("active", "ended")


def block_page(view: str, cursor: str | None, search: str = "", size: int = PAGE_SIZE) -> Page:
    """Blocks in force (``active``) or lifted and expired (``ended``), newest first; one query.
    ``search`` is an address (blocks that contain it), a range, or part of a user's e-mail."""
    subject, creator, lifter = aliased(User), aliased(User), aliased(User)
    in_force = and_(BlockedEntity.lifted_at.is_(None),
                    or_(BlockedEntity.expires_at.is_(None), BlockedEntity.expires_at > func.now()))
    stmt = (
        select(BlockedEntity, subject.email, creator.email, lifter.email, in_force)
        .outerjoin(subject, subject.id == BlockedEntity.user_id)
        .outerjoin(creator, creator.id == BlockedEntity.created_by_id)
        .outerjoin(lifter, lifter.id == BlockedEntity.lifted_by_id)
        .where(in_force if view != "ended" else ~in_force)
    )
    search = (search or "").strip()[:254]
    if search:
        try:
            if "/" in search:
                network = ipaddress.ip_network(search, strict=False)
                stmt = stmt.where(BlockedEntity.network.op("&&")(cast(literal(str(network)), CIDR)))
            else:
                address = ipaddress.ip_address(search)
                stmt = stmt.where(BlockedEntity.network.op(">>=")(cast(literal(str(address)), INET)))
        except ValueError:
            pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(BlockedEntity.kind == BlockKind.USER, subject.email.like(pattern, escape="\\"))
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(BlockedEntity.created_at, BlockedEntity.id) < tuple_(*position))
    rows = db.session.execute(
        stmt.order_by(BlockedEntity.created_at.desc(), BlockedEntity.id.desc()).limit(size + 1)).all()
    items = [BlockRow(*row) for row in rows[:size]]
    next_cursor = None
    if len(rows) > size:
        last = items[-1].block
        next_cursor = encode_cursor(last.created_at, last.id)
    return Page(items, next_cursor)


def block_row(block_id) -> BlockRow | None:
    """One block with the e-mails it names (for an inline row swap)."""
    subject, creator, lifter = aliased(User), aliased(User), aliased(User)
    in_force = and_(BlockedEntity.lifted_at.is_(None),
                    or_(BlockedEntity.expires_at.is_(None), BlockedEntity.expires_at > func.now()))
    row = db.session.execute(
        select(BlockedEntity, subject.email, creator.email, lifter.email, in_force)
        .outerjoin(subject, subject.id == BlockedEntity.user_id)
        .outerjoin(creator, creator.id == BlockedEntity.created_by_id)
        .outerjoin(lifter, lifter.id == BlockedEntity.lifted_by_id)
        .where(BlockedEntity.id == block_id)
    ).one_or_none()
    return BlockRow(*row) if row else None
