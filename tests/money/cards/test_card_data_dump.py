"""The proof that card data is kept as promised: after cards are issued, revealed, frozen,
replaced and used through the network endpoint (approvals, a wrong security code, captures,
refunds, reversals), every text, bytea, JSON and array column of every table in the database,
the audit trail and the job queue included, is read as a superuser (past row-level security),
and none holds a full card number in any formatting, nor a security code as a field. The log
records of the whole run and the jobs deferred are searched the same way.

The test commits (the after-commit jobs and the network endpoint's own transactions must be
real); the rows stay, as money history does.
"""

from __future__ import annotations

import json
import logging
import re

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.db.urls import libpq_url
from portal.money.cards import services
from portal.platform import jobs
from tests.conftest import TEST_DB, _admin_url
from tests.factories import PASSWORD
from tests.money.cards.helpers import auth_body, card_holder, new_id, post

pytestmark = pytest.mark.no_db_rollback

SEARCHED_TYPES = ("text", "character varying", "character", "bytea", "jsonb", "json", "ARRAY", "USER-DEFINED")


def _formats(number: str) -> set[str]:
    grouped = " ".join(number[i:i + 4] for i in range(0, 16, 4))
    return {number, grouped, grouped.replace(" ", "-"), grouped.replace(" ", ""), number.encode().hex()}


def _use_cards(app, client) -> tuple[list[str], list[str]]:
    numbers, security_codes = [], []
    with app.app_context(), acting_as(Actor.system("tests")):
        first, second = card_holder("200.00"), card_holder("50.00")
        card_a = services.issue_card(first, "USD")
        card_b = services.issue_card(second, "USD")
        db.session.commit()
        revealed_a = services.reveal(first, card_a.id, PASSWORD)
        revealed_b = services.reveal(second, card_b.id, PASSWORD)
        services.set_controls(first, card_a.id, daily_limit="150", blocked_mcc_groups=["gambling"])
        services.freeze(second, card_b.id)
        services.unfreeze(second, card_b.id)
        card_c = services.replace(second, card_b.id)
        db.session.commit()
        revealed_c = services.reveal(second, card_c.id, PASSWORD)
        db.session.remove()
    for revealed in (revealed_a, revealed_b, revealed_c):
        numbers.append(revealed.number)
        security_codes.append(revealed.security_code)

    with app.app_context():
        _spend(client, revealed_a, revealed_b, revealed_c)
    return numbers, security_codes


def _spend(client, revealed_a, revealed_b, revealed_c) -> None:
    purchase = auth_body(revealed_a, amount="42.00")
    assert post(client, "authorize", purchase).get_json()["approved"]
    assert post(client, "capture", {"id": new_id(), "authorization_id": purchase["id"], "amount": "45.00",
                                    "currency": "USD"}).get_json()["approved"]
    assert post(client, "refund", {"id": new_id(), "authorization_id": purchase["id"], "amount": "5.00",
                                   "currency": "USD"}).get_json()["approved"]
    held = auth_body(revealed_c, amount="9.99")
    assert post(client, "authorize", held).get_json()["approved"]
    assert post(client, "reverse", {"id": new_id(), "authorization_id": held["id"]}).get_json()["approved"]
    wrong = "000" if revealed_c.security_code != "000" else "111"
    assert post(client, "authorize", auth_body(revealed_c, amount="1", cvv=wrong)).get_json()["code"] == "N7"
    assert post(client, "authorize", auth_body(revealed_b, amount="1")).get_json()["code"] == "46"  # replaced
    assert post(client, "authorize", auth_body(revealed_a, amount="1", mcc="7995")).get_json()["code"] == "57"
    unsigned = client.post("/wallet/cards/network/authorize", data=json.dumps(auth_body(revealed_a)).encode())
    assert unsigned.status_code == 400


def _columns(conn) -> list[tuple[str, str, str]]:
    return conn.execute("""
        SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
        JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.data_type = ANY(%s)
        ORDER BY 1, 2""", (list(SEARCHED_TYPES),)).fetchall()


def test_no_card_number_or_security_code_is_stored_anywhere(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    numbers, security_codes = _use_cards(app, client)
    needles = sorted({form for number in numbers for form in _formats(number)})
    code_fields = re.compile(r"(cvv|cvc|security.?code)\W{0,4}(" + "|".join(security_codes) + r")\b", re.I)

    admin_url, _embedded = _admin_url()
    url = libpq_url(make_url(admin_url).set(database=TEST_DB).render_as_string(hide_password=False))
    hits, searched, rows_seen = [], 0, 0
    with psycopg.connect(url) as conn:
        columns = _columns(conn)
        tables = {table for table, _c, _t in columns}
        assert {"virtual_cards", "card_transactions", "audit_log", "procrastinate_jobs"} <= tables
        assert not [c for _t, c, _d in columns if re.search(r"cvv|cvc|security.?code", c, re.I)]
        for table, column, data_type in columns:
            value = sql.SQL("encode({c}, 'escape')" if data_type == "bytea" else "{c}::text").format(
                c=sql.Identifier(column))
            found = conn.execute(sql.SQL("SELECT {v} FROM {t} WHERE {v} LIKE ANY(%s) OR {v} ~* %s LIMIT 3").format(
                v=value, t=sql.Identifier(table)),
                ([f"%{n}%" for n in needles], code_fields.pattern.replace(r"\W", "[^a-z0-9]").replace(r"\b", "")
                 .replace("(?i)", ""))).fetchall()
            if found:
                hits.append((table, column))
            searched += 1
        rows_seen = conn.execute("SELECT count(*) FROM audit_log WHERE \"tableName\" IN "
                                 "('virtual_cards', 'card_transactions')").fetchone()[0]
    assert searched > 100 and rows_seen > 0
    assert hits == [], f"card data found in {hits}"

    logged = "\n".join(record.getMessage() + repr(record.args) for record in caplog.records)
    assert not [n for n in needles if n in logged]
    assert not code_fields.search(logged)
    queued = json.dumps([job.get("args") for job in getattr(jobs.job_app.connector, "jobs", {}).values()],
                        default=str)
    assert not [n for n in needles if n in queued]
