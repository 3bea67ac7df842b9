"""Account rules: registration, verification, login, passwords, staff accounts, roles.

Services take the acting user as an argument and never touch HTTP. Links in e-mails come from
a ``Links`` object the caller passes in (the web layer builds them with ``url_for``), so the
services do not know the URL map.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import func, select

from portal import events
from portal.accounts.models import STAFF_ROLES, Faculty, Role, Student, User, UserStatus
from portal.compliance.security import services as sessions
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.platform.email.services import queue_email
from portal.platform.gateway import services as rate_limits
from portal.platform.notifications.services import notify
from portal.security import passwords, tokens


class Links(Protocol):
    def verify_email(self, token: str) -> str: ...
    def reset_password(self, token: str) -> str: ...
    def accept_invite(self, token: str) -> str: ...
    def login(self) -> str: ...


class InvalidInput(DomainError):
    status_code = 422


# ---------------------------------------------------------------- helpers

def normalise_email(raw: str) -> str:
    """Lower-cased, syntax-checked e-mail (no DNS look-up), or InvalidInput on ``email``."""
    raw = (raw or "").strip()
    if not raw or len(raw) > 254:
        raise InvalidInput("Enter a valid e-mail address.", field="email")
    try:
        # Syntax only, no DNS look-up: delivery problems show up in the outbox instead.
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput(f"Enter a valid e-mail address: {exc}", field="email") from exc


def clean_name(raw: str) -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise InvalidInput("Enter your full name.", field="full_name")
    if len(name) > 120:
        raise InvalidInput("Use at most 120 characters.", field="full_name")
    if any(ch in name for ch in "<>\x00"):
        raise InvalidInput("The name may not contain < or >.", field="full_name")
    return name


def check_password(password: str, *, email: str = "", name: str = "", field: str = "password") -> None:
    problem = passwords.password_problem(password or "", email=email, name=name)
    if problem:
        raise InvalidInput(problem, field=field)


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email.lower()))


def has_password(user: User) -> bool:
    """Whether ``user`` has set a password, without reading its hash (which only its owner, the
    login step and system actors may read: migration 0008)."""
    if "password_hash" in user.__dict__:  # set or loaded in this session already
        return user.password_hash is not None
    return bool(db.session.scalar(select(func.user_has_password(user.id))))


def get_user(user_id: uuid.UUID) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("That account does not exist.")
    return user


def _student_number() -> str:
    alphabet = string.ascii_uppercase.replace("O", "").replace("I", "") + "23456789"
    return "AZ-" + "".join(secrets.choice(alphabet) for _ in range(8))


def _ensure_profile(user: User) -> None:
    if user.role == Role.STUDENT and user.student is None:
        user.student = Student(student_number=_student_number())
    if user.role == Role.FACULTY and user.faculty is None:
        user.faculty = Faculty()


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


def _stamp(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


# ---------------------------------------------------------------- registration

def register_student(email: str, full_name: str, password: str, links: Links) -> User | None:
    """Create a student account and e-mail a verification link.

    If the address is already registered, nothing is created and the owner of the address
    gets an e-mail saying so: the page looks the same either way, so the form cannot be used to
    find out who has an account (OWASP ASVS 2.2). Returns the new user, or None.
    """
    email = normalise_email(email)
    name = clean_name(full_name)
    check_password(password, email=email, name=name)
    existing = find_by_email(email)
    if existing is not None:
        # The same argon2 work as a new account, so the answer's timing does not tell either.
        passwords.hash_password(password)
        if not _may_email("already_registered", existing):
            return None
        queue_email(existing.email, "already_registered", user_id=existing.id, user=existing,
                    reset_url=links.reset_password(password_reset_token(existing)), login_url=links.login())
        return None
    user = User(email=email, full_name=name, role=Role.STUDENT, status=UserStatus.ACTIVE,
                password_hash=passwords.hash_password(password), password_changed_at=utcnow())
    _ensure_profile(user)
    db.session.add(user)
    db.session.flush()
    send_verification(user, links)
    events.user_registered.send(user=user)
    return user


def verification_token(user: User) -> str:
    return tokens.make_token(_secret(), "verify", {"u": str(user.id), "e": user.email})


def send_verification(user: User, links: Links) -> None:
    queue_email(user.email, "verify_email", user_id=user.id, user=user,
                verify_url=links.verify_email(verification_token(user)))


def _may_email(kind: str, user: User) -> bool:
    """Whether another e-mail of ``kind`` may go to ``user`` now. The forms that send them are
    open to anyone, so without a cap they could flood a person's inbox; past it the form still
    answers the same, and nothing is sent (MAIL_PER_ADDRESS_PER_HOUR)."""
    window = rate_limits.hit(_address_key(f"mail:{kind}", user.email), 3600)
    return window.count <= current_app.config["MAIL_PER_ADDRESS_PER_HOUR"]


def resend_verification(email: str, links: Links) -> None:
    """Send a new link if the address belongs to an unverified account; silent otherwise."""
    try:
        email = normalise_email(email)
    except InvalidInput:
        return
    user = find_by_email(email)
    if (user is not None and user.email_verified_at is None and user.status == UserStatus.ACTIVE
            and _may_email("verify_email", user)):
        send_verification(user, links)


def verify_email(token: str) -> User:
    try:
        data = tokens.read_token(_secret(), "verify", token, current_app.config["EMAIL_VERIFY_MAX_AGE"])
        user = db.session.get(User, uuid.UUID(str(data.get("u"))))
    except tokens.TokenInvalid as exc:
        raise InvalidInput("This link has expired. Log in to get a new one." if exc.expired
                           else "This link is not valid.") from exc
    except ValueError as exc:
        raise InvalidInput("This link is not valid.") from exc
    if user is None or user.email != data.get("e"):
        raise InvalidInput("This link is not valid.")
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        notify(user.id, "account", "Welcome to Azora", "Your e-mail address is confirmed.", "/")
        events.email_verified.send(user=user)
    return user


# ---------------------------------------------------------------- login

@dataclass
class LoginResult:
    user: User | None = None
    token: str | None = None
    error: str | None = None
    #: ``unverified`` lets the page offer to resend the verification link.
    reason: str | None = None
    retry_after: int | None = None
    #: After a successful login: a new device token for the client to keep (``DEVICE_PURPOSE``).
    device: str | None = None


def _address_key(prefix: str, email: str) -> str:
    key = f"{prefix}:{email}"
    if len(key) > 200:  # rate_limits.key holds 200 characters; an address may have 254
        key = f"{prefix}:sha256:" + hashlib.sha256(email.encode()).hexdigest()
    return key


#: The signed token of a device that has logged in to an account (a cookie the web layer keeps).
DEVICE_PURPOSE = "login-device"


@dataclass(frozen=True)
class _LoginKeys:
    """The rate-limit counters one login attempt reads and counts against."""

    account: str  # failures on the account from untrusted clients, everywhere: paces attempts
    pair: str  # failures on the account from this one address: refuses that address
    ip: str  # failures from this address on any account: refuses the address
    device: str | None  # failures with this device token: past the limit it is trusted no more

    @classmethod
    def of(cls, email: str, ip: str | None, device_nonce: str | None) -> _LoginKeys:
        return cls(account=_address_key("login:account", email), pair=_pair_prefix(email) + (ip or "unknown"),
                   ip=f"login:ip:{ip or 'unknown'}",
                   device=f"login:device:{device_nonce}" if device_nonce else None)


def _pair_prefix(email: str) -> str:
    return "login:pair:" + hashlib.sha256(email.encode()).hexdigest()[:32] + ":"


def device_token(user: User) -> str:
    """A signed token naming ``user`` and a random nonce (the nonce keys the token's own
    failure counter): a client showing it has logged in to this account before."""
    return tokens.make_token(_secret(), DEVICE_PURPOSE, {"u": str(user.id), "n": secrets.token_urlsafe(12)})


def _trusted_nonce(device: str | None, user: User | None) -> str | None:
    """The nonce of a valid, unexpired device token issued for ``user``, or None."""
    if not device or user is None:
        return None
    max_age = current_app.config["LOGIN_DEVICE_DAYS"] * 24 * 3600
    try:
        data = tokens.read_token(_secret(), DEVICE_PURPOSE, device[:500], max_age)
    except tokens.TokenInvalid:
        return None
    nonce = data.get("n")
    if data.get("u") != str(user.id) or not isinstance(nonce, str) or not 8 <= len(nonce) <= 40:
        return None
    return nonce


def _wait_text(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = (seconds + 59) // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def pace_delay(failures: int, config) -> float:
    """Seconds an untrusted client must wait before the next attempt on an account that has
    had ``failures`` failed logins from untrusted clients: none below ``LOGIN_SLOWDOWN_AFTER``,
    then 1, 2, 4, ... seconds, at most ``LOGIN_MAX_DELAY_SECONDS``."""
    over = failures - config["LOGIN_SLOWDOWN_AFTER"]
    if over < 0:
        return 0
    return min(2.0 ** min(over, 30), config["LOGIN_MAX_DELAY_SECONDS"])


def _refusal(keys: _LoginKeys, current: dict, config) -> LoginResult | None:
    """Why an untrusted client may not try now, or None.

    One address is refused outright past its limits (per account and over all accounts): that
    is what stops a guesser working from one place, and it touches no one else. An account
    guessed at from many addresses is not locked, which would lock its owner out too: each
    attempt from an untrusted client must wait its turn, longer with every failure, and only
    one of concurrent attempts gets each turn."""
    for key, limit in ((keys.ip, config["LOGIN_MAX_FAILURES_PER_IP"]),
                       (keys.pair, config["LOGIN_MAX_FAILURES_PER_ACCOUNT"])):
        window = current.get(key)
        if window is not None and window.count >= limit:
            return LoginResult(error=f"Too many failed attempts. Try again in {_wait_text(window.retry_after)}, "
                                     "or reset your password.", reason="throttled", retry_after=window.retry_after)
    account = current.get(keys.account)
    delay = pace_delay(account.count, config) if account is not None else 0
    if delay <= 0:
        return None
    wait = delay - account.seconds_since_last()
    if wait <= 0 and rate_limits.claim(keys.account, config["LOGIN_SLOWDOWN_WINDOW_SECONDS"], delay):
        return None
    retry_after = max(1, math.ceil(wait if wait > 0 else delay))
    return LoginResult(error=f"This account has had many failed logins, so each attempt must wait its turn. Try "
                             f"again in {_wait_text(retry_after)}, or reset your password. A browser you have "
                             "logged in with before is not kept waiting.", reason="throttled", retry_after=retry_after)


def authenticate(email: str, password: str, *, ip: str | None, user_agent: str | None,
                 policy: sessions.SessionPolicy, device: str | None = None) -> LoginResult:
    """Check credentials and start a session.

    Returns a result rather than raising, because a failed attempt must still be committed
    (it counts toward throttling). Every message a stranger can see is the same whether or not
    the account exists.

    Throttling follows OWASP's device-cookie design (ASVS 6.3.1): a guesser cannot lock the
    owner out. ``device`` is the token a client was given at an earlier successful login to
    this account; such a client is trusted and only its own failures count against it (up to
    ``LOGIN_MAX_FAILURES_PER_ACCOUNT``, then it is treated as any other). Untrusted clients are
    refused per address (``_refusal``) and paced per account; past a limit no password is even
    checked. A successful login clears the account's counters and hands out a new token.
    """
    config = current_app.config
    window = config["LOGIN_THROTTLE_WINDOW_SECONDS"]
    try:
        email = normalise_email(email)
    except InvalidInput:
        return LoginResult(error="E-mail or password is wrong.", reason="bad_credentials")
    user = find_by_email(email)
    nonce = _trusted_nonce(device, user)
    keys = _LoginKeys.of(email, ip, nonce)
    windows = {keys.ip: window, keys.pair: window, keys.account: config["LOGIN_SLOWDOWN_WINDOW_SECONDS"]}
    if keys.device:
        windows[keys.device] = window
    current = rate_limits.peek_windows(windows)
    trusted = keys.device is not None and (
        keys.device not in current or current[keys.device].count < config["LOGIN_MAX_FAILURES_PER_ACCOUNT"])
    if not trusted and (refused := _refusal(keys, current, config)) is not None:
        events.login_failed.send(email=email, ip=ip, reason="throttled")
        return refused

    if not passwords.verify_password(user.password_hash if user else None, (password or "")[:1000]):
        if trusted:
            rate_limits.hit(keys.device, window)
        else:
            rate_limits.hit(keys.pair, window)
            rate_limits.hit(keys.ip, window)
            rate_limits.hit(keys.account, config["LOGIN_SLOWDOWN_WINDOW_SECONDS"])
        events.login_failed.send(email=email, ip=ip, reason="bad_credentials")
        return LoginResult(error="E-mail or password is wrong.", reason="bad_credentials")

    # The password is right: now it is safe to say what else stands in the way.
    if user.status == UserStatus.DEACTIVATED:
        events.login_failed.send(email=email, ip=ip, reason="inactive")
        return LoginResult(error="This account has been deactivated. Contact an administrator.", reason="inactive")
    if user.status == UserStatus.INVITED:
        return LoginResult(error="Accept the invitation e-mailed to you to set your password first.",
                           reason="invited")
    if user.email_verified_at is None:
        return LoginResult(error="Confirm your e-mail address first: open the link we e-mailed you.",
                           reason="unverified")

    for key in (keys.account, keys.pair, keys.device):
        if key is not None:
            rate_limits.reset(key)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_login_at = utcnow()
    token = sessions.start_session(user, ip=ip, user_agent=user_agent, policy=policy)
    events.user_logged_in.send(user=user, ip=ip, user_agent=user_agent)
    return LoginResult(user=user, token=token, device=device_token(user))


def logout(token: str | None) -> None:
    sessions.end_session(token, "logout")


# ---------------------------------------------------------------- passwords

def confirm_password(user: User, password: str | None, *, field: str = "password") -> None:
    """Re-verify a logged-in user's password before a sensitive step (revealing a card number);
    raises with a message for ``field`` when it is not right."""
    if not password or not passwords.verify_password(user.password_hash, password):
        raise InvalidInput("Your password is not right.", field=field)


def change_password(user: User, current_password: str, new_password: str, *, keep_token: str | None) -> None:
    """Change the password and end every other session of the user."""
    if not passwords.verify_password(user.password_hash, current_password or ""):
        raise InvalidInput("Your current password is not right.", field="current_password")
    check_password(new_password, email=user.email, name=user.full_name, field="new_password")
    if passwords.verify_password(user.password_hash, new_password):
        raise InvalidInput("Choose a password different from the current one.", field="new_password")
    _set_password(user, new_password)
    sessions.end_user_sessions(user.id, "password_changed", keep_token=keep_token)
    notify(user.id, "account", "Your password was changed",
           "If this was not you, reset your password at once.", None)
    events.password_changed.send(user=user, via="change")


def _set_password(user: User, password: str) -> None:
    user.password_hash = passwords.hash_password(password)
    user.password_changed_at = utcnow()


def password_reset_token(user: User) -> str:
    return tokens.make_token(_secret(), "reset", {"u": str(user.id), "p": _stamp(user.password_changed_at)})


def request_password_reset(email: str, links: Links) -> None:
    """E-mail a reset link if the account exists and may log in; silent either way."""
    try:
        email = normalise_email(email)
    except InvalidInput:
        return
    user = find_by_email(email)
    if user is None or user.status != UserStatus.ACTIVE or not _may_email("reset_password", user):
        return
    queue_email(user.email, "reset_password", user_id=user.id, user=user,
                reset_url=links.reset_password(password_reset_token(user)))


def _user_for_token(purpose: str, token: str, max_age: int) -> User:
    try:
        data = tokens.read_token(_secret(), purpose, token, max_age)
        user = db.session.get(User, uuid.UUID(str(data.get("u"))))
    except tokens.TokenInvalid as exc:
        raise InvalidInput("This link has expired. Ask for a new one." if exc.expired
                           else "This link is not valid.") from exc
    except ValueError as exc:
        raise InvalidInput("This link is not valid.") from exc
    # A link stops working once the password changes (single use).
    if user is None or data.get("p") != _stamp(user.password_changed_at):
        raise InvalidInput("This link has already been used or is not valid. Ask for a new one.")
    return user


def check_reset_token(token: str) -> User:
    return _user_for_token("reset", token, current_app.config["PASSWORD_RESET_MAX_AGE"])


def reset_password(token: str, new_password: str) -> User:
    user = check_reset_token(token)
    if user.status != UserStatus.ACTIVE:
        raise InvalidInput("This account cannot log in. Contact an administrator.")
    check_password(new_password, email=user.email, name=user.full_name, field="new_password")
    _set_password(user, new_password)
    # Reading the e-mail proves ownership of the address.
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    sessions.end_user_sessions(user.id, "password_reset")
    # The owner proved who they are: failed guesses by others no longer hold them back.
    rate_limits.reset(_address_key("login:account", user.email))
    rate_limits.reset_prefix(_pair_prefix(user.email))
    events.password_changed.send(user=user, via="reset")
    return user


# ---------------------------------------------------------------- staff accounts (admins)

def _require_admin(actor: User) -> None:
    if actor.role != Role.ADMIN or not actor.is_active:
        raise Forbidden("Only administrators manage accounts.")


def invite_token(user: User) -> str:
    return tokens.make_token(_secret(), "invite", {"u": str(user.id), "p": _stamp(user.password_changed_at)})


def create_staff(actor: User | None, email: str, full_name: str, role: Role | str, links: Links | None,
                 *, password: str | None = None) -> User:
    """A faculty, compliance or admin account.

    From the admin pages (``actor`` an admin, no password) the account is ``invited`` and the
    person gets a link to choose their password. From the CLI (``actor`` None, a password) it
    is active at once.
    """
    if actor is not None:
        _require_admin(actor)
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidInput("Choose a role.", field="role") from exc
    if role not in STAFF_ROLES:
        raise InvalidInput("Students register themselves; choose a staff role.", field="role")
    email = normalise_email(email)
    name = clean_name(full_name)
    if find_by_email(email) is not None:
        raise InvalidInput("An account with this e-mail already exists.", field="email")
    if password is not None:
        check_password(password, email=email, name=name)
    elif links is None:
        raise InvalidInput("A staff account without a password needs an invitation link.")
    user = User(email=email, full_name=name, role=role, status=UserStatus.INVITED)
    if password is not None:
        _set_password(user, password)
        user.status = UserStatus.ACTIVE
        user.email_verified_at = utcnow()
    _ensure_profile(user)
    db.session.add(user)
    db.session.flush()
    if user.status == UserStatus.INVITED:
        queue_email(user.email, "invite", user_id=user.id, user=user, inviter=actor,
                    accept_url=links.accept_invite(invite_token(user)))
    events.account_changed.send(user=user, actor=actor, change="created")
    return user


def check_invite(token: str) -> User:
    user = _user_for_token("invite", token, current_app.config["INVITE_MAX_AGE"])
    if user.status == UserStatus.DEACTIVATED:
        raise InvalidInput("This account has been deactivated. Contact an administrator.")
    if user.status != UserStatus.INVITED:
        raise InvalidInput("This invitation has already been accepted. Log in instead.")
    return user


def accept_invite(token: str, new_password: str) -> User:
    user = check_invite(token)
    check_password(new_password, email=user.email, name=user.full_name, field="new_password")
    _set_password(user, new_password)
    user.move_to(UserStatus.ACTIVE)
    user.email_verified_at = user.email_verified_at or utcnow()
    events.password_changed.send(user=user, via="invite")
    return user


def resend_invite(actor: User, user_id: uuid.UUID, links: Links) -> User:
    _require_admin(actor)
    user = get_user(user_id)
    if user.status != UserStatus.INVITED:
        raise Conflict("Only an account whose invitation is pending can get a new one.")
    queue_email(user.email, "invite", user_id=user.id, user=user, inviter=actor,
                accept_url=links.accept_invite(invite_token(user)))
    return user


def _lock_admins(actor: User) -> None:
    """Lock the active administrators' rows and check the actor is still one of them.

    Two administrators removing each other at the same moment would otherwise leave none: the
    second waits here for the first to commit, then finds it is no longer an administrator.
    As long as the actor stays an active administrator, at least one remains.
    """
    admins = set(db.session.scalars(
        select(User.id).where(User.role == Role.ADMIN, User.status == UserStatus.ACTIVE)
        .order_by(User.id).with_for_update()
    ))
    if actor.id not in admins:
        raise Forbidden("Only administrators manage accounts.")


def change_role(actor: User, user_id: uuid.UUID, role: Role | str) -> User:
    _require_admin(actor)
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidInput("Choose a role.", field="role") from exc
    user = get_user(user_id)
    if user.id == actor.id:
        raise Forbidden("You cannot change your own role; ask another administrator.")
    if user.role == role:
        return user
    _lock_admins(actor)
    old = user.role
    user.role = role
    _ensure_profile(user)
    sessions.end_user_sessions(user.id, "role_changed")
    notify(user.id, "account", f"Your role is now {role.label}",
           f"An administrator changed your role from {old.label} to {role.label}.", "/")
    events.account_changed.send(user=user, actor=actor, change="role")
    return user


def deactivate(actor: User, user_id: uuid.UUID) -> User:
    _require_admin(actor)
    user = get_user(user_id)
    if user.id == actor.id:
        raise Forbidden("You cannot deactivate your own account.")
    _lock_admins(actor)
    user.move_to(UserStatus.DEACTIVATED)
    sessions.end_user_sessions(user.id, "deactivated")
    events.account_changed.send(user=user, actor=actor, change="deactivated")
    return user


def reactivate(actor: User, user_id: uuid.UUID) -> User:
    _require_admin(actor)
    user = get_user(user_id)
    # An account deactivated before accepting its invitation goes back to invited.
    user.move_to(UserStatus.ACTIVE if has_password(user) else UserStatus.INVITED)
    events.account_changed.send(user=user, actor=actor, change="reactivated")
    return user
