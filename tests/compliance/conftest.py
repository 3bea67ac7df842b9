"""Fixtures shared by the compliance tests."""

from __future__ import annotations

import pytest


def _clear_built_statements() -> None:
    """Forget the statements the compliance reads built once (``functools.cache``), so the next
    request builds them with the settings in force."""
    from portal.compliance.aml import screening
    from portal.compliance.cases import queries as case_queries
    from portal.compliance.kyc import queries as kyc_queries

    for module in (kyc_queries, case_queries, screening):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


@pytest.fixture
def count_cap(monkeypatch):
    """``count_cap(n)``: the compliance pages count up to ``n`` for this test instead of
    ``portal.compliance.COUNT_CAP`` (a test cannot make a thousand rows to pass the real one)."""
    import blueprints.compliance
    import portal.compliance

    def lower(cap: int) -> None:
        monkeypatch.setattr(portal.compliance, "COUNT_CAP", cap)
        monkeypatch.setattr(blueprints.compliance, "COUNT_CAP", cap)
        _clear_built_statements()

    yield lower
    monkeypatch.undo()
    _clear_built_statements()
