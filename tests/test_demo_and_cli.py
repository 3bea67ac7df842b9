"""``flask seed-demo`` and ``flask users create``."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from portal import demo
from portal.accounts.models import Role, User, UserStatus
from portal.db import db
from portal.db.audit import AuditLog
from portal.platform.notifications.models import Notification
from portal.security import passwords
from tests.factories import PASSWORD


@pytest.fixture(autouse=True)
def demo_logins_file(tmp_path, monkeypatch):
    """Keep the demo password file of the test away from the developer's instance/ file."""
    path = tmp_path / "demo-logins.txt"
    monkeypatch.setattr(demo, "CREDENTIALS_FILE", path)
    return path


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args, **kw: runner.invoke(args=list(args), **kw)


def _demo_users() -> list[User]:
    emails = [email for email, _, _ in demo.ACCOUNTS]
    return list(db.session.scalars(select(User).where(User.email.in_(emails))))


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _scale_students() -> int:
    return _count(User, User.email.like("scale%@azora.example"))


# ---------------------------------------------------------------- seed-demo

def test_seed_demo_creates_one_account_per_role_and_students(cli, demo_logins_file):
    result = cli("seed-demo")
    assert result.exit_code == 0, result.output
    users = _demo_users()
    roles = [u.role for u in users]
    for role in Role:
        assert role in roles, role
    assert roles.count(Role.STUDENT) == len(demo.ACCOUNTS) - 3
    assert len(users) == len(demo.ACCOUNTS)
    assert all(u.status == UserStatus.ACTIVE and u.email_verified_at for u in users)
    assert all(u.student is not None for u in users if u.role == Role.STUDENT)
    assert all(u.faculty is not None for u in users if u.role == Role.FACULTY)

    # the password was made at random, kept in the (test's) file, printed, and works
    content = demo_logins_file.read_text()
    assert content.startswith("password=demo-")
    password = content.strip().split("=", 1)[1]
    assert "Demo logins" in result.output
    for user in users:
        assert user.email in result.output
        assert passwords.verify_password(user.password_hash, password)
    assert result.output.count(password) == len(demo.ACCOUNTS)


def test_seed_demo_is_idempotent(cli):
    assert cli("seed-demo").exit_code == 0
    counts = (_count(User), _count(Notification), len(_demo_users()))
    first_password = demo.demo_password()
    second = cli("seed-demo")
    assert second.exit_code == 0, second.output
    assert (_count(User), _count(Notification), len(_demo_users())) == counts
    assert first_password in second.output  # the same logins, printed again


def test_seed_demo_scale_adds_students_with_a_progress_bar(cli):
    before = _scale_students()
    result = cli("seed-demo", "--scale", "30")
    assert result.exit_code == 0, result.output
    assert "Creating students" in result.output
    assert _scale_students() == before + 30
    scaled = db.session.scalars(select(User).where(User.email.like("scale%@azora.example"))).all()
    assert all(u.role == Role.STUDENT and u.student is not None for u in scaled)
    # again with the same scale: nothing more; a larger one adds only the difference
    assert cli("seed-demo", "--scale", "30").exit_code == 0
    assert _scale_students() == before + 30
    assert cli("seed-demo", "--scale", "35").exit_code == 0
    assert _scale_students() == before + 35


def test_seed_demo_rejects_a_negative_scale(cli):
    result = cli("seed-demo", "--scale", "-1")
    assert result.exit_code == 2
    assert "Invalid value for '--scale'" in result.output


def test_seed_demo_acts_as_the_cli_actor(cli):
    db.session.commit()  # start the command in a transaction of its own
    assert cli("seed-demo").exit_code == 0
    admin = db.session.scalar(select(User).where(User.email == "admin@azora.example"))
    [row] = db.session.scalars(select(AuditLog).where(
        AuditLog.table_name == "users", AuditLog.row_id == str(admin.id))).all()
    assert row.actor == "system:cli"


def test_seed_demo_does_not_touch_the_real_logins_file(cli, demo_logins_file):
    real = demo.INSTANCE_DIR / "demo-logins.txt"
    before = real.read_bytes() if real.exists() else None
    assert cli("seed-demo").exit_code == 0
    assert demo_logins_file.exists()
    assert (real.read_bytes() if real.exists() else None) == before


# ---------------------------------------------------------------- users create

def _email() -> str:
    return f"staff-{uuid.uuid4().hex[:10]}@tests.example"


def test_users_create_makes_an_active_staff_account(cli):
    db.session.commit()
    email = _email()
    result = cli("users", "create", email.upper(), "--name", "  Grace   Hopper ", "--role", "faculty",
                 "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    assert f"Created faculty account {email}." in result.output
    user = db.session.scalar(select(User).where(User.email == email))
    assert user.full_name == "Grace Hopper"
    assert user.role == Role.FACULTY
    assert user.status == UserStatus.ACTIVE
    assert user.email_verified_at is not None
    assert user.faculty is not None
    assert passwords.verify_password(user.password_hash, PASSWORD)
    [row] = db.session.scalars(select(AuditLog).where(
        AuditLog.table_name == "users", AuditLog.row_id == str(user.id))).all()
    assert row.actor == "system:cli"


def test_users_create_asks_for_the_password_when_not_given(cli):
    email = _email()
    result = cli("users", "create", email, "--name", "Ada Admin", "--role", "admin",
                 input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User.role).where(User.email == email)) == Role.ADMIN


@pytest.mark.parametrize(("args", "message"), [
    (["not-an-email", "--name", "X Person", "--role", "faculty", "--password", PASSWORD],
     "Enter a valid e-mail address"),
    ([None, "--name", "X Person", "--role", "faculty", "--password", "short"],
     "Use at least 10 characters."),
    ([None, "--name", "   ", "--role", "faculty", "--password", PASSWORD], "Enter your full name."),
])
def test_users_create_rejects_bad_input_clearly(cli, args, message):
    args = [_email() if a is None else a for a in args]
    before = _count(User)
    result = cli("users", "create", *args)
    assert result.exit_code == 1, result.output
    assert f"Error: {message}" in result.output
    assert "Traceback" not in result.output
    assert _count(User) == before


def test_users_create_rejects_a_taken_email(cli, make_user):
    existing = make_user("faculty")
    result = cli("users", "create", existing.email, "--name", "Someone", "--role", "admin",
                 "--password", PASSWORD)
    assert result.exit_code == 1
    assert "An account with this e-mail already exists." in result.output


def test_users_create_rejects_the_student_role(cli):
    result = cli("users", "create", _email(), "--name", "Stu Dent", "--role", "student",
                 "--password", PASSWORD)
    assert result.exit_code == 2
    assert "Invalid value for '--role'" in result.output


@pytest.mark.no_db_rollback  # the command must reach the new database, not the session's
def test_seed_demo_on_an_unmigrated_database_says_to_migrate(database_urls):
    from tests.conftest import TEST_DB
    from tests.db import separate_app

    with separate_app(f"{TEST_DB}_seed_nomig", migrate=False) as (application, _owner, _app), \
            application.app_context():
        result = application.test_cli_runner().invoke(args=["seed-demo"])
        with db.engine.connect() as conn:  # this app's database, not the session's
            tables = conn.exec_driver_sql("SELECT to_regclass('users')").scalar()

    assert result.exit_code == 1, result.output
    assert "not migrated" in result.output
    assert "flask --app wsgi db upgrade" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an error that escaped
    assert tables is None  # nothing was half-created
