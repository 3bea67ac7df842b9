"""The data browser's catalog: every mapped table, which columns are masked (declared secrets,
bytes, secret-looking names), which tables are personal, what may be sorted."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    text,
)

from portal.db import db
from portal.platform.databrowser.catalog import PERSONAL_TABLES, Kind, catalog, describe, is_personal

#: Secret columns the portal has today, each declared by its model (or hidden from the app role).
KNOWN_SECRETS = {
    ("users", "passwordHash"), ("session_validations", "tokenHash"), ("virtual_cards", "panEncrypted"),
    ("virtual_cards", "panLookup"), ("kyc_verifications", "dataEncrypted"), ("kyc_documents", "contentEncrypted"),
    ("withdrawals", "destinationEncrypted"), ("case_events", "attachmentEncrypted"), ("submissions", "fileContent"),
    ("emails", "bodyText"),
}


def test_every_mapped_table_is_browsable(app):
    tables = catalog()
    assert set(tables) == set(db.metadata.tables)
    assert len(tables) >= 70
    assert list(tables) == sorted(tables)
    assert tables["security_events"].summary.startswith("Something the portal's defences saw")
    assert "while liftedAt is NULL" in tables["blocked_entities"].summary  # reST literals read as text
    assert tables["wallets"].area == "money" and tables["users"].area == "accounts"


def test_every_declared_secret_is_masked_and_every_masked_column_is_out_of_reach(app):
    declared = set()
    for mapper in db.Model.registry.mappers:
        for name in getattr(mapper.class_, "__audit_secret_columns__", ()):
            declared.add((mapper.local_table.name, name))
    assert declared | {("users", "passwordHash")} >= KNOWN_SECRETS
    for info in catalog().values():
        for column in info.columns:
            if (info.name, column.name) in declared or (info.name, column.name) in KNOWN_SECRETS:
                assert column.hidden == "secret", (info.name, column.name)
            if isinstance(column.column.type, LargeBinary):
                assert column.hidden is not None, (info.name, column.name)
            if column.hidden is not None:
                assert not column.filterable and not column.sortable, (info.name, column.name)
                assert column not in info.visible


def test_columns_that_are_no_secret_stay_visible(app):
    users = catalog()["users"]
    assert users.column("email").hidden is None
    assert users.column("passwordChangedAt").hidden is None  # a time named after a secret is none
    cards = catalog()["virtual_cards"]
    assert cards.column("last4").hidden is None and cards.column("panKeyId").hidden is None


def test_undeclared_bytes_and_secret_looking_names_are_masked_by_default():
    metadata = MetaData()
    table = Table(
        "gadgets", metadata,
        Column("id", Uuid, primary_key=True),
        Column("name", String(40)),
        Column("webhookSecret", String(64)),
        Column("apiKey", Text),
        Column("accessToken", String(200)),
        Column("blob", LargeBinary),
        Column("passwordChangedAt", DateTime(timezone=True)),
        Column("legal", Text),
    )
    info = describe(table, None)
    hidden = {c.name: c.hidden for c in info.columns}
    assert hidden == {"id": None, "name": None, "webhookSecret": "secret", "apiKey": "secret",
                      "accessToken": "secret", "blob": "binary", "passwordChangedAt": None, "legal": None}
    declared = type("Gadget", (), {"__audit_secret_columns__": ("legal",)})
    assert describe(table, declared).column("legal").hidden == "secret"


def test_personal_tables_are_the_listed_ones_and_every_table_that_refers_to_users(app):
    tables = catalog()
    for name in ("users", "students", "kyc_verifications", "kyc_documents", "wallets", "transactions",
                 "withdrawals", "virtual_cards", "security_events", "audit_log", "emails"):
        assert tables[name].personal, name
    for name in ("currency_pairs", "plans", "loan_products", "invoice_numbers"):
        assert not tables[name].personal, name
    for info in tables.values():
        refers_to_users = any(fk.column.table.name == "users" for fk in info.table.foreign_keys)
        assert info.personal == (refers_to_users or info.name in PERSONAL_TABLES), info.name
    metadata = MetaData()
    Table("users", metadata, Column("id", Uuid, primary_key=True))
    owned = Table("gadgets", metadata, Column("id", Uuid, primary_key=True),
                  Column("ownerId", Uuid, ForeignKey("users.id")))
    assert is_personal(owned)


def test_kinds_choices_references_and_sorting(app):
    transactions = catalog()["transactions"]
    assert transactions.column("amount").kind == Kind.NUMBER
    assert transactions.column("type").kind == Kind.CHOICE and "transfer" in transactions.column("type").choices
    assert transactions.column("debitWalletId").refers_to == ("wallets", "id")
    assert transactions.column("details").kind == Kind.JSON and not transactions.column("details").filterable
    wallets = catalog()["wallets"]
    references = {(r.table, r.column) for r in wallets.referenced_by}
    assert {("transactions", "debitWalletId"), ("transactions", "creditWalletId")} <= references
    # Sorting only where an index leads (a million rows are never sorted in memory): a plain
    # index, a unique constraint, an index written as SQL text, the primary key.
    assert catalog()["users"].column("email").sortable  # unique
    assert catalog()["security_events"].column("createdAt").sortable  # text('"createdAt" DESC')
    assert not catalog()["users"].column("role").sortable  # indexed, but a handful of values
    assert not transactions.column("debitWalletId").sortable  # a system wallet is in most rows
    # Times an index holds second: sortable once the list is filtered on the index's first column.
    assert not transactions.column("createdAt").sortable
    assert transactions.column("createdAt").sortable_after == {"debitUserId", "creditUserId"}
    assert catalog()["webhook_events"].column("receivedAt").sortable  # text('"receivedAt" DESC')
    assert transactions.column("id").sortable
    assert not catalog()["users"].column("fullName").sortable
    assert transactions.column("description").sortable is False


def test_a_text_index_expression_makes_its_column_sortable():
    metadata = MetaData()
    table = Table("logs", metadata, Column("id", Uuid, primary_key=True), Column("createdAt", DateTime(True)),
                  Column("note", Text))
    Index("ix_logs_created", text('"createdAt" DESC'), table.c.id)
    info = describe(table, None)
    assert info.column("createdAt").sortable and not info.column("note").sortable
    assert info.default_sort.name == "createdAt"
