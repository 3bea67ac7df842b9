"""A user's wallets and history for money admins (read-only, keyset pages), and freezing and
unfreezing a wallet with a reason, which leaves an audit row and stops the ledger."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.db.audit import AuditLog
from portal.errors import Forbidden
from portal.money.wallets import admin_queries, admin_services, ledger
from portal.money.wallets.models import SystemWallet, TransactionType, Wallet, WalletStatus
from portal.platform.notifications.models import Notification
from tests.factories import create_user

HX = {"HX-Request": "true"}


def _fund(user, amount: str, code: str = "USD") -> Wallet:
    wallet = ledger.open_user_wallet(user.id, code)
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, code)
    ledger.post([ledger.Leg(deposits, wallet, Decimal(amount), TransactionType.DEPOSIT, "Test deposit")])
    return wallet


def _reload(wallet: Wallet) -> Wallet:
    with ledger.as_ledger():
        return db.session.scalars(select(Wallet).where(Wallet.id == wallet.id)
                                  .execution_options(populate_existing=True)).one()


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_the_user_page_shows_wallets_and_history(client, login_as, htmx):
    login_as("admin")
    alice, bob = create_user("student", full_name="Alice Ledger"), create_user("student", full_name="Bob Ledger")
    a = _fund(alice, "100")
    _fund(alice, "3.5", "AZR")
    b = ledger.open_user_wallet(bob.id, "USD")
    ledger.post([ledger.Leg(a, b, Decimal("30"), TransactionType.TRANSFER, "Transfer to Bob Ledger")])
    ledger.post([ledger.Leg(b, a, Decimal("2.25"), TransactionType.TRANSFER, "Transfer to Alice Ledger")])
    held = ledger.hold([ledger.Leg(a, ledger.system_wallet(SystemWallet.WITHDRAWALS, "USD"), Decimal("10"),
                                   TransactionType.WITHDRAWAL, "Withdrawal")])
    assert held
    headers = {**HX, "HX-Boosted": "true"} if htmx else {}
    response = client.get(f"/wallet/admin/users/{alice.id}", headers=headers)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in body
    assert "Alice Ledger" in body and alice.email in body
    assert "72.25 USD" in body and "10.00 USD" in body and "62.25 USD" in body  # balance, held, available
    assert "3.50 AZR" in body
    assert "to Bob Ledger" in body and "from Bob Ledger" in body and "from Deposits" in body
    assert "+100.00 USD" in body and "\u221230.00 USD" in body and "+2.25 USD" in body
    assert "hold" in body
    assert "Freeze this wallet" in body


def test_history_pages_with_a_keyset_cursor(client, login_as):
    login_as("admin")
    user = create_user("student")
    wallet = _fund(user, "1000")
    other = ledger.open_user_wallet(create_user("student").id, "USD")
    for n in range(admin_queries.HISTORY_PAGE_SIZE + 5):
        ledger.post([ledger.Leg(wallet, other, Decimal(n + 1), TransactionType.TRANSFER, f"Payment {n + 1}")])
    first = admin_queries.user_history(user.id)
    assert len(first.items) == admin_queries.HISTORY_PAGE_SIZE and first.has_next
    second = admin_queries.user_history(user.id, first.next_cursor)
    assert len(second.items) == 6 and not second.has_next  # 30 payments and the deposit
    ids = [r.id for r in first.items + second.items]
    assert len(set(ids)) == len(ids) == admin_queries.HISTORY_PAGE_SIZE + 6
    keys = [(r.created_at, r.id) for r in first.items + second.items]
    assert keys == sorted(keys, reverse=True)

    page = client.get(f"/wallet/admin/users/{user.id}").get_data(as_text=True)
    assert "Show older" in page and f"after={first.next_cursor}" in page
    more = client.get(f"/wallet/admin/users/{user.id}?after={first.next_cursor}", headers=HX)
    body = more.get_data(as_text=True)
    assert more.status_code == 200 and "<html" not in body and "<tr" in body
    assert "Show older" not in body and "Test deposit" in body
    # a malformed cursor is the first page, never an error
    assert client.get(f"/wallet/admin/users/{user.id}?after=%%%").status_code == 200


def test_an_unknown_user_is_404(client, login_as):
    login_as("admin")
    assert client.get(f"/wallet/admin/users/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/wallet/admin/users/{uuid.uuid4()}", headers=HX).status_code == 404


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_freeze_and_unfreeze_with_a_reason_leave_an_audit_trail(client, login_as, htmx):
    admin = login_as("admin")
    owner = create_user("student")
    wallet = _fund(owner, "50")
    db.session.commit()
    other = ledger.open_user_wallet(create_user("student").id, "USD")
    headers = HX if htmx else {}

    response = client.post(f"/wallet/admin/wallets/{wallet.id}/status", headers=headers,
                           data={"action": "freeze", "reason": "Suspicious login from a new country"})
    if htmx:
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" not in body and f'id="wallet-{wallet.id}"' in body
        assert "Unfreeze this wallet" in body and response.headers["HX-Trigger"] == "wallet-status-changed"
    else:
        assert response.status_code == 302 and response.headers["Location"].endswith(f"/wallet/admin/users/{owner.id}")
    frozen = _reload(wallet)
    assert frozen.status == WalletStatus.FROZEN and frozen.status_reason == "Suspicious login from a new country"
    audit = db.session.scalars(select(AuditLog).where(AuditLog.table_name == "wallets",
                                                      AuditLog.row_id == str(wallet.id),
                                                      AuditLog.action == "UPDATE")
                               .order_by(AuditLog.seq.desc())).first()
    assert audit.actor == f"user:{admin.id}"
    assert audit.old_values["status"] == "active" and audit.new_values["status"] == "frozen"
    assert audit.new_values["statusReason"] == "Suspicious login from a new country"
    note = db.session.scalar(select(Notification).where(Notification.user_id == owner.id)
                             .order_by(Notification.created_at.desc()).limit(1))
    assert "frozen" in note.title and "Suspicious login" in note.body

    # the ledger refuses to move money out of (or into) the frozen wallet
    with pytest.raises(ledger.WalletUnavailable):
        ledger.post([ledger.Leg(frozen, other, Decimal("1"), TransactionType.TRANSFER)])
    # and the page lists the change (the list refreshes itself after an htmx freeze)
    page = client.get(f"/wallet/admin/users/{owner.id}").get_data(as_text=True)
    assert "Freezes and unfreezes" in page and admin.email in page and "Suspicious login" in page
    assert 'hx-trigger="wallet-status-changed from:body"' in page
    part = client.get(f"/wallet/admin/users/{owner.id}?part=changes", headers=HX).get_data(as_text=True)
    assert part.lstrip().startswith('<div id="status-changes"') and "Suspicious login" in part

    response = client.post(f"/wallet/admin/wallets/{wallet.id}/status", headers=headers,
                           data={"action": "unfreeze", "reason": "Owner confirmed the login"})
    assert response.status_code == (200 if htmx else 302)
    active = _reload(wallet)
    assert active.status == WalletStatus.ACTIVE
    ledger.post([ledger.Leg(active, other, Decimal("1"), TransactionType.TRANSFER)])
    changes = admin_queries.status_changes([wallet.id])
    assert [(c.old, c.new) for c in changes] == [("frozen", "active"), ("active", "frozen")]
    assert changes[0].actor == admin.email and changes[0].reason == "Owner confirmed the login"


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_a_missing_reason_is_refused_beside_the_field(client, login_as, htmx):
    login_as("admin")
    wallet = _fund(create_user("student"), "5")
    db.session.commit()
    response = client.post(f"/wallet/admin/wallets/{wallet.id}/status", headers=HX if htmx else {},
                           data={"action": "freeze", "reason": "  no "})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="w-{wallet.id.hex[:12]}-reason-error"' in body and "at least 5 characters" in body
    assert ("<html" in body) is not htmx
    assert _reload(wallet).status == WalletStatus.ACTIVE


def test_status_changes_that_make_no_sense_are_refused(client, login_as):
    admin = login_as("admin")
    wallet = _fund(create_user("student"), "5")
    system = ledger.system_wallet(SystemWallet.FEES, "USD")
    db.session.commit()
    again = client.post(f"/wallet/admin/wallets/{wallet.id}/status", data={"action": "unfreeze",
                                                                           "reason": "Nothing to undo"})
    assert again.status_code == 422 and "already active" in again.get_data(as_text=True)
    assert client.post(f"/wallet/admin/wallets/{system.id}/status",
                       data={"action": "freeze", "reason": "Not allowed here"}).status_code == 422
    assert client.post(f"/wallet/admin/wallets/{uuid.uuid4()}/status",
                       data={"action": "freeze", "reason": "No such wallet"}).status_code == 404
    assert client.post(f"/wallet/admin/wallets/{wallet.id}/status",
                       data={"action": "close", "reason": "Unknown action"}).status_code == 400
    # the service itself checks who asks
    with pytest.raises(Forbidden):
        admin_services.set_wallet_frozen(create_user("faculty"), wallet.id, True, "Not a money admin")
    assert admin_services.set_wallet_frozen(admin, wallet.id, True, "Directly by service").status == WalletStatus.FROZEN


def test_the_user_page_keeps_its_statement_budget(client, login_as, statements):
    login_as("admin")
    user = create_user("student")
    wallet = _fund(user, "500")
    _fund(user, "5", "AZR")
    other = ledger.open_user_wallet(create_user("student").id, "USD")
    url = f"/wallet/admin/users/{user.id}"
    client.get(url)
    with statements() as few:
        assert client.get(url).status_code == 200
    for _ in range(40):
        ledger.post([ledger.Leg(wallet, other, Decimal("1"), TransactionType.TRANSFER)])
    admin_services.set_wallet_frozen(create_user("admin"), wallet.id, True, "Budget test freeze")
    db.session.flush()
    with statements() as many:
        assert client.get(url).status_code == 200
    assert many.count == few.count <= 12, many.statements
