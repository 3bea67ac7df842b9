"""Fee rules for admins: the list with examples, creating, inline editing (htmx and without
JavaScript), deleting, the live example, and validation messages beside their fields."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.money.wallets import fees
from portal.money.wallets.models import TransactionFee, TransactionType

HX = {"HX-Request": "true"}


def _rule(kind: TransactionType, code: str) -> TransactionFee | None:
    return db.session.scalar(select(TransactionFee).where(TransactionFee.transaction_type == kind,
                                                          TransactionFee.currency == code)
                             .execution_options(populate_existing=True))


@pytest.fixture
def admin(login_as):
    admin = login_as("admin")
    # A clean slate for the types and currencies these tests use.
    for rule in db.session.scalars(select(TransactionFee)):
        db.session.delete(rule)
    db.session.flush()
    return admin


def _new(**overrides) -> dict:
    data = {"transaction_type": "transfer", "currency": "USD", "fixed_amount": "0", "percent": "0.5",
            "minimum": "0.01", "maximum": "5", "active": "y"}
    data.update(overrides)
    return data


def _field_error(body: str, field_id: str) -> str:
    match = re.search(rf'<small id="{re.escape(field_id)}-error" class="field-error">([^<]*)</small>', body)
    assert match, f"no error for {field_id}"
    return match.group(1)


def test_the_list_shows_each_rule_with_examples(client, admin):
    fees.save_rule(admin.id, "transfer", "USD", fixed="0", percent="0.5", minimum="0.01", maximum="5")
    fees.save_rule(admin.id, "withdrawal", "AZR", fixed="2", percent="0", minimum="0", maximum="", active=False)
    body = client.get("/wallet/admin/fees").get_data(as_text=True)
    assert "Transfer" in body and "Withdrawal" in body
    # 1 USD: the minimum; 100 USD: 0.5 %; 10,000 USD: the maximum
    assert "1.00 USD → <strong>0.01 USD</strong>" in body
    assert "100.00 USD → <strong>0.50 USD</strong>" in body
    assert "10,000.00 USD → <strong>5.00 USD</strong>" in body
    assert "0.5%" in body and "no cap" in body and "not charged while off" in body


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_creating_a_rule(client, admin, htmx):
    response = client.post("/wallet/admin/fees", data=_new(), headers=HX if htmx else {})
    rule = _rule(TransactionType.TRANSFER, "USD")
    assert rule is not None and rule.percent == Decimal("0.5") and rule.maximum == Decimal("5")
    assert rule.updated_by_id == admin.id and rule.active
    assert fees.fee_for(TransactionType.TRANSFER, Decimal("100"), "USD") == Decimal("0.50")
    if htmx:
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" not in body
        assert 'id="fee-rules"' in body and "created" in body and f'id="rule-{rule.id}"' in body
    else:
        assert response.status_code == 302 and response.headers["Location"].endswith("/wallet/admin/fees")


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"percent": "51"}, "new-percent", "Percent: at most 50."),
    ({"percent": "0.12345"}, "new-percent", "four decimal places"),
    ({"percent": "-1"}, "new-percent", "negative"),
    ({"fixed_amount": "abc"}, "new-fixed_amount", "Fixed amount: Enter the amount as a number"),
    ({"fixed_amount": "0.001"}, "new-fixed_amount", "at most 2 decimal places"),
    ({"minimum": "1,5"}, "new-minimum", "Use a point for decimals"),
    ({"minimum": "10", "maximum": "5"}, "new-maximum", "must not be below the minimum"),
    ({"transaction_type": "reward"}, "new-transaction_type", "transfers, conversions and withdrawals only"),
    ({"currency": "XYZ"}, "new-currency", "Unknown currency"),
])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_bad_figures_are_refused_beside_their_field(client, admin, overrides, field, message, htmx):
    response = client.post("/wallet/admin/fees", data=_new(**overrides), headers=HX if htmx else {})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in _field_error(body, field)
    assert ("<html" in body) is not htmx
    assert db.session.scalar(select(TransactionFee.id)) is None  # nothing saved
    # what was typed is kept in the form
    for name, value in overrides.items():
        if name not in ("transaction_type", "currency"):
            assert f'value="{value}"' in body


def test_a_second_rule_for_the_same_type_and_currency_is_refused(client, admin):
    assert client.post("/wallet/admin/fees", data=_new()).status_code == 302
    response = client.post("/wallet/admin/fees", data=_new(percent="2"))
    assert response.status_code == 422
    assert "already a rule for transfers in USD" in _field_error(response.get_data(as_text=True),
                                                                 "new-transaction_type")
    assert _rule(TransactionType.TRANSFER, "USD").percent == Decimal("0.5")


def test_inline_edit_with_htmx(client, admin):
    rule = fees.save_rule(admin.id, "transfer", "AZR", fixed="0", percent="1", minimum="0.1", maximum="")
    db.session.commit()  # a refused post rolls its request back, not this
    row = client.get(f"/wallet/admin/fees/{rule.id}", headers=HX)
    body = row.get_data(as_text=True)
    assert row.status_code == 200 and body.lstrip().startswith("<tr") and "<html" not in body
    assert f'id="rule-{rule.id.hex[:12]}-percent"' in body and 'value="1"' in body and 'value="0.1"' in body

    bad = client.post(f"/wallet/admin/fees/{rule.id}", headers=HX,
                      data={"fixed_amount": "0", "percent": "1", "minimum": "5", "maximum": "1", "active": "y"})
    assert bad.status_code == 422
    assert "must not be below the minimum" in _field_error(bad.get_data(as_text=True),
                                                           f"rule-{rule.id.hex[:12]}-maximum")
    assert _rule(TransactionType.TRANSFER, "AZR").minimum == Decimal("0.1")

    saved = client.post(f"/wallet/admin/fees/{rule.id}", headers=HX,
                        data={"fixed_amount": "0.5", "percent": "0.25", "minimum": "0.5", "maximum": "10"})
    body = saved.get_data(as_text=True)
    assert saved.status_code == 200 and saved.headers["HX-Trigger"] == "fee-rules-changed"
    assert "saved" in body and "<form" in body  # the row again, with its delete form
    changed = _rule(TransactionType.TRANSFER, "AZR")
    assert (changed.fixed_amount, changed.percent, changed.maximum, changed.active) == (
        Decimal("0.5"), Decimal("0.25"), Decimal("10"), False)  # unchecked box: off

    cancel = client.get(f"/wallet/admin/fees/{rule.id}?cancel=1", headers=HX)
    assert cancel.status_code == 200 and "Edit" in cancel.get_data(as_text=True)


def test_edit_without_javascript(client, admin):
    rule = fees.save_rule(admin.id, "conversion", "USD", fixed="0", percent="1", minimum="0", maximum="")
    db.session.commit()  # a refused post rolls its request back, not this
    page = client.get(f"/wallet/admin/fees/{rule.id}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in body and "Fee rules" in body
    assert f'action="/wallet/admin/fees/{rule.id}"' in body
    bad = client.post(f"/wallet/admin/fees/{rule.id}", data={"percent": "x", "active": "y"})
    assert bad.status_code == 422 and "<html" in bad.get_data(as_text=True)
    assert "Percent" in _field_error(bad.get_data(as_text=True), f"rule-{rule.id.hex[:12]}-percent")
    done = client.post(f"/wallet/admin/fees/{rule.id}", data={"percent": "2", "active": "y"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/wallet/admin/fees")
    assert _rule(TransactionType.CONVERSION, "USD").percent == Decimal("2")
    assert "saved" in client.get("/wallet/admin/fees").get_data(as_text=True)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_delete(client, admin, htmx):
    rule_id = fees.save_rule(admin.id, "withdrawal", "USD", fixed="1", percent="0", minimum="0", maximum="").id
    response = client.post(f"/wallet/admin/fees/{rule_id}/delete", headers=HX if htmx else {})
    assert _rule(TransactionType.WITHDRAWAL, "USD") is None
    assert fees.fee_for(TransactionType.WITHDRAWAL, Decimal("50"), "USD") == 0
    if htmx:
        assert response.status_code == 200 and "deleted" in response.get_data(as_text=True)
        assert "<html" not in response.get_data(as_text=True)
    else:
        assert response.status_code == 302
    # again: it is gone
    assert client.post(f"/wallet/admin/fees/{rule_id}/delete").status_code == 404


def test_unknown_rules_are_404(client, admin):
    import uuid

    missing = uuid.uuid4()
    assert client.get(f"/wallet/admin/fees/{missing}").status_code == 404
    assert client.post(f"/wallet/admin/fees/{missing}", data={"percent": "1"}).status_code == 404
    assert client.post(f"/wallet/admin/fees/{missing}/delete", headers=HX).status_code == 404


def test_the_live_example_follows_the_typed_figures(client, admin):
    response = client.get("/wallet/admin/fees/preview", query_string=_new(currency="AZR", maximum=""), headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body and 'id="fee-preview"' in body
    assert "a transfer of" in body and "<strong>100.00 AZR</strong> costs <strong>0.50 AZR</strong>" in body
    bad = client.get("/wallet/admin/fees/preview", query_string=_new(percent="abc"), headers=HX)
    assert "Type the figures" in bad.get_data(as_text=True)
    assert db.session.scalar(select(TransactionFee.id)) is None  # a preview saves nothing
    # without JavaScript there is nothing to preview: back to the list
    assert client.get("/wallet/admin/fees/preview").status_code == 302
