"""Demo data: one account per role and a handful of students, and ``--scale N`` for more
(from ``LEARNING_SCALE`` students on, also a catalog of a thousand courses and one large course
with a full gradebook: ``portal.learning.demo.seed_learning_scale``). Money (pairs and rates,
fee rules, milestones, balances and transfers, and at scale a ledger history for every scale
student) comes from ``portal.money.demo``.

The demo password is made at random the first time and kept in ``instance/demo-logins.txt``
(never in the repository); every run prints it.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import click
from flask.cli import with_appcontext
from sqlalchemy import func, insert, select

from portal.accounts.models import Faculty, Role, Student, User, UserStatus
from portal.compliance.aml import watchlist as aml_watchlist
from portal.config import INSTANCE_DIR
from portal.db import db
from portal.db.base import utcnow
from portal.platform.notifications.services import notify
from portal.security import passwords

CREDENTIALS_FILE = INSTANCE_DIR / "demo-logins.txt"

#: From this many scale students on, ``--scale`` also builds the learning data at scale.
LEARNING_SCALE = 500
#: The counts of that learning data (parameters of ``seed_learning_scale``, plus ``students``:
#: how many of the scale students are enrolled in the large course).
LEARNING_COUNTS = {"catalog": 1000, "students": 500, "assignments": 20, "quizzes": 10}

#: (e-mail, name, role) of the fixed demo accounts.
ACCOUNTS = [
    ("admin@azora.example", "Demo Admin", Role.ADMIN),
    ("faculty@azora.example", "Demo Faculty", Role.FACULTY),
    ("compliance@azora.example", "Demo Compliance Officer", Role.COMPLIANCE),
    ("student@azora.example", "Demo Student", Role.STUDENT),
    *[(f"student{n}@azora.example", f"Demo Student {n}", Role.STUDENT) for n in range(1, 6)],
]


def demo_password() -> str:
    if CREDENTIALS_FILE.exists():
        for line in CREDENTIALS_FILE.read_text().splitlines():
            if line.startswith("password="):
                return line.split("=", 1)[1]
    password = "demo-" + secrets.token_urlsafe(9)
    CREDENTIALS_FILE.parent.mkdir(parents=True, exist_ok=True)
    CREDENTIALS_FILE.write_text(f"password={password}\n")
    CREDENTIALS_FILE.chmod(0o600)
    return password


def _sync_passwords(password: str, password_hash: str) -> set[str]:
    """The e-mails of the demo accounts that exist, each made to accept the printed password
    (the file under instance/ may be newer than the database), so the logins shown work."""
    users = db.session.scalars(select(User).where(User.email.in_([a[0] for a in ACCOUNTS]))).all()
    for user in users:
        if not passwords.verify_password(user.password_hash, password):
            user.password_hash = password_hash
            user.password_changed_at = utcnow()
    return {user.email for user in users}


def _student_number(n: int) -> str:
    return f"AZ-D{n:07d}"


def learning_units(scale: int, learning: dict | None = None) -> int:
    """How many steps the learning data at ``scale`` reports to a progress bar (0 below the
    threshold)."""
    if learning is None and scale < LEARNING_SCALE:
        return 0
    counts = {**LEARNING_COUNTS, **(learning or {})}
    return counts["catalog"] + min(counts["students"], scale)


def seed(scale: int = 0, progress=None, learning: dict | None = None,
         money_progress=None) -> list[tuple[str, str, str]]:
    """Create what is missing; returns the demo logins (e-mail, role, password).

    ``learning``: counts replacing ``LEARNING_COUNTS`` (the learning data is then built whatever
    the scale); without it, the learning data at scale comes from ``LEARNING_SCALE`` students on.
    ``money_progress.update(n)`` is told as scale students get their wallets and history
    (``portal.money.demo.seed_money_scale``)."""
    password = demo_password()
    password_hash = passwords.hash_password(password)
    now = utcnow()
    existing = _sync_passwords(password, password_hash)
    for index, (email, name, role) in enumerate(ACCOUNTS):
        if email in existing:
            continue
        user = User(email=email, full_name=name, role=role, status=UserStatus.ACTIVE,
                    password_hash=password_hash, email_verified_at=now, password_changed_at=now)
        if role == Role.STUDENT:
            user.student = Student(student_number=_student_number(index + 1), country="ZA")
        if role == Role.FACULTY:
            user.faculty = Faculty(department="Computer Science", title="Lecturer")
        db.session.add(user)
        db.session.flush()
        notify(user.id, "account", "Welcome to Azora Portal",
               "This is a demo account. Explore your dashboard to get started.", "/")
    _seed_learning()
    _seed_money()
    _seed_kyc()
    aml_watchlist.seed_sample_if_empty()
    if scale:
        _seed_scale(scale, password_hash, progress)
        _seed_money_scale(money_progress)
    if learning_units(scale, learning):
        _seed_learning_scale(password_hash, {**LEARNING_COUNTS, **(learning or {})}, progress)
    return [(email, role.value, password) for email, _, role in ACCOUNTS]


def _seed_kyc() -> None:
    """Demo identity verifications in every state (the demo student at level 2), and a monitoring
    case from a structured series of transfers."""
    from portal.compliance.kyc.demo import seed_kyc, seed_monitoring_case

    users = db.session.scalars(select(User).where(User.email.in_([a[0] for a in ACCOUNTS]))).all()
    by_email = {u.email: u for u in users}
    seed_kyc([by_email["compliance@azora.example"], by_email["admin@azora.example"]],
             [u for u in users if u.role == Role.STUDENT])
    if "student5@azora.example" in by_email and "student3@azora.example" in by_email:
        seed_monitoring_case(by_email["student5@azora.example"], by_email["student3@azora.example"])


def _seed_learning() -> None:
    """The demo courses, taught by the demo faculty member, with the demo students in them."""
    from portal.learning.demo import seed_learning

    by_email = {u.email: u for u in db.session.scalars(select(User).where(User.email.in_([a[0] for a in ACCOUNTS])))}
    teacher = by_email["faculty@azora.example"]
    students = [by_email[email] for email, _, role in ACCOUNTS if role == Role.STUDENT and email in by_email]
    seed_learning(teacher, students)


def _seed_money() -> None:
    """Pairs and rates, fee rules and milestones (made by the demo admin), the demo students'
    opening balances and a few transfers between them, and the billing plans (Free, Plus, Pro)."""
    from portal.money.demo import seed_money

    by_email = {u.email: u for u in db.session.scalars(select(User).where(User.email.in_([a[0] for a in ACCOUNTS])))}
    students = [by_email[email] for email, _, role in ACCOUNTS if role == Role.STUDENT and email in by_email]
    seed_money(by_email["admin@azora.example"], students)
    from portal.money.billing.demo import seed_plans

    seed_plans(by_email["admin@azora.example"])


def _seed_money_scale(progress) -> None:
    """A funded AZR and USD wallet and a hundred ledger rows for each scale student."""
    from portal.money.demo import seed_money_scale

    seed_money_scale(progress)


def _seed_learning_scale(password_hash: str, counts: dict, progress) -> None:
    """The catalog and the large course (owned by the demo faculty member), its students the
    first of the scale students."""
    from portal.learning.demo import seed_learning_scale

    teacher = db.session.scalar(select(User).where(User.email == "faculty@azora.example"))
    students = list(db.session.scalars(select(User.id).where(User.email.like("scale%@azora.example"))
                                       .order_by(User.email).limit(counts["students"])))
    seed_learning_scale(teacher, students, password_hash, catalog=counts["catalog"],
                        assignments=counts["assignments"], quizzes=counts["quizzes"], progress=progress)


def _seed_scale(count: int, password_hash: str, progress) -> None:
    """``count`` more students, inserted in batches (one hash shared: hashing each would take
    minutes and prove nothing)."""
    have = db.session.scalar(select(func.count()).select_from(User).where(User.email.like("scale%@azora.example")))
    batch = 1000
    start = utcnow() - timedelta(days=365)
    for first in range(have, count, batch):
        users, students = [], []
        for n in range(first, min(first + batch, count)):
            uid = uuid.uuid4()
            stamp = start + timedelta(minutes=n)
            users.append({"id": uid, "email": f"scale{n:06d}@azora.example", "full_name": f"Scale Student {n:06d}",
                          "password_hash": password_hash, "role": Role.STUDENT, "status": UserStatus.ACTIVE,
                          "email_verified_at": stamp, "password_changed_at": stamp,
                          "created_at": stamp, "updated_at": stamp})
            students.append({"id": uuid.uuid4(), "user_id": uid, "student_number": f"AZ-S{n:07d}",
                             "created_at": stamp, "updated_at": stamp})
        db.session.execute(insert(User), users)
        db.session.execute(insert(Student), students)
        db.session.flush()
        if progress is not None:
            progress.update(len(users))


def print_logins(logins) -> None:
    click.echo("Demo logins (password for all of them):")
    for email, role, password in logins:
        click.echo(f"  {role:<11} {email:<26} {password}")


def _require_migrated() -> None:
    """Stop with the command to run when the database is not at the code's migrations: seeding
    a database without its tables would end in a traceback, one half-way in a confusing error.
    The demo data is not a reason to change a schema unasked, so this does not migrate itself."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from flask import current_app

    config = current_app.extensions["migrate"].migrate.get_config()
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with db.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current != heads:
        raise click.ClickException(
            f"The database is not migrated (it is at {', '.join(sorted(current)) or 'nothing'}; the code "
            f"at {', '.join(sorted(heads))}). Run `flask --app wsgi db upgrade` first (`make run` "
            "migrates and seeds in one go)."
        )


@click.command("seed-demo", help="Load demo data (idempotent). --scale N adds N students; from "
                                  f"{LEARNING_SCALE} on, also a large catalog and a large course.")
@click.option("--scale", default=0, type=click.IntRange(0, 1_000_000),
              help="Extra students to create, each with funded wallets and a hundred ledger rows.")
@with_appcontext
def seed_demo_command(scale):
    from portal.db import CLI_ACTOR, unit_of_work

    _require_migrated()
    with unit_of_work(CLI_ACTOR):
        if scale:
            extra = learning_units(scale)
            label = "Creating students, courses, grades and money" if extra else "Creating students and money"
            # Each scale student counts twice: created, then given wallets and a ledger history.
            with click.progressbar(length=2 * scale + extra, label=label) as bar:
                logins = seed(scale, bar, money_progress=bar)
        else:
            logins = seed()
    print_logins(logins)
