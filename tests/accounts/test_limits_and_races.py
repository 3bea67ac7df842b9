"""Limits and races in the account services: administrators removing each other at the same
moment (row locks on the active administrators), the per-address cap on e-mails that open forms
can trigger, and staff accounts that can be neither invited nor given a password."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text, update

from portal import events
from portal.accounts import services as accounts
from portal.accounts.models import Role, User, UserStatus
from portal.db import context as db_context
from portal.db import db
from portal.errors import Forbidden
from portal.platform.email.models import Email
from portal.platform.gateway.models import RateLimit
from tests.accounts.conftest import emails_to, user_count
from tests.conftest import unique_email
from tests.factories import PASSWORD, create_user

NOT_ADMIN = "Only administrators manage accounts."
HOUR = 3600


def email_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Email))


def refreshed(user: User) -> User:
    db.session.refresh(user)
    return user


def _stale(user: User, **values) -> None:
    """Change ``user``'s row in the database but not the object already loaded, as another
    transaction that committed after this one read the row would."""
    db.session.execute(update(User).where(User.id == user.id).values(**values)
                       .execution_options(synchronize_session=False))


# ---------------------------------------------------------------- administrators: one at a time

class TestAdministratorsInOneTransaction:
    def test_an_admin_deactivates_another_admin(self):
        a, b = create_user("admin"), create_user("admin")
        assert accounts.deactivate(a, b.id) is b
        assert refreshed(b).status == UserStatus.DEACTIVATED
        assert refreshed(a).status == UserStatus.ACTIVE and a.role == Role.ADMIN

    def test_an_admin_demotes_another_admin(self):
        a, b = create_user("admin"), create_user("admin")
        accounts.change_role(a, b.id, "faculty")
        assert refreshed(b).role == Role.FACULTY and b.faculty is not None
        assert refreshed(a).role == Role.ADMIN

    def test_a_sole_admin_still_manages_others(self):
        """The lock needs no second administrator: the actor itself is the one that remains."""
        admin = create_user("admin")
        other = create_user("faculty")
        accounts.change_role(admin, other.id, "compliance")
        accounts.deactivate(admin, other.id)
        assert (refreshed(other).role, other.status) == (Role.COMPLIANCE, UserStatus.DEACTIVATED)

    def test_an_admin_cannot_deactivate_or_demote_itself(self):
        a = create_user("admin")
        with pytest.raises(Forbidden, match="You cannot deactivate your own account."):
            accounts.deactivate(a, a.id)
        with pytest.raises(Forbidden, match="You cannot change your own role"):
            accounts.change_role(a, a.id, "faculty")
        assert (refreshed(a).role, a.status) == (Role.ADMIN, UserStatus.ACTIVE)

    @pytest.mark.parametrize("change", [{"status": UserStatus.DEACTIVATED}, {"role": Role.FACULTY}],
                             ids=["deactivated", "demoted"])
    @pytest.mark.parametrize("action", ["deactivate", "change_role"])
    def test_an_actor_removed_since_it_was_loaded_is_refused(self, change, action):
        """The actor object still says active administrator, the row no longer does: the check
        made under the lock reads the row, so the action is refused and nothing changes."""
        a, target = create_user("admin"), create_user("admin")
        _stale(a, **change)
        assert a.role == Role.ADMIN and a.status == UserStatus.ACTIVE  # the loaded object is stale
        with pytest.raises(Forbidden, match=NOT_ADMIN):
            if action == "deactivate":
                accounts.deactivate(a, target.id)
            else:
                accounts.change_role(a, target.id, "faculty")
        assert (refreshed(target).role, target.status) == (Role.ADMIN, UserStatus.ACTIVE)


# ---------------------------------------------------------------- administrators: at the same moment

def _deactivate(actor: User, user_id: uuid.UUID) -> None:
    accounts.deactivate(actor, user_id)


def _demote(actor: User, user_id: uuid.UUID) -> None:
    accounts.change_role(actor, user_id, "faculty")


def _waits_for_a_lock(connection, pid: int) -> bool:
    return bool(connection.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = :pid AND NOT granted)"), {"pid": pid}
    ).scalar())


class _Race:
    """Two administrators, each in its own thread, app context, session and connection, acting
    on each other at once.

    Both load themselves and the other, then meet at a barrier. Whoever finishes its action
    first does not commit until the other has either finished its action too (the rows were not
    locked: both would commit) or is seen in ``pg_locks`` waiting for a row lock. So the second
    lock query always runs while the first transaction is still open, whatever the scheduling.
    """

    TIMEOUT = 30

    def __init__(self, app, ids: dict[str, uuid.UUID], actions: dict):
        self.app = app
        self.ids = ids
        self.actions = actions
        self.barrier = threading.Barrier(2)
        self.pids: dict[str, int] = {}
        self.done = {name: threading.Event() for name in ids}
        self.outcome: dict[str, object] = {}
        self.saw_waiting: dict[str, bool] = {}
        self.errors: list[BaseException] = []

    def other(self, name: str) -> str:
        return next(n for n in self.ids if n != name)

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker, args=(name,)) for name in self.ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=self.TIMEOUT * 2)
        assert not any(thread.is_alive() for thread in threads)
        assert not self.errors, self.errors

    def worker(self, name: str) -> None:
        other = self.other(name)
        try:
            with self.app.app_context(), db_context.acting_as(db_context.Actor.for_user(self.ids[name], "admin")):
                try:
                    me = db.session.get(User, self.ids[name])
                    db.session.get(User, self.ids[other])
                    assert me.role == Role.ADMIN and me.is_active
                    self.pids[name] = db.session.scalar(text("SELECT pg_backend_pid()"))
                    self.barrier.wait(timeout=self.TIMEOUT)
                    try:
                        self.actions[name](me, self.ids[other])
                    except Forbidden as exc:
                        self.done[name].set()
                        db.session.rollback()
                        self.outcome[name] = exc
                        return
                    self.done[name].set()
                    self.saw_waiting[name] = self.wait_for(other)
                    db.session.commit()
                    self.outcome[name] = "committed"
                finally:
                    db.session.rollback()
                    db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
            self.barrier.abort()

    def wait_for(self, other: str) -> bool:
        """Until ``other`` has finished its action or waits for a lock; True for the latter."""
        deadline = time.monotonic() + self.TIMEOUT
        with db.engine.connect() as connection:
            while time.monotonic() < deadline:
                if self.done[other].is_set():
                    return False
                if _waits_for_a_lock(connection, self.pids[other]):
                    return True
                connection.rollback()
                time.sleep(0.005)
        raise AssertionError(f"{other} neither finished nor waited for a lock")


@pytest.fixture
def two_admins(app):
    """Two active administrators committed for real; removed again afterwards. Administrators
    other tests committed (the browser journeys') are set aside meanwhile and put back after."""
    active_admin = (User.role == Role.ADMIN) & (User.status == UserStatus.ACTIVE)
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        others = list(db.session.scalars(select(User.id).where(active_admin)))
        db.session.execute(update(User).where(User.id.in_(others)).values(status=UserStatus.DEACTIVATED))
        ids = {"a": create_user("admin").id, "b": create_user("admin").id}
        db.session.commit()
        # No other active administrator: the one left afterwards can only be A or B.
        assert db.session.scalar(select(func.count()).select_from(User).where(active_admin)) == 2
        db.session.remove()
    try:
        yield ids
    finally:
        with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
            db.session.execute(delete(User).where(User.id.in_(ids.values())))
            db.session.execute(update(User).where(User.id.in_(others)).values(status=UserStatus.ACTIVE))
            db.session.commit()
            assert db.session.scalar(select(func.count()).select_from(User)
                                     .where(User.id.in_(ids.values()))) == 0
            db.session.remove()


@pytest.mark.no_db_rollback
@pytest.mark.parametrize(("action_a", "action_b", "loser_becomes"), [
    (_deactivate, _deactivate, (Role.ADMIN, UserStatus.DEACTIVATED)),
    (_demote, _demote, (Role.FACULTY, UserStatus.ACTIVE)),
    (_deactivate, _demote, None),
], ids=["both-deactivate", "both-demote", "one-of-each"])
def test_two_admins_removing_each_other_leaves_one(app, two_admins, action_a, action_b, loser_becomes):
    race = _Race(app, two_admins, {"a": action_a, "b": action_b})
    race.run()

    winners = [name for name, result in race.outcome.items() if result == "committed"]
    losers = [name for name, result in race.outcome.items() if isinstance(result, Forbidden)]
    assert len(winners) == 1 and len(losers) == 1, race.outcome
    winner, loser = winners[0], losers[0]
    assert race.outcome[loser].message == NOT_ADMIN
    # The loser's lock query really ran while the winner's transaction was open.
    assert race.saw_waiting[winner] is True

    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        rows = {name: db.session.get(User, uid) for name, uid in two_admins.items()}
        active_admins = [name for name, user in rows.items()
                         if user.role == Role.ADMIN and user.status == UserStatus.ACTIVE]
        assert active_admins == [winner]
        expected = loser_becomes or {_deactivate: (Role.ADMIN, UserStatus.DEACTIVATED),
                                     _demote: (Role.FACULTY, UserStatus.ACTIVE)}[race.actions[winner]]
        assert (rows[loser].role, rows[loser].status) == expected
        db.session.remove()


# ---------------------------------------------------------------- e-mails per address per hour

CAP = 2


@pytest.fixture
def cap(app, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_PER_ADDRESS_PER_HOUR", CAP)
    return CAP


def _age_windows(seconds: int) -> None:
    """Move every rate-limit window of this (rolled back) transaction into the past."""
    db.session.execute(update(RateLimit).values(window_start=RateLimit.window_start - timedelta(seconds=seconds)))


def _long_address(length: int) -> str:
    domain = "tests.example"
    local_len = min(64, length - len(domain) - 1)
    rest = length - local_len - 1 - len(domain)
    labels = []
    while rest > 0:
        label = min(63, rest - 1)
        labels.append("d" * label)
        rest -= label + 1
    address = "a" * local_len + "@" + ".".join([*labels, domain])
    assert len(address) == length
    return address


class TestMailCapServices:
    def test_the_default_cap_is_five_resets_an_hour(self, app, links):
        assert app.config["MAIL_PER_ADDRESS_PER_HOUR"] == 5
        user = create_user()
        for _ in range(7):
            assert accounts.request_password_reset(user.email, links) is None
        assert len(emails_to(user.email, "reset_password")) == 5

    def test_password_resets_stop_at_the_cap_silently(self, cap, links):
        user = create_user()
        for _ in range(cap + 3):
            assert accounts.request_password_reset(user.email.upper(), links) is None
        mails = emails_to(user.email, "reset_password")
        assert len(mails) == cap
        assert all(m.user_id == user.id for m in mails)

    def test_verification_resends_stop_at_the_cap(self, cap, links):
        user = create_user(verified=False)
        for _ in range(cap + 2):
            assert accounts.resend_verification(user.email, links) is None
        assert len(emails_to(user.email, "verify_email")) == cap

    def test_duplicate_registrations_stop_at_the_cap(self, cap, links):
        user = create_user()
        before = user_count()
        for _ in range(cap + 2):
            assert accounts.register_student(user.email, "Mallory Example", "yet another passphrase 7", links) is None
        assert user_count() == before
        assert [m.template for m in emails_to(user.email)] == ["already_registered"] * cap

    def test_each_address_has_its_own_count(self, cap, links):
        first, second = create_user(), create_user()
        for _ in range(cap + 1):
            accounts.request_password_reset(first.email, links)
        # The first address is spent; the second is not touched by it.
        for _ in range(cap + 1):
            accounts.request_password_reset(second.email, links)
        assert len(emails_to(first.email, "reset_password")) == cap
        assert len(emails_to(second.email, "reset_password")) == cap

    def test_each_kind_has_its_own_count(self, cap, links):
        user = create_user(verified=False)
        for _ in range(cap + 1):
            accounts.request_password_reset(user.email, links)
            accounts.resend_verification(user.email, links)
            accounts.register_student(user.email, "Mallory Example", "yet another passphrase 7", links)
        assert len(emails_to(user.email, "reset_password")) == cap
        assert len(emails_to(user.email, "verify_email")) == cap
        assert len(emails_to(user.email, "already_registered")) == cap

    def test_the_count_restarts_after_an_hour(self, cap, links):
        user = create_user()
        for _ in range(cap + 1):
            accounts.request_password_reset(user.email, links)
        _age_windows(HOUR - 60)
        accounts.request_password_reset(user.email, links)
        assert len(emails_to(user.email, "reset_password")) == cap  # still within the hour
        _age_windows(61)
        accounts.request_password_reset(user.email, links)
        assert len(emails_to(user.email, "reset_password")) == cap + 1

    def test_requests_that_send_nothing_do_not_use_up_the_cap(self, cap, links):
        """Asking for an address without an account stores no count for it; asking while the
        account cannot log in sends nothing and leaves the owner's cap whole."""
        nobody = unique_email("nobody")
        for _ in range(cap + 2):
            accounts.request_password_reset(nobody, links)
            accounts.resend_verification(nobody, links)
        assert emails_to(nobody) == []
        assert db.session.scalar(select(func.count()).select_from(RateLimit)
                                 .where(RateLimit.key.contains(nobody))) == 0
        user = create_user(status=UserStatus.DEACTIVATED, verified=False)
        for _ in range(cap + 2):
            accounts.request_password_reset(user.email, links)
            accounts.resend_verification(user.email, links)
        assert emails_to(user.email) == []
        user.status = UserStatus.ACTIVE
        db.session.flush()
        for _ in range(cap):
            accounts.request_password_reset(user.email, links)
            accounts.resend_verification(user.email, links)
        assert len(emails_to(user.email, "reset_password")) == cap
        assert len(emails_to(user.email, "verify_email")) == cap

    @pytest.mark.parametrize("length", [176, 177, 254])
    def test_long_addresses_are_capped_too(self, cap, links, length):
        """The cap's key has room for 200 characters; longer ones are hashed, not a 500."""
        address = _long_address(length)
        assert accounts.normalise_email(address) == address
        user = create_user(email=address, verified=False)
        for _ in range(cap + 1):
            accounts.request_password_reset(address, links)
            accounts.resend_verification(address, links)
            accounts.register_student(address, "Mallory Example", "yet another passphrase 7", links)
        for kind in ("reset_password", "verify_email", "already_registered"):
            assert len(emails_to(user.email, kind)) == cap, kind
        assert db.session.scalar(select(func.max(func.length(RateLimit.key)))) <= 200


def _commit() -> None:
    """Make rows made in the test visible to the views."""
    db.session.commit()


#: The page's CSRF token: signed afresh for every page (it carries the time), so two answers
#: that tell the same thing still differ in it.
_CSRF_TOKEN = re.compile(r'(name="csrf_token"[^>]*value="|"X-CSRFToken": ")[^"]+')


def _body(response) -> str:
    return _CSRF_TOKEN.sub(r"\1<token>", response.get_data(as_text=True))


class TestMailCapViews:
    """Past the cap the pages answer exactly as before it, so they tell a stranger nothing."""

    def test_forgot(self, client, cap):
        user = create_user()
        _commit()
        pages = [client.post("/auth/forgot", data={"email": user.email}) for _ in range(cap + 2)]
        unknown = client.post("/auth/forgot", data={"email": unique_email("nobody")})
        assert {p.status_code for p in [*pages, unknown]} == {200}
        assert "If an account uses that address" in _body(pages[0])
        assert {_body(p) for p in [*pages, unknown]} == {_body(pages[0])}
        assert len(emails_to(user.email, "reset_password")) == cap

    def test_resend_verification(self, client, cap):
        user = create_user(verified=False)
        _commit()
        answers = []
        for _ in range(cap + 2):
            response = client.post("/auth/resend-verification", data={"email": user.email})
            answers.append((response.status_code, response.headers.get("Location"),
                            _body(client.get("/auth/check-inbox"))))
        assert answers[0][0] == 302
        assert "If that address has an account waiting" in answers[0][2]
        assert set(answers) == {answers[0]}
        assert len(emails_to(user.email, "verify_email")) == cap

    def test_register_with_a_taken_address(self, client, cap):
        user = create_user()
        _commit()
        before = user_count()
        data = {"full_name": "Mallory Example", "email": user.email, "password": PASSWORD, "confirm": PASSWORD}
        answers = []
        for _ in range(cap + 2):
            response = client.post("/auth/register", data=data)
            answers.append((response.status_code, response.headers.get("Location"),
                            _body(client.get("/auth/check-inbox"))))
        assert answers[0][0] == 302 and answers[0][1].endswith("/auth/check-inbox")
        assert set(answers) == {answers[0]}
        assert user_count() == before
        assert [m.template for m in emails_to(user.email)] == ["already_registered"] * cap


# ---------------------------------------------------------------- staff accounts

class TestStaffWithoutPasswordOrLinks:
    @pytest.mark.parametrize("role", ["faculty", "compliance", "admin"])
    def test_nothing_is_written(self, role):
        email = unique_email("staff")
        changed = []

        def record(sender, **kwargs):
            changed.append(kwargs)

        before_users, before_mail = user_count(), email_count()
        with (events.account_changed.connected_to(record),
              pytest.raises(accounts.InvalidInput, match="needs an invitation link") as caught):
            accounts.create_staff(None, email, "Grace Hopper", role, None)
        assert caught.value.status_code == 422
        # Refused before anything was added: nothing even waits for a rollback.
        assert user_count() == before_users and accounts.find_by_email(email) is None
        assert email_count() == before_mail and changed == []
        db.session.rollback()  # as the views do after a DomainError
        assert user_count() == before_users and accounts.find_by_email(email) is None

    def test_an_admin_without_links_is_refused_too(self):
        admin = create_user("admin")
        email = unique_email("staff")
        before = user_count()
        with pytest.raises(accounts.InvalidInput, match="needs an invitation link"):
            accounts.create_staff(admin, email, "Grace Hopper", "faculty", None)
        assert user_count() == before and accounts.find_by_email(email) is None

    def test_with_a_password_no_links_are_needed(self):
        email = unique_email("staff")
        user = accounts.create_staff(None, email, "Grace Hopper", "faculty", None, password="another long passphrase 42")
        assert (user.status, user.role) == (UserStatus.ACTIVE, Role.FACULTY)
        assert emails_to(email) == []
