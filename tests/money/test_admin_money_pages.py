"""The money administrators' dashboard: who may see it, what it shows (system wallets, users'
totals, the last verification, pending withdrawals), "Verify now", the user search, and its
statement budget."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, text

from portal.db import db
from portal.money.wallets import admin_queries, admin_services, ledger
from portal.money.wallets.models import SystemWallet, TransactionType, Wallet
from portal.platform.analytics.models import Metric
from tests.factories import create_user

ROLES_WITHOUT = ["student", "faculty", "compliance"]


def _fund(user, amount: str, code: str = "USD") -> Wallet:
    wallet = ledger.open_user_wallet(user.id, code)
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, code)
    ledger.post([ledger.Leg(deposits, wallet, Decimal(amount), TransactionType.DEPOSIT, "Test deposit")])
    return wallet


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("role", ROLES_WITHOUT)
def test_only_money_admins_reach_the_pages(client, login_as, role, htmx):
    login_as(role)
    headers = {"HX-Request": "true"} if htmx else {}
    for path in ("/wallet/admin", "/wallet/admin/fees", f"/wallet/admin/users/{create_user().id}",
                 "/wallet/admin/users?email=a"):
        response = client.get(path, headers=headers)
        assert response.status_code == 403, path
        assert "manage fees, rates and withdrawals" in response.get_data(as_text=True)
        assert ("<html" in response.get_data(as_text=True)) is not htmx
    assert client.post("/wallet/admin/verify", headers=headers).status_code == 403
    assert db.session.scalar(select(Metric.id).where(Metric.name == "ledger.verification").limit(1)) is None


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/wallet/admin")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert client.get("/wallet/admin", headers={"HX-Request": "true"}).status_code == 401


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_the_dashboard_shows_system_wallets_users_totals_and_links(client, login_as, htmx):
    login_as("admin")
    alice, bob = create_user("student"), create_user("student")
    _fund(alice, "1234.5")
    _fund(bob, "0.25", "BTC")
    fees = ledger.system_wallet(SystemWallet.FEES, "USD")
    ledger.post([ledger.Leg(ledger.user_wallet(alice.id, "USD"), fees, Decimal("4.5"), TransactionType.FEE)])
    headers = {"HX-Request": "true", "HX-Boosted": "true"} if htmx else {}
    response = client.get("/wallet/admin", headers=headers)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Balances by currency" in body
    for label in ("Deposits", "Withdrawals", "Rewards", "Fees", "Exchange", "Card float", "Loan book"):
        assert f">{label}<" in body, label
    # what this test added shows in the totals (other committed data may add to them)
    position = {p.code: p for p in admin_queries.positions().currencies}
    assert position["USD"].users_balance >= Decimal("1230") and position["USD"].net == 0
    assert position["BTC"].net == 0 and position["USD"].system[SystemWallet.FEES] >= Decimal("4.5")
    assert "balanced" in body
    assert "/wallet/admin/fees" in body and "/wallet/admin/exchange" in body and "/wallet/admin/withdrawals" in body
    assert "Verify now" in body
    assert ("has not been verified yet" in body) is (admin_queries.last_verification() is None)
    assert response.headers.get("Vary", "").lower().find("hx-request") >= 0


def test_verify_now_records_and_shows_the_result(client, login_as):
    admin = login_as("admin")
    wallet = _fund(create_user("student"), "10")
    response = client.post("/wallet/admin/verify", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="verification"' in body and "Verified." in body and "<html" not in body
    assert admin.email in body
    metric = db.session.scalar(select(Metric).where(Metric.name == "ledger.verification")
                               .order_by(Metric.recorded_at.desc()).limit(1))
    assert metric.value == 0 and metric.labels["ran_by"] == admin.email

    with ledger.as_ledger():
        db.session.execute(text("UPDATE wallets SET balance = balance + 5 WHERE id = :id"), {"id": wallet.id})
    # without JavaScript: post, redirect, the dashboard shows the problems
    response = client.post("/wallet/admin/verify")
    assert response.status_code == 302 and response.headers["Location"].endswith("/wallet/admin")
    page = client.get("/wallet/admin").get_data(as_text=True)
    assert "The ledger does not verify: 2 difference(s)" in page
    assert "2 differences found." in page and str(wallet.id) in page
    with ledger.as_ledger():
        db.session.execute(text("UPDATE wallets SET balance = balance - 5 WHERE id = :id"), {"id": wallet.id})


def test_the_last_verification_lists_few_problems_and_says_how_many_more(client, login_as):
    login_as("admin")
    report = ledger.Verification(wallets=1, transactions=1, problems=[f"difference {n}" for n in range(60)])
    db.session.add(Metric(name=admin_services.VERIFICATION_METRIC, value=60,
                          labels=admin_services.verification_labels(report, "nightly job")))
    db.session.flush()
    body = client.get("/wallet/admin").get_data(as_text=True)
    assert "60 differences found." in body and "difference 49" in body and "difference 50" not in body
    assert "and 10 more" in body and "flask ledger verify" in body


def test_the_pending_withdrawals_count_is_shown(client, login_as, monkeypatch):
    login_as("admin")
    monkeypatch.setattr(admin_queries, "pending_withdrawals", lambda: 3)
    body = client.get("/wallet/admin").get_data(as_text=True)
    assert "3 pending" in body


def test_pending_withdrawals_counts_only_pending_rows():
    from portal.money.earnings.models import Withdrawal, WithdrawalMethod, WithdrawalStatus

    before = admin_queries.pending_withdrawals()
    user = create_user("student")
    wallet = _fund(user, "50")
    for status in (WithdrawalStatus.PENDING, WithdrawalStatus.PENDING, WithdrawalStatus.REJECTED):
        db.session.add(Withdrawal(user_id=user.id, wallet_id=wallet.id, amount=Decimal("5"), currency="USD",
                                  method=WithdrawalMethod.BANK_ACCOUNT, destination_encrypted=b"x",
                                  destination_masked="****1234", status=status,
                                  reviewed_at=None if status == WithdrawalStatus.PENDING else db.func.now()))
    db.session.flush()
    assert admin_queries.pending_withdrawals() == before + 2


def test_search_by_email_goes_to_the_one_match_or_lists_several(client, login_as):
    login_as("admin")
    one = create_user("student", email="zoe.unique-h5@tests.example")
    create_user("student", email="twin-h5-a@tests.example")
    create_user("student", email="twin-h5-b@tests.example")
    response = client.get("/wallet/admin/users?email=ZOE.unique-h5@tests.example")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/wallet/admin/users/{one.id}")
    listed = client.get("/wallet/admin/users?email=twin-h5")
    body = listed.get_data(as_text=True)
    assert listed.status_code == 200 and "twin-h5-a@tests.example" in body and "twin-h5-b@tests.example" in body
    missing = client.get("/wallet/admin/users?email=nobody-h5%25")
    assert missing.status_code == 404 and "No account" in missing.get_data(as_text=True)
    empty = client.get("/wallet/admin/users?email=", headers={"HX-Request": "true"})
    assert empty.status_code == 422 and "Type an e-mail" in empty.get_data(as_text=True)
    assert "<html" not in empty.get_data(as_text=True)


def test_the_dashboard_keeps_its_statement_budget(client, login_as, statements):
    login_as("admin")
    for n in range(3):
        _fund(create_user("student"), f"{n + 1}")
    client.get("/wallet/admin")
    with statements() as few:
        assert client.get("/wallet/admin").status_code == 200
    for n in range(25):
        _fund(create_user("student"), f"{n + 1}", "AZR" if n % 2 else "USD")
    with statements() as many:
        assert client.get("/wallet/admin").status_code == 200
    assert many.count == few.count <= 12, many.statements


def test_the_positions_are_summed_once_per_period_and_anew_after_a_wallet_changes_status(client, login_as,
                                                                                          statements):
    """Summing every wallet on each view grew with the users: the sum is kept in the shared
    cache for ``POSITIONS_SECONDS`` and the page says when it was made. Freezing a wallet makes
    it stale at once (the overview counts wallets that are not active)."""
    admin = login_as("admin")
    wallet = _fund(create_user("student"), "7")
    first = admin_queries.positions()
    _fund(create_user("student"), "5")  # money moves: the sum stays as it was, for a while
    with statements() as again:
        second = admin_queries.positions()
    assert second.as_of == first.as_of
    assert [p.users_balance for p in second.currencies] == [p.users_balance for p in first.currencies]
    assert not any("sum(wallets.balance)" in s for s in again.statements)
    body = client.get("/wallet/admin").get_data(as_text=True)
    assert f'datetime="{first.as_of.isoformat()}"' in body and "at most every 30 seconds" in body

    admin_services.set_wallet_frozen(admin, wallet.id, True, "Checking a reported payment")
    db.session.commit()
    third = admin_queries.positions()
    usd = {p.code: p for p in third.currencies}["USD"]
    assert usd.frozen_wallets >= 1 and third.as_of >= first.as_of
    assert usd.users_balance >= {p.code: p for p in first.currencies}["USD"].users_balance + 5
