"""Every card page route, for every role (the card's holder, another student, faculty,
compliance, admin, anonymous), with and without ``HX-Request``: who gets the page, who is
refused (403), whose card is not found (404) and who is sent to log in. Nothing answers 500."""

from __future__ import annotations

import pytest

from portal.money.cards import services
from tests.compliance.factories import verify
from tests.factories import PASSWORD
from tests.money.factories import fund

HX = {"HX-Request": "true"}

#: (method, path under /wallet, form) of every route of the card pages; ``{card}`` is the
#: holder's card.
STUDENT_ROUTES = [
    ("GET", "/cards", None), ("POST", "/cards", {"currency": "USD"}),
    ("GET", "/cards/{card}", None), ("POST", "/cards/{card}/reveal", {"password": PASSWORD}),
    ("POST", "/cards/{card}/freeze", {}), ("POST", "/cards/{card}/unfreeze", {}),
    ("POST", "/cards/{card}/controls", {"daily_limit": "40"}), ("GET", "/cards/{card}/spending", None),
    ("GET", "/cards/{card}/transactions", None), ("GET", "/cards/{card}/transactions?since=", None),
    ("POST", "/cards/{card}/replace", {}), ("POST", "/cards/{card}/cancel", {}),
]
STAFF_ROUTES = [
    ("GET", "/admin/cards", None), ("GET", "/admin/cards?email=stu", None), ("GET", "/admin/cards/{card}", None),
    ("GET", "/admin/cards/log", None), ("GET", "/admin/cards/messages", None),
    ("POST", "/admin/cards/{card}/freeze", {"reason": "Checking"}), ("POST", "/admin/cards/{card}/unfreeze", {}),
]
ADMIN_ROUTES = [("GET", "/admin/cards/terminal", None), ("POST", "/admin/cards/terminal", {"op": "nothing"})]
ROLES = ["holder", "other student", "faculty", "compliance", "admin", "anonymous"]


def _expected(kind: str, role: str) -> set[int]:
    if role == "anonymous":
        return {302, 401}
    if kind == "student":
        return {"holder": {200, 204, 302, 409, 422}, "other student": {404, 200, 422}}.get(role, {403})
    if kind == "staff":
        return {200, 302, 422} if role in ("compliance", "admin") else {403}
    return {200, 422} if role == "admin" else {403}


@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("role", ROLES)
def test_every_route_for_every_role(client, login_as, role, hx):
    holder = login_as("student") if role == "holder" else None
    if holder is None:
        from tests.factories import create_user

        holder = create_user("student")
    verify(holder, 2)
    fund(holder, "50", "USD")
    card = services.issue_card(holder, "USD")
    if role not in ("holder", "anonymous"):
        login_as("student" if role == "other student" else role)
    routes = [("student", *r) for r in STUDENT_ROUTES] + [("staff", *r) for r in STAFF_ROUTES] + \
        [("admin", *r) for r in ADMIN_ROUTES]
    for kind, method, path, form in routes:
        url = "/wallet" + path.format(card=card.id)
        headers = HX if hx else {}
        response = client.get(url, headers=headers) if method == "GET" else client.post(url, data=form, headers=headers)
        allowed = _expected(kind, role)
        # The list, the create form and the page of one's own cards serve another student too.
        if role == "other student" and kind == "student" and "{card}" not in path:
            allowed = {200, 204, 302, 422}
        elif role == "other student" and kind == "student":
            allowed = {404}
        assert response.status_code in allowed, (role, hx, method, url, response.status_code)
        if role == "anonymous" and hx:
            assert response.status_code == 401 and response.headers.get("HX-Redirect", "").startswith("/auth/login")
        if hx and response.status_code == 200 and method == "GET" and "?since=" not in url and kind != "admin":
            # A fragment or a page: never the whole layout twice.
            assert response.get_data(as_text=True).count("<html") <= 1
