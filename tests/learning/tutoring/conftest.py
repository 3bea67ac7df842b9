"""Fixtures shared by the tutoring tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.learning.tutoring.factories.chat import Clock


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """``portal.db.base.utcnow`` frozen at the start of the test; ``clock.advance(minutes=...)``
    moves it on."""
    fixed = Clock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr("portal.db.base.utcnow", fixed)
    return fixed
