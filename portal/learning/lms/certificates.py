"""Course certificates: issued on completion, signed, chained, verified by anyone, revoked by staff.

Each certificate's ``payload`` is canonical JSON (sorted keys, no spaces, ASCII) of what it
states; ``signature`` is the Ed25519 signature of that payload (portal.security.signing). The
register is a hash chain in ``serial`` order::

    entry_hash = sha256(previous_hash + payload + signature)      (hex, over UTF-8)
    previous_hash = the entry_hash of the certificate before it     ("0" * 64 for the first)

so changing, removing or reordering any certificate breaks every link after it. Issuing takes a
transaction-level advisory lock before reading the last entry, so concurrent completions queue
up and the chain stays a line. Revoking sets the revocation columns only: a revoked certificate
stays in the chain, and its signature still verifies (the page says it is revoked).

The receiver of ``course_completed`` (connected when this module is imported) issues the
certificate in the emitter's transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select, text

from portal import events
from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, NotFound
from portal.learning.education.models import Course
from portal.learning.lms import access
from portal.learning.lms.models import Certificate
from portal.pagination import Page, keyset_page
from portal.platform.notifications.services import notify
from portal.security import signing

GENESIS_HASH = "0" * 64
ISSUER = "Azora Portal"
#: Version of the payload's shape, signed with it.
PAYLOAD_VERSION = 1
#: ``pg_advisory_xact_lock`` key that serialises appends to the register (a fixed number, the
#: first 8 bytes of sha256("azora:certificates") as a signed 64-bit integer).
CHAIN_LOCK_KEY = int.from_bytes(hashlib.sha256(b"azora:certificates").digest()[:8], "big", signed=True)
#: Where a certificate's public page lives (blueprints/learning/certificates.py; a test keeps
#: the two in step). Notifications store relative links.
VERIFY_PATH = "/learning/certificates/{code}"
MAX_REASON = 500
PAGE_SIZE = 20


def current_signer() -> signing.Signer:
    return signing.load_signer(current_app.config.get("CERTIFICATE_SIGNING_KEY"))


# ------------------------------------------------------------------ payload and hashes


def canonical_json(fields: dict) -> str:
    """One text for one set of fields: sorted keys, no spaces, ASCII only."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def payload_fields(*, code: str, user_id: uuid.UUID, course_id: uuid.UUID, holder_name: str, course_title: str,
                   issued_at: datetime, key_id: str) -> dict:
    """What a certificate states. The serial is not in it: it is given by the database on insert."""
    return {
        "v": PAYLOAD_VERSION,
        "issuer": ISSUER,
        "code": code,
        "user_id": str(user_id),
        "course_id": str(course_id),
        "holder_name": holder_name,
        "course_title": course_title,
        "issued_at": issued_at.isoformat(),
        "key_id": key_id,
    }


def entry_hash(previous_hash: str, payload: str, signature: str) -> str:
    return hashlib.sha256((previous_hash + payload + signature).encode("utf-8")).hexdigest()


def new_code() -> str:
    """A public, unguessable, URL-safe code (96 random bits)."""
    return secrets.token_urlsafe(12)


# ------------------------------------------------------------------ issuing


def issue_certificate(user: User, course: Course, *, signer: signing.Signer | None = None) -> Certificate:
    """The user's certificate for the course, issued now unless it already exists.

    Runs in the caller's transaction and flushes; the caller commits."""
    existing = _certificate_of(user.id, course.id)
    if existing is not None:
        return existing
    signer = signer or current_signer()
    # Appends queue up here until the transaction that holds the lock ends, so each one reads
    # the entry committed just before it. Re-check afterwards: a concurrent completion of the
    # same course by the same student may have issued it meanwhile.
    db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    existing = _certificate_of(user.id, course.id)
    if existing is not None:
        return existing
    previous = db.session.scalar(select(Certificate.entry_hash).order_by(Certificate.serial.desc()).limit(1))
    previous = previous or GENESIS_HASH

    code = new_code()
    issued_at = utcnow().replace(microsecond=0)
    payload = canonical_json(payload_fields(
        code=code, user_id=user.id, course_id=course.id, holder_name=user.full_name, course_title=course.title,
        issued_at=issued_at, key_id=signer.key_id,
    ))
    signature = signer.sign(payload.encode("utf-8"))
    certificate = Certificate(
        code=code, user_id=user.id, course_id=course.id, holder_name=user.full_name, course_title=course.title,
        issued_at=issued_at, payload=payload, signature=signature, key_id=signer.key_id,
        previous_hash=previous, entry_hash=entry_hash(previous, payload, signature),
    )
    db.session.add(certificate)
    db.session.flush()
    notify(user.id, "certificate", f"Your certificate for {course.title} is ready",
           "Anyone can check it with its code; download the PDF from its page.",
           VERIFY_PATH.format(code=code))
    events.certificate_issued.send(user=user, certificate=certificate)
    return certificate


def _certificate_of(user_id: uuid.UUID, course_id: uuid.UUID) -> Certificate | None:
    return db.session.scalar(
        select(Certificate).where(Certificate.user_id == user_id, Certificate.course_id == course_id)
    )


# ------------------------------------------------------------------ reading


def get_by_code(code: str) -> Certificate:
    certificate = db.session.scalar(select(Certificate).where(Certificate.code == code)) if len(code) <= 40 else None
    if certificate is None:
        raise NotFound("No certificate has that code. Check it and try again.")
    return certificate


def certificates_of(user: User, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """The user's own certificates, newest first."""
    stmt = select(Certificate).where(Certificate.user_id == user.id)
    return keyset_page(stmt, Certificate.created_at, Certificate.id, cursor, size)


def may_revoke(user: User | None, certificate: Certificate) -> bool:
    return user is not None and access.may(user, certificate.course_id, access.CAN_RELEASE)


# ------------------------------------------------------------------ verifying


@dataclass
class Verification:
    """What a live check of one certificate found. ``problems`` is empty when all is well."""

    signature_valid: bool
    #: The columns shown (holder, course, date, code, ids) say what the signed payload says.
    record_matches: bool
    hash_valid: bool
    #: The entry links to the one before it (None: not checked).
    link_valid: bool | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_certificate(certificate: Certificate, public_key, key_id: str,
                       expected_previous: str | None = None) -> Verification:
    """Check one certificate against the public key ``key_id`` names; with
    ``expected_previous`` (the entry hash before it, or GENESIS_HASH) check its link too."""
    problems: list[str] = []
    if certificate.key_id != key_id:
        problems.append(f"signed with key {certificate.key_id}, not the portal's key {key_id}")
        signature_valid = False
    else:
        signature_valid = signing.verify(public_key, certificate.payload.encode("utf-8"), certificate.signature)
        if not signature_valid:
            problems.append("the signature does not match the payload")

    mismatched = _record_mismatches(certificate)
    if mismatched:
        problems.append("the record differs from what was signed: " + ", ".join(mismatched))

    hash_valid = entry_hash(certificate.previous_hash, certificate.payload, certificate.signature) == certificate.entry_hash
    if not hash_valid:
        problems.append("the entry hash does not match its contents")

    link_valid = None
    if expected_previous is not None:
        link_valid = certificate.previous_hash == expected_previous
        if not link_valid:
            problems.append("the previous hash does not link to the entry before it")
    return Verification(signature_valid, not mismatched, hash_valid, link_valid, problems)


def _record_mismatches(certificate: Certificate) -> list[str]:
    try:
        signed = json.loads(certificate.payload)
        if not isinstance(signed, dict):
            raise ValueError("not an object")
    except ValueError:
        return ["payload (not readable JSON)"]
    expected = {
        "code": certificate.code,
        "user_id": str(certificate.user_id),
        "course_id": str(certificate.course_id),
        "holder_name": certificate.holder_name,
        "course_title": certificate.course_title,
        "key_id": certificate.key_id,
        "issuer": ISSUER,
    }
    wrong = [name for name, value in expected.items() if signed.get(name) != value]
    try:
        if datetime.fromisoformat(str(signed.get("issued_at"))) != certificate.issued_at:
            wrong.append("issued_at")
    except (TypeError, ValueError):
        wrong.append("issued_at")
    return wrong


def previous_entry_hash(certificate: Certificate) -> str:
    """The entry hash of the certificate before this one in the register (GENESIS_HASH for the first)."""
    found = db.session.scalar(
        select(Certificate.entry_hash).where(Certificate.serial < certificate.serial)
        .order_by(Certificate.serial.desc()).limit(1)
    )
    return found or GENESIS_HASH


def check_one(certificate: Certificate, signer: signing.Signer | None = None) -> Verification:
    """The live check the public page shows: signature, record, hash and the link back."""
    signer = signer or current_signer()
    return verify_certificate(certificate, signer.public_key, signer.key_id, previous_entry_hash(certificate))


@dataclass
class RegisterReport:
    total: int = 0
    revoked: int = 0
    valid: int = 0
    #: ``(serial, code, problem)`` in register order.
    problems: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_register(certificates: Iterable[Certificate], public_key, key_id: str) -> RegisterReport:
    """Walk ``certificates`` in serial order: every signature, record, hash and link."""
    report = RegisterReport()
    expected_previous = GENESIS_HASH
    last_serial = None
    for certificate in certificates:
        report.total += 1
        if certificate.revoked_at is not None:
            report.revoked += 1
        if last_serial is not None and certificate.serial <= last_serial:
            report.problems.append((certificate.serial, certificate.code, "out of serial order"))
        result = verify_certificate(certificate, public_key, key_id, expected_previous)
        if result.ok:
            report.valid += 1
        report.problems.extend((certificate.serial, certificate.code, problem) for problem in result.problems)
        expected_previous = certificate.entry_hash
        last_serial = certificate.serial
    return report


def whole_register() -> Iterable[Certificate]:
    """Every certificate in serial order, read in batches."""
    stmt = select(Certificate).order_by(Certificate.serial).execution_options(yield_per=500)
    return db.session.scalars(stmt)


# ------------------------------------------------------------------ revoking


def revoke_certificate(actor: User, code: str, reason: str) -> Certificate:
    """Revoke a certificate: course staff who may release grades, or an admin. It stays in the
    register; its page says it is revoked, why and when."""
    certificate = get_by_code(code)
    access.require(actor, certificate.course_id, access.CAN_RELEASE, "revoke this course's certificates")
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why the certificate is revoked: the reason is shown on its public page.",
                          field="reason")
    if len(reason) > MAX_REASON:
        raise DomainError(f"Keep the reason within {MAX_REASON} characters.", field="reason")
    if certificate.revoked_at is not None:
        raise Conflict("This certificate is already revoked.")
    certificate.revoked_at = utcnow()
    certificate.revoked_reason = reason
    certificate.revoked_by_id = actor.id
    db.session.flush()
    notify(certificate.user_id, "certificate", f"Your certificate for {certificate.course_title} was revoked",
           reason, VERIFY_PATH.format(code=certificate.code))
    return certificate


# ------------------------------------------------------------------ command line


@click.group("certificates", help="The certificate register.")
def certificates_command():
    pass


@certificates_command.command("verify", help=(
    "Check every certificate in serial order: its signature against the configured key, that its "
    "record says what was signed, its entry hash and its link to the one before. Exits 1 on any problem."))
@with_appcontext
def verify_command():
    from portal.db import CLI_ACTOR
    from portal.db.context import acting_as

    try:
        signer = current_signer()
    except signing.SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    with acting_as(CLI_ACTOR):  # reads only
        report = verify_register(whole_register(), signer.public_key, signer.key_id)
    click.echo(f"Key {signer.key_id}: {report.total} certificates, {report.valid} valid, "
               f"{report.revoked} revoked, {len(report.problems)} problems.")
    for serial, code, problem in report.problems:
        click.echo(f"  #{serial} {code}: {problem}", err=True)
    if not report.ok:
        raise SystemExit(1)
    click.echo("The register is intact.")


@certificates_command.command("new-key", help="Print a new CERTIFICATE_SIGNING_KEY value (keep it secret).")
def new_key_command():
    click.echo(signing.generate_key())
