"""Blocks on addresses, address ranges and users: adding, lifting, the check every request
makes, and the automatic block after repeated failed logins.

A block is in force while ``liftedAt`` is NULL and ``expiresAt`` is NULL (permanent) or in the
future: an expired block stops applying by itself, with no job to run.

The per-request check is ``network >>= :ip``, answered by the GiST index on ``network``. A
request with a session gets it inside the session lookup (``services.resolve_checked``, which
also finds a block on the user), so a logged-in page pays no extra statement; a request without
one pays one statement (``check_request``).
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import String, and_, bindparam, cast, func, literal, null, or_, select
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.sql.elements import BindParameter

from portal.accounts.models import Role, User
from portal.compliance.security import events as security_events
from portal.compliance.security.models import (
    BlockedEntity,
    BlockKind,
    BlockSource,
    SecurityEvent,
    SecurityEventKind,
    Severity,
)
from portal.db import context as db_context
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.platform.gateway import services as rate_limits

#: Ranges wider than this are refused: they block a large part of the internet.
MIN_PREFIX = {4: 8, 6: 32}
#: Durations offered on the form (value -> (label, length; None: permanent)).
DURATIONS: dict[str, tuple[str, timedelta | None]] = {
    "1h": ("1 hour", timedelta(hours=1)),
    "24h": ("24 hours", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
    "permanent": ("Permanent", None),
}
#: A block's end chosen as a date may lie at most this far ahead (beyond: make it permanent).
LONGEST = timedelta(days=3650)
#: At most one ``request_blocked`` event per block in this many seconds.
BLOCKED_EVENT_EVERY = 60


class BlockInvalid(DomainError):
    status_code = 422


class NeedsConfirmation(DomainError):
    """The block would cover the admin's own address: refused unless confirmed."""

    status_code = 409


def _in_force(now=None):
    now = now if now is not None else func.now()
    return and_(BlockedEntity.lifted_at.is_(None),
                or_(BlockedEntity.expires_at.is_(None), BlockedEntity.expires_at > now))


def is_in_force(block: BlockedEntity, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return block.lifted_at is None and (block.expires_at is None or block.expires_at > now)


# -- The per-request check -------------------------------------------------------------------------

def ip_block_id(ip: str | BindParameter | None):
    """Scalar subquery: one block in force containing ``ip`` (an address, or a bound parameter
    standing for one), permanent first, or NULL."""
    if ip is None:
        return null()
    address = ip if isinstance(ip, BindParameter) else literal(ip)
    return (
        select(BlockedEntity.id)
        .where(BlockedEntity.network.op(">>=")(cast(address, INET)), _in_force())
        .order_by(BlockedEntity.expires_at.desc().nulls_first())
        .limit(1)
        .scalar_subquery()
    )


#: ``check_request``'s statement, built once: it runs on every request without a session.
_CHECK_REQUEST = select(ip_block_id(bindparam("ip", type_=String)))


def check_request(ip: str | None) -> uuid.UUID | None:
    """The id of a block in force on ``ip``, or None (one statement)."""
    ip = security_events.clean_ip(ip)
    if ip is None:
        return None
    return db.session.scalar(_CHECK_REQUEST, {"ip": ip})


def block_on_user(user_id: uuid.UUID) -> BlockedEntity | None:
    """A block in force on the user (permanent first), or None."""
    return db.session.scalar(
        select(BlockedEntity)
        .where(BlockedEntity.kind == BlockKind.USER, BlockedEntity.user_id == user_id, _in_force())
        .order_by(BlockedEntity.expires_at.desc().nulls_first())
        .limit(1)
    )


def get_block(block_id: uuid.UUID) -> BlockedEntity:
    block = db.session.get(BlockedEntity, block_id)
    if block is None:
        raise NotFound("There is no such block.")
    return block


def note_blocked_request(block: BlockedEntity, *, ip: str | None, user_id: uuid.UUID | None) -> None:
    """Record a refused request: at most one event per block per minute, so a flood of refused
    requests cannot flood the table."""
    window = rate_limits.hit(f"security:blocked:{block.id}", BLOCKED_EVENT_EVERY)
    if window.count != 1:
        return
    target = describe_target(block)
    security_events.record(SecurityEventKind.REQUEST_BLOCKED, Severity.MEDIUM,
                           f"Request refused: {target} is blocked", user_id=user_id, ip=ip,
                           details={"block_id": str(block.id), "kind": block.kind.value})


def describe_target(block: BlockedEntity) -> str:
    if block.kind == BlockKind.USER:
        user = db.session.get(User, block.user_id) if block.user_id else None
        return user.email if user is not None else "a user"
    network = ipaddress.ip_network(str(block.network), strict=False)
    return str(network.network_address) if block.kind == BlockKind.IP else str(network)


# -- Adding and lifting ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    kind: BlockKind
    network: str | None = None
    user: User | None = None


def parse_target(kind: str, value: str) -> Target:
    """Validate what is to be blocked: an address, a CIDR range or a user's e-mail."""
    value = (value or "").strip()
    if kind not in BlockKind._value2member_map_:
        raise BlockInvalid("Choose what to block: an address, a range or a user.", field="kind")
    if not value:
        raise BlockInvalid("Say what to block.", field="target")
    kind = BlockKind(kind)
    if kind == BlockKind.USER:
        user = db.session.scalar(select(User).where(func.lower(User.email) == value.lower()[:254]))
        if user is None:
            raise BlockInvalid("No account has that e-mail address.", field="target")
        return Target(kind, user=user)
    if kind == BlockKind.IP:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise BlockInvalid("That is not an IP address (for example 203.0.113.7 or 2001:db8::1).",
                               field="target") from None
        return Target(kind, network=str(ipaddress.ip_network(address)))
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise BlockInvalid("That is not an address range in CIDR notation (for example 203.0.113.0/24).",
                           field="target") from None
    if network.prefixlen < MIN_PREFIX[network.version]:
        raise BlockInvalid(f"/{network.prefixlen} is far too wide: an IPv{network.version} range must be "
                           f"/{MIN_PREFIX[network.version]} or narrower.", field="target")
    if network.num_addresses == 1:
        return Target(BlockKind.IP, network=str(network))
    return Target(kind, network=str(network))


def expiry_for(duration: str, until: datetime | None, now: datetime | None = None) -> datetime | None:
    """The end of a block from a duration choice or a chosen moment (UTC); None is permanent."""
    now = now or utcnow()
    if duration == "until":
        if until is None:
            raise BlockInvalid("Choose the date and time the block ends.", field="until")
        if until.tzinfo is None:
            until = until.replace(tzinfo=now.tzinfo)
        if until <= now + timedelta(minutes=1):
            raise BlockInvalid("The end of the block must be in the future.", field="until")
        if until > now + LONGEST:
            raise BlockInvalid("That is more than ten years ahead: make the block permanent instead.",
                               field="until")
        return until
    if duration not in DURATIONS:
        raise BlockInvalid("Choose how long the block lasts.", field="duration")
    length = DURATIONS[duration][1]
    return None if length is None else now + length


def _require_admin(actor: User) -> None:
    if actor is None or actor.role != Role.ADMIN:
        raise Forbidden("Only administrators can block or lift blocks.")


def add_block(actor: User, *, kind: str, target: str, reason: str, duration: str, until: datetime | None = None,
              actor_ip: str | None = None, confirm_own_address: bool = False) -> BlockedEntity:
    """Block an address, a range or a user (admins)."""
    _require_admin(actor)
    parsed = parse_target(kind, target)
    reason = " ".join((reason or "").split())
    if len(reason) < 3:
        raise BlockInvalid("Give a reason (other administrators and the audit trail will read it).",
                           field="reason")
    if len(reason) > 500:
        raise BlockInvalid("Keep the reason under 500 characters.", field="reason")
    expires_at = expiry_for(duration, until)
    if parsed.kind == BlockKind.USER:
        if parsed.user.id == actor.id:
            raise BlockInvalid("You cannot block your own account.", field="target")
        existing = db.session.scalar(select(BlockedEntity).where(
            BlockedEntity.user_id == parsed.user.id, _in_force()).limit(1))
    else:
        own = security_events.clean_ip(actor_ip)
        if own and ipaddress.ip_address(own) in ipaddress.ip_network(parsed.network) and not confirm_own_address:
            raise NeedsConfirmation(f"Your own address {own} is in {parsed.network}: you would lock yourself out. "
                                    "Tick the confirmation to block it anyway.", field="confirm_own_address")
        existing = db.session.scalar(select(BlockedEntity).where(
            BlockedEntity.network == cast(literal(parsed.network), BlockedEntity.network.type), _in_force()).limit(1))
    if existing is not None:
        until_text = "permanently" if existing.expires_at is None else f"until {existing.expires_at:%d %b %Y %H:%M} UTC"
        raise Conflict(f"That is already blocked {until_text}. Lift that block first to change it.", field="target")
    block = BlockedEntity(kind=parsed.kind, network=parsed.network, user_id=parsed.user.id if parsed.user else None,
                          reason=reason, source=BlockSource.ADMIN, expires_at=expires_at, created_by_id=actor.id)
    db.session.add(block)
    db.session.flush()
    _record_added(block, actor)
    return block


def _record_added(block: BlockedEntity, actor: User | None) -> None:
    target = describe_target(block)
    until = "permanently" if block.expires_at is None else f"until {block.expires_at:%d %b %Y %H:%M} UTC"
    who = actor.email if actor is not None else "Automatic block:"
    summary = f"{who} blocked {target} {until}" if actor is not None else f"{who} {target} {until}"
    security_events.record(
        SecurityEventKind.BLOCK_ADDED, Severity.HIGH if block.source == BlockSource.AUTOMATIC else Severity.MEDIUM,
        summary, user_id=block.user_id, actor_id=getattr(actor, "id", None),
        ip=str(ipaddress.ip_network(str(block.network)).network_address) if block.kind == BlockKind.IP else None,
        details={"block_id": str(block.id), "kind": block.kind.value, "target": target,
                 "source": block.source.value, "reason": block.reason,
                 "expires_at": block.expires_at.isoformat() if block.expires_at else None})


def lift_block(actor: User, block_id: uuid.UUID) -> BlockedEntity:
    """Lift a block in force (admins)."""
    _require_admin(actor)
    block = db.session.scalar(select(BlockedEntity).where(BlockedEntity.id == block_id).with_for_update())
    if block is None:
        raise NotFound("There is no such block.")
    if not is_in_force(block):
        raise Conflict("This block is no longer in force: it was lifted or has expired.")
    block.lifted_at = utcnow()
    block.lifted_by_id = actor.id
    db.session.flush()
    security_events.record(SecurityEventKind.BLOCK_LIFTED, Severity.INFO,
                           f"{actor.email} lifted the block on {describe_target(block)}",
                           user_id=block.user_id, actor_id=actor.id,
                           details={"block_id": str(block.id), "kind": block.kind.value})
    return block


# -- Automatic blocks -----------------------------------------------------------------------------

_COUNTED = (SecurityEventKind.LOGIN_FAILED, SecurityEventKind.LOGIN_THROTTLED)


def after_failed_login(ip: str | None) -> BlockedEntity | None:
    """Block ``ip`` for ``AUTO_BLOCK_MINUTES`` once it has ``AUTO_BLOCK_FAILURES`` failed logins
    within ``LOGIN_THROTTLE_WINDOW_SECONDS``.

    The count comes from ``security_events`` (a sliding window, exact, where the throttle's
    counters use fixed windows), counting only failures after the last automatic block of the
    address, so one burst makes one block and an address blocked before starts afresh. A
    transaction-level advisory lock on the address makes concurrent failures add one block, not
    several. Reading events needs an officer or the system: this runs as ``system:security``.
    """
    if ip is None:
        return None
    config = current_app.config
    threshold = config["AUTO_BLOCK_FAILURES"]
    window = timedelta(seconds=config["LOGIN_THROTTLE_WINDOW_SECONDS"])
    single = str(ipaddress.ip_network(ip))
    with db_context.acting_as(db_context.Actor.system("security"), db.session):
        db.session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("autoblock:" + ip, 0))))
        latest = db.session.execute(
            select(BlockedEntity.created_at, _in_force().label("in_force"))
            .where(BlockedEntity.network.op(">>=")(cast(literal(ip), INET)))
            .order_by(_in_force().desc(), BlockedEntity.created_at.desc())
            .limit(1)
        ).one_or_none()
        if latest is not None and latest.in_force:
            return None  # already blocked (by an admin or an earlier burst)
        since = utcnow() - window
        if latest is not None and latest.created_at > since:
            since = latest.created_at
        failures = db.session.scalar(
            select(func.count()).select_from(SecurityEvent).where(
                SecurityEvent.ip_address == cast(literal(ip), INET),
                SecurityEvent.kind.in_(_COUNTED),
                SecurityEvent.created_at > since,
            )
        )
        if failures < threshold:
            return None
        now = utcnow()
        block = BlockedEntity(kind=BlockKind.IP, network=single, source=BlockSource.AUTOMATIC,
                              reason=f"{failures} failed logins within {int(window.total_seconds() // 60)} minutes",
                              expires_at=now + timedelta(minutes=config["AUTO_BLOCK_MINUTES"]))
        db.session.add(block)
        db.session.flush()
        _record_added(block, None)
    return block
