"""A tour of every page a person of each role can open from an address alone (every GET route
without parameters), so the checks every journey gets (accessibility, console errors, a phone's
width: tests/e2e/audit.py) cover the pages no journey passes through as well.

The people are new, so lists show their empty states; the journeys cover the same pages full.
"""

from __future__ import annotations

import pytest

from tests.e2e.helpers import address, log_in
from tests.factories import create_user

pytestmark = pytest.mark.e2e

#: Routes that are not pages: a health probe, downloads, fragments htmx asks for, JSON.
NOT_PAGES = {
    "home.healthz", "home.notification_count", "wallet.history_csv", "wallet.admin_fee_preview",
    "wallet.withdrawal_fee", "learning.manage_slug", "learning.certificate_public_key",
    "wallet.loans_admin_book_csv",
}


def _page_paths(app) -> list[str]:
    rules = [rule for rule in app.url_map.iter_rules()
             if "GET" in rule.methods and not rule.arguments and rule.endpoint not in NOT_PAGES
             and not rule.rule.startswith("/static") and not rule.rule.startswith("/api")]
    return sorted(rule.rule for rule in rules)


@pytest.mark.parametrize("role", ["student", "faculty", "compliance", "admin"])
def test_every_page_a_person_can_open_passes_the_checks(new_page, db_as_tests, app, role):
    page = new_page()
    email = address(f"tour-{role}")
    with db_as_tests():
        create_user(role, full_name="Tour Taker", email=email)
    log_in(page, email, "Tour")
    opened = []
    for path in _page_paths(app):
        response = page.goto(path)
        assert response is not None and response.status < 500, f"{path}: {response and response.status}"
        if response.status == 200 and response.headers.get("content-type", "").startswith("text/html"):
            opened.append(path)
    # Each role opens its own menus' pages at least. (The pages without login, such as login,
    # register and the certificate check, are in the journeys.)
    assert len(opened) >= 10, opened
