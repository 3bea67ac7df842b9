"""Wallets, the ledger of transactions between them, and fee rules (spec service 8, Payment Service)."""
