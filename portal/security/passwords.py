"""Password hashing with argon2id (argon2-cffi), and the password policy."""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 200  # argon2 takes any length; this bounds the work an attacker can ask for

_hasher = PasswordHasher()
#: A hash of a random password, verified against when the account does not exist, so a
#: failed login takes the same time whether or not the e-mail is known.
_dummy_hash: str | None = None


def configure(time_cost: int, memory_cost: int) -> None:
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1)
    _dummy_hash = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    global _dummy_hash
    if not password_hash:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash("not-a-real-password-0123456789")
        password_hash = _dummy_hash
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(password_hash, password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why ``password`` is not acceptable, or None. Length first (NIST SP 800-63B), plus the
    obvious: not the e-mail or the name."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    if email and lowered == email.lower() or email and lowered == email.split("@")[0].lower():
        return "Do not use your e-mail address as your password."
    if name and lowered.replace(" ", "") == name.lower().replace(" ", ""):
        return "Do not use your name as your password."
    if len(set(password)) < 4:
        return "Use a password with more different characters."
    return None
