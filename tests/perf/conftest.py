"""The bench's own tests need no database: the suite's per-test transaction (``_rollback`` in
tests/conftest.py, which builds the test database) is replaced here by nothing."""

import pytest


@pytest.fixture(autouse=True)
def _rollback():
    yield
