"""What the browser journeys share: run-unique names and addresses (e2e rows are committed, not
rolled back) and logging in through the form."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Page, expect

from tests.factories import PASSWORD


def unique_word() -> str:
    """A run-unique word: letters only, so search and slugs treat it as one plain word."""
    return "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:8])


def address(prefix: str) -> str:
    """A run-unique e-mail address."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@e2e.example"


def log_in(page: Page, email: str, first_name: str | None = None) -> None:
    """Log in with the test password; with ``first_name``, wait for the dashboard's greeting,
    else for any page but the login form."""
    page.goto("/auth/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    if first_name is not None:
        expect(page.get_by_role("heading", name=f"Hello, {first_name}")).to_be_visible()
    else:
        expect(page).not_to_have_url(re.compile("/auth/login"))



def wait_for_htmx(page: Page) -> None:
    """Wait until htmx has wired the content it last swapped in. New content carries the
    ``htmx-added`` class until htmx settles it, and only then does htmx read its attributes
    (``hx-trigger`` and the rest): typing into a field before that sends nothing."""
    page.wait_for_function("() => !document.querySelector('.htmx-added')")


def search(page: Page, text: str) -> None:
    """Type ``text`` into the page's search box once htmx listens to it (the live search)."""
    wait_for_htmx(page)
    page.get_by_role("searchbox", name="Search").fill(text)
