"""Fixtures of the payment tests: an in-memory provider in place of the real adapters."""

from __future__ import annotations

import pytest

from tests.money.payments.fakes import FakeProvider


@pytest.fixture
def fake(monkeypatch) -> FakeProvider:
    """The ``sandbox`` provider, in memory (``stripe`` gets a second one: ``fakes["stripe"]``)."""
    from portal.money.payments import services

    fakes = {"sandbox": FakeProvider("sandbox"), "stripe": FakeProvider("stripe")}
    monkeypatch.setattr(services, "get_provider", lambda name: fakes[name])
    fakes["sandbox"].others = fakes
    return fakes["sandbox"]
