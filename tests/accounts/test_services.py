"""Account services: registration, verification, login and throttling, passwords, staff accounts,
roles and (de)activation, with the password and token helpers they stand on."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from itsdangerous import TimestampSigner
from sqlalchemy import func, select, update

from portal import events
from portal.accounts import services as accounts
from portal.accounts.models import InvalidTransition, Role, Student, User, UserStatus
from portal.compliance.security import services as sessions
from portal.compliance.security.models import SessionValidation
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, Forbidden, NotFound
from portal.platform.email.models import Email
from portal.platform.gateway.models import RateLimit
from portal.platform.notifications.models import Notification
from portal.security import passwords, tokens
from tests.accounts.conftest import emails_to, link_in, live_sessions, session_row, token_of, user_count
from tests.conftest import unique_email
from tests.factories import PASSWORD, create_user

NEW_PASSWORD = "another long passphrase 42"
IP = "203.0.113.7"
UA = "pytest-agent/1.0"


def email_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Email))


def notifications_of(user: User) -> list[Notification]:
    return list(db.session.scalars(select(Notification).where(Notification.user_id == user.id)
                                   .order_by(Notification.created_at)))


def limit_row(key: str) -> RateLimit | None:
    return db.session.scalar(select(RateLimit).where(RateLimit.key == key))


def aged_token(monkeypatch, seconds: int, make):
    """A token made ``seconds`` ago (the signer's clock moved back while it is made)."""
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - seconds)
        return make()


def tamper(token: str) -> str:
    """Change one character inside the signature. Not the last one: its low bits are base64
    padding, so some changes there decode to the same bytes and the token stays valid."""
    i = len(token) - 5
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


def login(email: str, password: str = PASSWORD, *, policy, ip: str = IP) -> accounts.LoginResult:
    return accounts.authenticate(email, password, ip=ip, user_agent=UA, policy=policy)


def pair_key(email: str, ip: str) -> str:
    """The counter of failures on one account from one address."""
    return "login:pair:" + hashlib.sha256(email.encode()).hexdigest()[:32] + ":" + ip


def _age_account(email: str, seconds: int) -> None:
    """Move the account's last failure ``seconds`` into the past, instead of waiting."""
    db.session.execute(update(RateLimit).where(RateLimit.key == f"login:account:{email}")
                       .values(updated_at=RateLimit.updated_at - timedelta(seconds=seconds)))


# ---------------------------------------------------------------- passwords and tokens

class TestPasswordHelpers:
    def test_hash_is_argon2id_with_the_configured_cost_and_verifies(self, app):
        hashed = passwords.hash_password(PASSWORD)
        assert hashed.startswith(
            f"$argon2id$v=19$m={app.config['ARGON2_MEMORY_COST']},t={app.config['ARGON2_TIME_COST']},p=1$")
        assert PASSWORD not in hashed
        assert passwords.verify_password(hashed, PASSWORD)
        assert not passwords.verify_password(hashed, PASSWORD + "x")
        # A fresh salt each time.
        assert passwords.hash_password(PASSWORD) != hashed

    @pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$argon2id$v=19$broken"])
    def test_verify_without_a_usable_hash_is_false(self, stored):
        assert passwords.verify_password(stored, PASSWORD) is False

    def test_needs_rehash_only_for_other_parameters(self):
        assert not passwords.needs_rehash(passwords.hash_password(PASSWORD))
        old = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1).hash(PASSWORD)
        assert passwords.needs_rehash(old)

    @pytest.mark.parametrize(("password", "message"), [
        ("short1234", "Use at least 10 characters."),
        ("x" * 199 + "abc", "Use at most 200 characters."),
        ("ann.example@tests.example", "Do not use your e-mail address as your password."),
        ("Ann.Example", "Do not use your e-mail address as your password."),
        ("Ann Marie Lovelace", "Do not use your name as your password."),
        ("AnnMarieLovelace", "Do not use your name as your password."),
        ("abababababab", "Use a password with more different characters."),
    ])
    def test_password_problems(self, password, message):
        assert passwords.password_problem(password, email="ann.example@tests.example",
                                          name="Ann Marie Lovelace") == message

    def test_good_password_has_no_problem(self):
        assert passwords.password_problem(PASSWORD, email="ann@tests.example", name="Ann Lovelace") is None
        assert passwords.password_problem("x" * 196 + "abcd") is None


class TestTokens:
    def test_round_trip_and_purpose_separation(self):
        token = tokens.make_token("k", "reset", {"u": "1"})
        assert tokens.read_token("k", "reset", token, 60) == {"u": "1"}
        with pytest.raises(tokens.TokenInvalid) as wrong_purpose:
            tokens.read_token("k", "verify", token, 60)
        assert wrong_purpose.value.expired is False
        with pytest.raises(tokens.TokenInvalid):
            tokens.read_token("other-key", "reset", token, 60)

    def test_expired_token_says_so(self, monkeypatch):
        token = aged_token(monkeypatch, 120, lambda: tokens.make_token("k", "reset", {"u": "1"}))
        assert tokens.read_token("k", "reset", token, 600) == {"u": "1"}
        with pytest.raises(tokens.TokenInvalid) as caught:
            tokens.read_token("k", "reset", token, 60)
        assert caught.value.expired is True

    @pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "\x00", "é" * 50])
    def test_garbage_is_invalid_not_an_error(self, garbage):
        with pytest.raises(tokens.TokenInvalid) as caught:
            tokens.read_token("k", "reset", garbage, 60)
        assert caught.value.expired is False

    def test_a_payload_that_is_not_a_dict_is_invalid(self):
        with pytest.raises(tokens.TokenInvalid):
            tokens.read_token("k", "reset", tokens.make_token("k", "reset", ["u", "1"]), 60)

    def test_session_tokens_are_random_and_stored_hashed(self):
        first, first_hash = tokens.new_session_token()
        second, _ = tokens.new_session_token()
        assert first != second and len(first) >= 40
        assert first_hash == tokens.hash_session_token(first) and len(first_hash) == 64
        assert first not in first_hash


# ---------------------------------------------------------------- registration

class TestRegisterStudent:
    def test_creates_user_student_profile_and_queues_verification(self, links):
        email = unique_email("ann")
        before = user_count()
        user = accounts.register_student(f"  {email.upper()} ", "  Ann   Lovelace ", PASSWORD, links)
        assert user is not None
        assert user_count() == before + 1
        stored = db.session.get(User, user.id)
        assert stored.email == email
        assert stored.full_name == "Ann Lovelace"
        assert stored.role == Role.STUDENT and stored.status == UserStatus.ACTIVE
        assert stored.email_verified_at is None and stored.password_changed_at is not None
        assert stored.password_hash.startswith("$argon2id$")
        assert passwords.verify_password(stored.password_hash, PASSWORD)
        student = db.session.scalar(select(Student).where(Student.user_id == user.id))
        assert student is not None
        assert len(student.student_number) == 11 and student.student_number.startswith("AZ-")
        [mail] = emails_to(email)
        assert mail.template == "verify_email" and mail.user_id == user.id and mail.status == "queued"
        assert "Ann" in mail.body_text
        assert accounts.verify_email(token_of(link_in(mail, "verify"))).id == user.id

    def test_student_numbers_differ(self, links):
        first = accounts.register_student(unique_email(), "Ann Lovelace", PASSWORD, links)
        second = accounts.register_student(unique_email(), "Bob Lovelace", PASSWORD, links)
        assert first.student.student_number != second.student.student_number

    def test_emits_user_registered(self, links):
        seen = []

        def receiver(sender, **kwargs):
            seen.append(kwargs["user"])

        with events.user_registered.connected_to(receiver):
            user = accounts.register_student(unique_email(), "Ann Lovelace", PASSWORD, links)
        assert seen == [user]

    def test_existing_address_creates_nothing_and_tells_the_owner(self, links):
        owner = create_user(email=unique_email("owner"))
        original_hash = owner.password_hash
        before = user_count()
        result = accounts.register_student(owner.email.upper(), "Someone Else", "a different passphrase", links)
        assert result is None
        assert user_count() == before
        assert db.session.get(User, owner.id).password_hash == original_hash
        mails = emails_to(owner.email)
        assert [m.template for m in mails] == ["already_registered"]
        assert "already has one" in mails[0].body_text
        # The mail offers a working way back in: its reset link.
        assert accounts.check_reset_token(token_of(link_in(mails[0], "reset"))).id == owner.id

    def test_existing_address_costs_the_same_hashing_as_a_new_one(self, links, monkeypatch):
        calls = []
        real = passwords.hash_password
        monkeypatch.setattr(passwords, "hash_password", lambda password: calls.append(password) or real(password))
        accounts.register_student(unique_email(), "Ann Lovelace", PASSWORD, links)
        new_account = len(calls)
        owner = create_user()
        calls.clear()
        accounts.register_student(owner.email, "Ann Lovelace", PASSWORD, links)
        assert new_account == len(calls) == 1

    @pytest.mark.parametrize(("email", "name", "password", "field", "message"), [
        ("", "Ann Lovelace", PASSWORD, "email", "Enter a valid e-mail address"),
        ("not-an-address", "Ann Lovelace", PASSWORD, "email", "Enter a valid e-mail address"),
        ("ann@localhost", "Ann Lovelace", PASSWORD, "email", "Enter a valid e-mail address"),
        ("a\x00b@tests.example", "Ann Lovelace", PASSWORD, "email", "Enter a valid e-mail address"),
        ("a" * 250 + "@tests.example", "Ann Lovelace", PASSWORD, "email", "Enter a valid e-mail address"),
        ("{email}", "   ", PASSWORD, "full_name", "Enter your full name."),
        ("{email}", "x" * 121, PASSWORD, "full_name", "Use at most 120 characters."),
        ("{email}", "Ann <script>", PASSWORD, "full_name", "may not contain < or >"),
        ("{email}", "Ann\x00Lovelace", PASSWORD, "full_name", "may not contain"),
        ("{email}", "Ann Lovelace", "short", "password", "Use at least 10 characters."),
        ("{email}", "Ann Lovelace", "y" * 201, "password", "Use at most 200 characters."),
        ("{email}", "Ann Lovelace", "{email}", "password", "Do not use your e-mail address"),
        ("{email}", "Ann Lovelace", "annlovelace", "password", "Do not use your name"),
        ("{email}", "Ann Lovelace", "aaaaaaaaaaaa", "password", "more different characters"),
    ])
    def test_invalid_input_names_the_field_and_writes_nothing(self, links, email, name, password, field, message):
        address = unique_email()
        users, mails = user_count(), email_count()
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.register_student(email.format(email=address), name, password.format(email=address), links)
        assert caught.value.field == field
        assert message in caught.value.message
        assert caught.value.status_code == 422
        assert user_count() == users
        assert email_count() == mails


# ---------------------------------------------------------------- verification

class TestVerifyEmail:
    def test_valid_token_verifies_once_and_welcomes(self, links):
        user = accounts.register_student(unique_email(), "Ann Lovelace", PASSWORD, links)
        token = accounts.verification_token(user)
        assert accounts.verify_email(token).id == user.id
        verified_at = user.email_verified_at
        assert verified_at is not None
        assert [n.title for n in notifications_of(user)] == ["Welcome to Azora"]
        # Opening the link again is harmless: same timestamp, no second welcome.
        assert accounts.verify_email(token).email_verified_at == verified_at
        assert len(notifications_of(user)) == 1

    def test_expired_token(self, app, links, monkeypatch):
        user = accounts.register_student(unique_email(), "Ann Lovelace", PASSWORD, links)
        token = aged_token(monkeypatch, app.config["EMAIL_VERIFY_MAX_AGE"] + 10,
                           lambda: accounts.verification_token(user))
        with pytest.raises(accounts.InvalidInput, match="expired"):
            accounts.verify_email(token)
        assert user.email_verified_at is None

    @pytest.mark.parametrize("make", [
        lambda user: tamper(accounts.verification_token(user)),
        lambda user: accounts.password_reset_token(user),  # another purpose
        lambda user: tokens.make_token("another-secret", "verify", {"u": str(user.id), "e": user.email}),
        lambda user: tokens.make_token(accounts._secret(), "verify", {"u": "not-a-uuid", "e": user.email}),
        lambda user: tokens.make_token(accounts._secret(), "verify", {"u": str(uuid.uuid4()), "e": user.email}),
        lambda user: tokens.make_token(accounts._secret(), "verify", {"u": str(user.id), "e": "x@tests.example"}),
        lambda user: "garbage",
    ], ids=["tampered", "reset-token", "other-secret", "bad-uuid", "unknown-user", "other-address", "garbage"])
    def test_invalid_tokens(self, links, make):
        user = accounts.register_student(unique_email(), "Ann Lovelace", PASSWORD, links)
        with pytest.raises(accounts.InvalidInput, match="This link is not valid."):
            accounts.verify_email(make(user))
        assert user.email_verified_at is None

    def test_a_token_for_an_old_address_stops_working_when_the_address_changes(self, links):
        user = accounts.register_student(unique_email(), "Ann Lovelace", PASSWORD, links)
        token = accounts.verification_token(user)
        user.email = unique_email("moved")
        db.session.flush()
        with pytest.raises(accounts.InvalidInput):
            accounts.verify_email(token)

    def test_resend_verification_only_for_unverified_active_accounts(self, links):
        pending = create_user(verified=False)
        verified = create_user()
        gone = create_user(verified=False, status=UserStatus.DEACTIVATED)
        for address in (pending.email.upper(), verified.email, gone.email, unique_email("nobody"), "nonsense"):
            accounts.resend_verification(address, links)
        assert [m.template for m in emails_to(pending.email)] == ["verify_email"]
        assert emails_to(verified.email) == [] and emails_to(gone.email) == []
        assert accounts.verify_email(token_of(link_in(emails_to(pending.email)[0], "verify"))).id == pending.id


# ---------------------------------------------------------------- login

class TestAuthenticate:
    def test_success_starts_a_server_side_session(self, policy):
        user = create_user()
        result = login(user.email.upper(), policy=policy)
        assert result.error is None and result.user.id == user.id and result.token
        row = session_row(result.token)
        assert row is not None and row.user_id == user.id
        assert row.token_hash != result.token
        assert row.ip_address == IP and row.user_agent == UA and row.revoked_at is None
        assert abs((row.expires_at - row.last_seen_at) - policy.max_age) < timedelta(seconds=1)
        assert user.last_login_at is not None
        assert sessions.resolve(result.token, policy)[1].id == user.id

    def test_each_login_gets_its_own_token(self, policy):
        user = create_user()
        first, second = login(user.email, policy=policy), login(user.email, policy=policy)
        assert first.token != second.token
        assert len(live_sessions(user.id)) == 2

    def test_wrong_password_and_unknown_account_look_the_same(self, policy):
        user = create_user()
        wrong = login(user.email, "not the password at all", policy=policy)
        unknown = login(unique_email("nobody"), PASSWORD, policy=policy)
        malformed = login("not an address", PASSWORD, policy=policy)
        for result in (wrong, unknown, malformed):
            assert result.user is None and result.token is None
            assert result.error == "E-mail or password is wrong."
            assert result.reason == "bad_credentials"
        assert live_sessions(user.id) == []

    def test_failures_count_per_account_and_per_ip_even_for_unknown_accounts(self, policy):
        user = create_user()
        nobody = unique_email("nobody")
        login(user.email, "wrong password 1", policy=policy)
        login(nobody, "wrong password 2", policy=policy)
        assert limit_row(f"login:account:{user.email}").count == 1
        assert limit_row(f"login:account:{nobody}").count == 1
        assert limit_row(f"login:ip:{IP}").count == 2

    def test_an_address_too_long_for_a_plain_key_is_still_counted(self, policy):
        address = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 40 + ".example"
        for _ in range(2):
            result = login(address, "wrong password", policy=policy)
            assert result.reason == "bad_credentials"
        keys = db.session.scalars(select(RateLimit.key).where(RateLimit.key.like("login:account:%"))).all()
        [key] = [k for k in keys if k.startswith("login:account:sha256:")]
        assert len(key) <= 200 and limit_row(key).count == 2

    def test_unverified_deactivated_and_invited_are_told_only_with_the_right_password(self, policy):
        unverified = create_user(verified=False)
        deactivated = create_user(status=UserStatus.DEACTIVATED)
        invited = create_user("faculty", status=UserStatus.INVITED, password=None)
        for user in (unverified, deactivated):
            assert login(user.email, "wrong password", policy=policy).reason == "bad_credentials"
        result = login(unverified.email, policy=policy)
        assert (result.reason, result.token) == ("unverified", None)
        assert "Confirm your e-mail address" in result.error
        result = login(deactivated.email, policy=policy)
        assert (result.reason, result.token) == ("inactive", None)
        assert "deactivated" in result.error
        # No password yet: nothing to be right about.
        assert login(invited.email, PASSWORD, policy=policy).reason == "bad_credentials"
        for user in (unverified, deactivated, invited):
            assert live_sessions(user.id) == []

    def test_one_address_is_stopped_after_the_limit_on_an_account(self, app, policy):
        """Brute force from one address: after the limit that address gets no more guesses at
        the account for the rest of the window, not even with the right password."""
        user = create_user()
        limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
        for i in range(limit):
            assert login(user.email, f"wrong password {i}", policy=policy).reason == "bad_credentials"
        seen = []

        def receiver(sender, **kwargs):
            seen.append(kwargs["reason"])

        with events.login_failed.connected_to(receiver):
            result = login(user.email, PASSWORD, policy=policy)
            for i in range(3):
                assert login(user.email, f"another guess {i}", policy=policy).reason == "throttled"
        assert result.reason == "throttled" and result.token is None
        assert result.error == "Too many failed attempts. Try again in 15 minutes, or reset your password."
        assert 0 < result.retry_after <= app.config["LOGIN_THROTTLE_WINDOW_SECONDS"] + 1
        assert seen == ["throttled"] * 4
        assert live_sessions(user.id) == []
        # Past the limit the password is not even checked, so nothing more is counted: the
        # guesser got exactly ``limit`` guesses in the window.
        assert limit_row(pair_key(user.email, IP)).count == limit
        assert limit_row(f"login:account:{user.email}").count == limit
        # Another account from the same address is not affected.
        other = create_user()
        assert login(other.email, policy=policy).token

    def test_an_attacker_at_one_address_cannot_lock_the_owner_out(self, app, policy):
        user = create_user()
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] + 5):
            login(user.email, f"wrong password {i}", policy=policy, ip="198.51.100.66")
        assert login(user.email, policy=policy, ip="198.51.100.66").reason == "throttled"
        # One address cannot even bring the account to the point where it is slowed down.
        assert limit_row(f"login:account:{user.email}").count < app.config["LOGIN_SLOWDOWN_AFTER"]
        result = login(user.email, policy=policy, ip="192.0.2.99")
        assert result.token and result.reason is None

    def test_many_addresses_slow_the_account_down_instead_of_locking_it(self, app, policy):
        user = create_user()
        after = app.config["LOGIN_SLOWDOWN_AFTER"]
        for i in range(after):  # each address stays under its own limit
            assert login(user.email, f"wrong password {i}", policy=policy, ip=f"198.51.100.{i}").reason \
                == "bad_credentials"
        # The next attempt from anywhere untrusted must wait its turn: 1 second.
        result = login(user.email, policy=policy, ip="192.0.2.99")
        assert result.reason == "throttled" and result.token is None
        assert result.retry_after == 1
        assert "each attempt must wait its turn. Try again in 1 second" in result.error
        assert limit_row(f"login:account:{user.email}").count == after  # no password checked
        # Each failure doubles the wait: the guessers' rate falls, with no lock.
        for expected in (2, 4, 8, 16):
            _age_account(user.email, 3600)
            assert login(user.email, "still guessing", policy=policy, ip="198.51.100.200").reason \
                == "bad_credentials"
            assert login(user.email, "and again", policy=policy, ip="198.51.100.201").retry_after == expected
        # The owner's turn comes: the right password from an untrusted address works after the wait.
        _age_account(user.email, 16)
        assert login(user.email, policy=policy, ip="192.0.2.99").token
        assert limit_row(f"login:account:{user.email}") is None

    def test_the_wait_grows_to_its_maximum(self, app):
        after, most = app.config["LOGIN_SLOWDOWN_AFTER"], app.config["LOGIN_MAX_DELAY_SECONDS"]
        assert [accounts.pace_delay(after + k, app.config) for k in range(-1, 4)] == [0, 1, 2, 4, 8]
        assert accounts.pace_delay(after + 1000, app.config) == most

    def test_of_two_attempts_at_once_only_one_gets_the_turn(self, app, policy):
        user = create_user()
        for i in range(app.config["LOGIN_SLOWDOWN_AFTER"]):
            login(user.email, f"wrong password {i}", policy=policy, ip=f"198.51.100.{i}")
        _age_account(user.email, 5)
        # The first takes the turn (and fails); the second, in the same moment, waits.
        assert login(user.email, "a guess", policy=policy, ip="198.51.100.100").reason == "bad_credentials"
        assert login(user.email, policy=policy, ip="192.0.2.99").reason == "throttled"

    def test_the_owners_device_logs_in_while_the_account_is_under_attack(self, app, policy):
        user = create_user()
        device = accounts.authenticate(user.email, PASSWORD, ip="192.0.2.10", user_agent=UA, policy=policy).device
        assert device
        for i in range(app.config["LOGIN_SLOWDOWN_AFTER"] + 3):
            login(user.email, f"wrong password {i}", policy=policy, ip=f"198.51.100.{i % 4}")
        assert login(user.email, policy=policy, ip="192.0.2.99").reason == "throttled"
        # Even from an address the attack used (a shared network), the known device gets in at once.
        result = accounts.authenticate(user.email, PASSWORD, ip="198.51.100.1", user_agent=UA, policy=policy,
                                       device=device)
        assert result.token and result.reason is None
        assert result.device and result.device != device  # a fresh token each login

    def test_a_device_token_counts_only_for_its_account_and_only_within_its_own_limit(self, app, policy):
        owner, other = create_user(), create_user()
        device = accounts.authenticate(owner.email, PASSWORD, ip=IP, user_agent=UA, policy=policy).device
        for i in range(app.config["LOGIN_SLOWDOWN_AFTER"]):
            login(other.email, f"wrong password {i}", policy=policy, ip=f"198.51.100.{i}")
            login(owner.email, f"wrong password {i}", policy=policy, ip=f"198.51.100.{i}")

        def attempt(email, password=PASSWORD, token=device):
            return accounts.authenticate(email, password, ip="192.0.2.50", user_agent=UA, policy=policy, device=token)

        # Another account's device token, or a forged one, is no device at all.
        assert attempt(other.email).reason == "throttled"
        assert attempt(owner.email, token=device[:-2] + ("AA" if device[-2:] != "AA" else "BB")).reason \
            == "throttled"
        # The device's own guesses are limited: past the limit it is trusted no more.
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
            assert attempt(owner.email, f"device guess {i}").reason == "bad_credentials"
        assert attempt(owner.email).reason == "throttled"

    def test_throttling_does_not_reveal_whether_the_account_exists(self, app, policy):
        nobody = unique_email("nobody")
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
            login(nobody, f"wrong password {i}", policy=policy)
        assert login(nobody, PASSWORD, policy=policy).reason == "throttled"
        slowed, real = unique_email("nobody"), create_user()
        for email in (slowed, real.email):
            for i in range(app.config["LOGIN_SLOWDOWN_AFTER"]):
                login(email, f"wrong password {i}", policy=policy, ip=f"198.51.100.{i}")
        answers = [login(email, "a guess", policy=policy, ip="192.0.2.7") for email in (slowed, real.email)]
        assert [(a.reason, a.retry_after, a.error) for a in answers][0] == \
            [(a.reason, a.retry_after, a.error) for a in answers][1]

    def test_throttled_per_ip_after_the_limit(self, app, policy, monkeypatch):
        monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_IP", 3)
        user = create_user()
        for i in range(3):
            login(unique_email(f"guess{i}"), "wrong password", policy=policy, ip=IP)
        result = login(user.email, policy=policy, ip=IP)
        assert result.reason == "throttled" and result.token is None
        assert "Try again in" in result.error
        assert login(user.email, policy=policy, ip="192.0.2.200").token

    def test_success_resets_the_account_counter_but_not_the_ip_counter(self, app, policy):
        user = create_user()
        limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
        for i in range(limit - 1):
            login(user.email, f"wrong password {i}", policy=policy)
        assert login(user.email, policy=policy).token
        assert limit_row(f"login:account:{user.email}") is None
        assert limit_row(pair_key(user.email, IP)) is None
        assert limit_row(f"login:ip:{IP}").count == limit - 1
        # A fresh allowance: limit - 1 more failures still leave the account open.
        for i in range(limit - 1):
            login(user.email, f"wrong password {i}", policy=policy)
        assert login(user.email, policy=policy).token

    def test_a_passed_window_counts_as_empty(self, app, policy):
        user = create_user()
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
            login(user.email, f"wrong password {i}", policy=policy)
        assert login(user.email, policy=policy).reason == "throttled"
        window = app.config["LOGIN_THROTTLE_WINDOW_SECONDS"]
        db.session.execute(update(RateLimit).where(RateLimit.key.in_([pair_key(user.email, IP), f"login:ip:{IP}"]))
                           .values(window_start=func.now() - timedelta(seconds=window + 5)))
        assert login(user.email, policy=policy).token

    def test_old_hash_parameters_are_upgraded_at_login(self, app, policy):
        user = create_user()
        user.password_hash = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1).hash(PASSWORD)
        db.session.flush()
        assert login(user.email, policy=policy).token
        db.session.flush()
        db.session.expire(user)
        assert user.password_hash.startswith(f"$argon2id$v=19$m={app.config['ARGON2_MEMORY_COST']},"
                                             f"t={app.config['ARGON2_TIME_COST']},p=1$")
        assert passwords.verify_password(user.password_hash, PASSWORD)

    def test_current_hash_is_left_alone(self, policy):
        user = create_user()
        before = user.password_hash
        assert login(user.email, policy=policy).token
        assert user.password_hash == before

    def test_logout_revokes_the_session(self, policy):
        user = create_user()
        token = login(user.email, policy=policy).token
        accounts.logout(token)
        row = session_row(token)
        db.session.refresh(row)
        assert row.revoked_at is not None and row.revoked_reason == "logout"
        assert sessions.resolve(token, policy) is None
        accounts.logout(None)  # nothing to end, no error


class TestSessionResolution:
    def test_idle_session_ends(self, policy):
        user = create_user()
        token = login(user.email, policy=policy).token
        row = session_row(token)
        row.last_seen_at = utcnow() - policy.idle - timedelta(seconds=1)
        db.session.flush()
        assert sessions.resolve(token, policy) is None
        assert row.revoked_reason == "idle"

    def test_expired_session_ends(self, policy):
        user = create_user()
        token = login(user.email, policy=policy).token
        session_row(token).expires_at = utcnow() - timedelta(seconds=1)
        db.session.flush()
        assert sessions.resolve(token, policy) is None

    def test_touch_at_most_once_a_minute(self, policy):
        user = create_user()
        token = login(user.email, policy=policy).token
        row = session_row(token)
        seen = row.last_seen_at
        sessions.resolve(token, policy)
        assert row.last_seen_at == seen
        row.last_seen_at = seen - sessions.TOUCH_EVERY
        sessions.resolve(token, policy)
        assert row.last_seen_at > seen - sessions.TOUCH_EVERY

    @pytest.mark.parametrize("token", [None, "", "x" * 101, "unknown-token"])
    def test_unknown_tokens_resolve_to_nobody(self, policy, token):
        assert sessions.resolve(token, policy) is None

    def test_user_agent_is_cut_and_cleaned(self, policy):
        user = create_user()
        token = sessions.start_session(user, ip=None, user_agent="a\x00b" + "c" * 400, policy=policy)
        db.session.flush()
        row = session_row(token)
        assert row.user_agent == "ab" + "c" * 298 and row.ip_address is None


# ---------------------------------------------------------------- passwords

class TestChangePassword:
    def test_needs_the_current_password(self, policy):
        user = create_user()
        before = user.password_hash
        for current in ("", "not my password"):
            with pytest.raises(accounts.InvalidInput) as caught:
                accounts.change_password(user, current, NEW_PASSWORD, keep_token=None)
            assert caught.value.field == "current_password"
            assert caught.value.message == "Your current password is not right."
        assert user.password_hash == before

    @pytest.mark.parametrize(("new", "message"), [
        ("short", "Use at least 10 characters."),
        (PASSWORD, "Choose a password different from the current one."),
    ])
    def test_new_password_is_checked(self, new, message):
        user = create_user()
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.change_password(user, PASSWORD, new, keep_token=None)
        assert (caught.value.field, caught.value.message) == ("new_password", message)

    def test_changes_and_ends_every_other_session(self, policy):
        user = create_user()
        kept = login(user.email, policy=policy).token
        other = login(user.email, policy=policy).token
        changed_before = user.password_changed_at
        accounts.change_password(user, PASSWORD, NEW_PASSWORD, keep_token=kept)
        assert passwords.verify_password(user.password_hash, NEW_PASSWORD)
        assert not passwords.verify_password(user.password_hash, PASSWORD)
        assert user.password_changed_at > changed_before
        assert sessions.resolve(kept, policy) is not None
        assert sessions.resolve(other, policy) is None
        assert session_row(other).revoked_reason == "password_changed"
        assert [n.title for n in notifications_of(user)] == ["Your password was changed"]
        assert login(user.email, PASSWORD, policy=policy).reason == "bad_credentials"
        assert login(user.email, NEW_PASSWORD, policy=policy).token

    def test_without_a_kept_token_every_session_ends(self, policy):
        user = create_user()
        token = login(user.email, policy=policy).token
        accounts.change_password(user, PASSWORD, NEW_PASSWORD, keep_token=None)
        assert sessions.resolve(token, policy) is None


class TestPasswordReset:
    def test_request_queues_a_link_for_an_active_account(self, links):
        user = create_user()
        accounts.request_password_reset(f" {user.email.upper()} ", links)
        [mail] = emails_to(user.email)
        assert mail.template == "reset_password"
        assert accounts.check_reset_token(token_of(link_in(mail, "reset"))).id == user.id

    def test_request_is_silent_for_unknown_invalid_and_inactive(self, links):
        gone = create_user(status=UserStatus.DEACTIVATED)
        invited = create_user("faculty", status=UserStatus.INVITED, password=None)
        before = email_count()
        for address in (unique_email("nobody"), "not an address", "", gone.email, invited.email):
            assert accounts.request_password_reset(address, links) is None
        assert email_count() == before

    def test_reset_sets_the_password_once_and_ends_every_session(self, policy):
        user = create_user(verified=False)
        other = create_user()
        token = accounts.password_reset_token(user)
        db.session.add(SessionValidation(user_id=user.id, token_hash="a" * 64, last_seen_at=utcnow(),
                                         expires_at=utcnow() + timedelta(hours=1)))
        live = sessions.start_session(user, ip=None, user_agent=None, policy=policy)
        others = sessions.start_session(other, ip=None, user_agent=None, policy=policy)
        db.session.flush()
        assert accounts.reset_password(token, NEW_PASSWORD).id == user.id
        assert passwords.verify_password(user.password_hash, NEW_PASSWORD)
        # Reading the mail proved the address.
        assert user.email_verified_at is not None
        assert live_sessions(user.id) == []
        assert session_row(live).revoked_reason == "password_reset"
        assert sessions.resolve(others, policy) is not None
        with pytest.raises(accounts.InvalidInput, match="already been used"):
            accounts.reset_password(token, "yet another passphrase")
        assert passwords.verify_password(user.password_hash, NEW_PASSWORD)
        assert login(user.email, NEW_PASSWORD, policy=policy).token

    def test_reset_lifts_the_account_throttle(self, app, policy):
        user = create_user()
        for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
            login(user.email, f"wrong password {i}", policy=policy)
        for i in range(app.config["LOGIN_SLOWDOWN_AFTER"]):
            login(user.email, f"wrong password {i}", policy=policy, ip=f"198.51.100.{i}")
        assert login(user.email, policy=policy).reason == "throttled"
        assert login(user.email, policy=policy, ip="192.0.2.99").reason == "throttled"
        accounts.reset_password(accounts.password_reset_token(user), NEW_PASSWORD)
        assert limit_row(f"login:account:{user.email}") is None
        assert limit_row(pair_key(user.email, IP)) is None
        assert limit_row(pair_key(user.email, "198.51.100.1")) is None
        # Proving the address forgets the failures on the account, not those of the address.
        assert limit_row(f"login:ip:{IP}") is not None
        assert login(user.email, NEW_PASSWORD, policy=policy).token

    def test_a_link_stops_working_once_the_password_changes_otherwise(self):
        user = create_user()
        token = accounts.password_reset_token(user)
        accounts.change_password(user, PASSWORD, NEW_PASSWORD, keep_token=None)
        with pytest.raises(accounts.InvalidInput, match="already been used"):
            accounts.check_reset_token(token)

    @pytest.mark.parametrize("make", [
        lambda user: tamper(accounts.password_reset_token(user)),
        lambda user: accounts.verification_token(user),
        lambda user: accounts.invite_token(user),
        lambda user: tokens.make_token(accounts._secret(), "reset", {"u": "nope", "p": ""}),
        lambda user: "",
    ], ids=["tampered", "verify-token", "invite-token", "bad-uuid", "empty"])
    def test_wrong_tokens_change_nothing(self, make):
        user = create_user()
        before = user.password_hash
        with pytest.raises(accounts.InvalidInput):
            accounts.reset_password(make(user), NEW_PASSWORD)
        assert user.password_hash == before

    def test_expired_link(self, app, monkeypatch):
        user = create_user()
        token = aged_token(monkeypatch, app.config["PASSWORD_RESET_MAX_AGE"] + 5,
                           lambda: accounts.password_reset_token(user))
        with pytest.raises(accounts.InvalidInput, match="expired"):
            accounts.reset_password(token, NEW_PASSWORD)

    def test_weak_password_keeps_the_link_usable(self):
        user = create_user()
        token = accounts.password_reset_token(user)
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.reset_password(token, "short")
        assert caught.value.field == "new_password"
        assert accounts.reset_password(token, NEW_PASSWORD).id == user.id

    def test_deactivated_account_cannot_reset(self):
        user = create_user()
        token = accounts.password_reset_token(user)
        user.status = UserStatus.DEACTIVATED
        with pytest.raises(accounts.InvalidInput, match="cannot log in"):
            accounts.reset_password(token, NEW_PASSWORD)


# ---------------------------------------------------------------- staff accounts

class TestStaffAccounts:
    def test_admin_invites_staff(self, links):
        admin = create_user("admin")
        email = unique_email("prof")
        user = accounts.create_staff(admin, email.upper(), "Grace Hopper", "faculty", links)
        assert (user.email, user.role, user.status) == (email, Role.FACULTY, UserStatus.INVITED)
        assert user.password_hash is None and user.faculty is not None and user.student is None
        [mail] = emails_to(email)
        assert mail.template == "invite" and admin.full_name in mail.body_text and "Faculty" in mail.body_text
        assert accounts.check_invite(token_of(link_in(mail, "invite"))).id == user.id

    def test_compliance_and_admin_get_no_profile(self, links):
        admin = create_user("admin")
        officer = accounts.create_staff(admin, unique_email(), "Ada Officer", Role.COMPLIANCE, links)
        second = accounts.create_staff(admin, unique_email(), "Alan Admin", "admin", links)
        assert officer.role == Role.COMPLIANCE and officer.faculty is None and officer.student is None
        assert second.role == Role.ADMIN

    @pytest.mark.parametrize("role", ["student", "faculty", "compliance"])
    def test_only_admins_create_staff(self, links, role):
        actor = create_user(role)
        before = user_count()
        with pytest.raises(Forbidden):
            accounts.create_staff(actor, unique_email(), "Grace Hopper", "faculty", links)
        assert user_count() == before

    def test_a_deactivated_admin_cannot_act(self, links):
        admin = create_user("admin", status=UserStatus.DEACTIVATED)
        with pytest.raises(Forbidden):
            accounts.create_staff(admin, unique_email(), "Grace Hopper", "faculty", links)

    @pytest.mark.parametrize(("role", "field"), [("student", "role"), ("overlord", "role"), ("", "role")])
    def test_staff_roles_only(self, links, role, field):
        admin = create_user("admin")
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.create_staff(admin, unique_email(), "Grace Hopper", role, links)
        assert caught.value.field == field

    def test_existing_address_is_refused(self, links):
        admin = create_user("admin")
        existing = create_user()
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.create_staff(admin, existing.email.upper(), "Grace Hopper", "faculty", links)
        assert caught.value.field == "email"

    def test_cli_creates_an_active_verified_account_with_a_password(self):
        email = unique_email("ops")
        user = accounts.create_staff(None, email, "Ops Admin", "admin", None, password=NEW_PASSWORD)
        assert user.status == UserStatus.ACTIVE and user.email_verified_at is not None
        assert passwords.verify_password(user.password_hash, NEW_PASSWORD)
        assert emails_to(email) == []

    def test_cli_password_is_checked(self):
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.create_staff(None, unique_email(), "Ops Admin", "admin", None, password="short")
        assert caught.value.field == "password"

    def test_accept_invite_sets_the_password_once(self, links, policy):
        admin = create_user("admin")
        user = accounts.create_staff(admin, unique_email(), "Grace Hopper", "faculty", links)
        token = accounts.invite_token(user)
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.accept_invite(token, "short")
        assert caught.value.field == "new_password" and user.status == UserStatus.INVITED
        accounts.accept_invite(token, NEW_PASSWORD)
        assert user.status == UserStatus.ACTIVE and user.email_verified_at is not None
        assert login(user.email, NEW_PASSWORD, policy=policy).token
        with pytest.raises(accounts.InvalidInput):
            accounts.accept_invite(token, "a third passphrase")
        assert passwords.verify_password(user.password_hash, NEW_PASSWORD)

    def test_invite_of_an_active_account_says_log_in(self, links):
        user = create_user("faculty")
        user.password_changed_at = None  # a token bound to this state passes the stamp check
        db.session.flush()
        with pytest.raises(accounts.InvalidInput, match="already been accepted"):
            accounts.check_invite(accounts.invite_token(user))

    def test_invite_of_a_deactivated_account_says_so(self, links):
        admin = create_user("admin")
        user = accounts.create_staff(admin, unique_email(), "Grace Hopper", "faculty", links)
        token = accounts.invite_token(user)
        accounts.deactivate(admin, user.id)
        with pytest.raises(accounts.InvalidInput, match="deactivated"):
            accounts.accept_invite(token, NEW_PASSWORD)
        assert user.password_hash is None

    def test_expired_invite(self, app, links, monkeypatch):
        admin = create_user("admin")
        user = accounts.create_staff(admin, unique_email(), "Grace Hopper", "faculty", links)
        token = aged_token(monkeypatch, app.config["INVITE_MAX_AGE"] + 5, lambda: accounts.invite_token(user))
        with pytest.raises(accounts.InvalidInput, match="expired"):
            accounts.check_invite(token)

    def test_resend_invite(self, links):
        admin = create_user("admin")
        user = accounts.create_staff(admin, unique_email(), "Grace Hopper", "faculty", links)
        accounts.resend_invite(admin, user.id, links)
        mails = emails_to(user.email, "invite")
        assert len(mails) == 2
        assert accounts.check_invite(token_of(link_in(mails[-1], "invite"))).id == user.id

    def test_resend_invite_refusals(self, links):
        admin = create_user("admin")
        active = create_user("faculty")
        invited = accounts.create_staff(admin, unique_email(), "Grace Hopper", "faculty", links)
        with pytest.raises(Conflict):
            accounts.resend_invite(admin, active.id, links)
        with pytest.raises(NotFound):
            accounts.resend_invite(admin, uuid.uuid4(), links)
        with pytest.raises(Forbidden):
            accounts.resend_invite(create_user("faculty"), invited.id, links)
        assert len(emails_to(invited.email, "invite")) == 1


# ---------------------------------------------------------------- roles and status

class TestRolesAndStatus:
    def test_change_role_builds_the_profile_ends_sessions_and_notifies(self, policy):
        admin = create_user("admin")
        user = create_user("faculty")
        token = login(user.email, policy=policy).token
        assert accounts.change_role(admin, user.id, "student").role == Role.STUDENT
        assert user.student is not None and user.student.student_number.startswith("AZ-")
        assert sessions.resolve(token, policy) is None
        assert session_row(token).revoked_reason == "role_changed"
        [note] = notifications_of(user)
        assert note.title == "Your role is now Student" and "from Faculty to Student" in note.body

    def test_same_role_changes_nothing(self, policy):
        admin = create_user("admin")
        user = create_user("faculty")
        token = login(user.email, policy=policy).token
        accounts.change_role(admin, user.id, Role.FACULTY)
        assert sessions.resolve(token, policy) is not None
        assert notifications_of(user) == []

    def test_change_role_refusals(self):
        admin = create_user("admin")
        user = create_user("faculty")
        with pytest.raises(Forbidden):
            accounts.change_role(create_user("compliance"), user.id, "admin")
        with pytest.raises(Forbidden, match="your own role"):
            accounts.change_role(admin, admin.id, "student")
        with pytest.raises(accounts.InvalidInput) as caught:
            accounts.change_role(admin, user.id, "overlord")
        assert caught.value.field == "role"
        with pytest.raises(NotFound):
            accounts.change_role(admin, uuid.uuid4(), "student")
        assert (user.role, admin.role) == (Role.FACULTY, Role.ADMIN)

    def test_an_admin_may_demote_another_admin(self):
        admin, other = create_user("admin"), create_user("admin")
        accounts.change_role(admin, other.id, "faculty")
        assert other.role == Role.FACULTY and other.faculty is not None

    def test_deactivate_ends_sessions_and_blocks_login(self, policy):
        admin = create_user("admin")
        user = create_user()
        token = login(user.email, policy=policy).token
        accounts.deactivate(admin, user.id)
        assert user.status == UserStatus.DEACTIVATED
        assert sessions.resolve(token, policy) is None
        assert session_row(token).revoked_reason == "deactivated"
        assert login(user.email, policy=policy).reason == "inactive"

    def test_deactivate_refusals(self):
        admin = create_user("admin")
        user = create_user()
        with pytest.raises(Forbidden, match="your own account"):
            accounts.deactivate(admin, admin.id)
        with pytest.raises(Forbidden):
            accounts.deactivate(create_user("faculty"), user.id)
        assert admin.status == user.status == UserStatus.ACTIVE

    def test_reactivate_lets_the_user_back_in(self, policy):
        admin = create_user("admin")
        user = create_user()
        accounts.deactivate(admin, user.id)
        accounts.reactivate(admin, user.id)
        assert user.status == UserStatus.ACTIVE
        assert login(user.email, policy=policy).token

    def test_reactivating_a_never_accepted_invite_returns_it_to_invited(self, links):
        admin = create_user("admin")
        user = accounts.create_staff(admin, unique_email(), "Grace Hopper", "faculty", links)
        accounts.deactivate(admin, user.id)
        accounts.reactivate(admin, user.id)
        assert user.status == UserStatus.INVITED
        assert accounts.check_invite(accounts.invite_token(user)).id == user.id

    def test_reactivate_needs_an_admin(self):
        user = create_user(status=UserStatus.DEACTIVATED)
        with pytest.raises(Forbidden):
            accounts.reactivate(create_user("compliance"), user.id)
        assert user.status == UserStatus.DEACTIVATED

    @pytest.mark.parametrize(("start", "target", "allowed"), [
        (UserStatus.INVITED, UserStatus.ACTIVE, True),
        (UserStatus.INVITED, UserStatus.DEACTIVATED, True),
        (UserStatus.ACTIVE, UserStatus.DEACTIVATED, True),
        (UserStatus.ACTIVE, UserStatus.INVITED, False),
        (UserStatus.DEACTIVATED, UserStatus.ACTIVE, True),
        (UserStatus.DEACTIVATED, UserStatus.INVITED, True),
        (UserStatus.ACTIVE, UserStatus.ACTIVE, True),
    ])
    def test_status_transitions(self, start, target, allowed):
        user = User(email="t@tests.example", full_name="T", role=Role.STUDENT, status=start)
        if allowed:
            user.move_to(target)
            assert user.status == target
        else:
            with pytest.raises(InvalidTransition):
                user.move_to(target)
            assert user.status == start
