"""The journeys people take, in a real browser with htmx running: register and confirm, invite
staff, get a login wrong, meet a page one's role cannot open."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.platform.email.models import Email
from tests.e2e.helpers import address
from tests.factories import PASSWORD, create_user

pytestmark = pytest.mark.e2e


def _emailed_link(db_as_tests, address: str, template: str, live_server: str) -> str:
    """The one link in the newest ``template`` e-mail to ``address``, read from the outbox."""
    with db_as_tests() as session:
        bodies = session.scalars(
            select(Email.body_text)
            .where(Email.to_address == address, Email.template == template)
            .order_by(Email.created_at.desc())
        ).all()
    assert bodies, f"no {template} e-mail to {address} in the outbox"
    links = re.findall(r"https?://\S+", bodies[0])
    assert len(links) == 1, bodies[0]
    # BASE_URL is the live server: the link must lead back to it.
    assert links[0].startswith(live_server + "/auth/"), links[0]
    return links[0]


def _assert_htmx_loaded(page: Page) -> None:
    assert page.evaluate("() => typeof window.htmx") == "object"


def _log_in(page: Page, email: str, password: str) -> None:
    """Fill the login form already on the page and submit it through htmx."""
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/auth/login")) as sent:
        page.get_by_role("button", name="Log in").click()
    assert sent.value.headers.get("hx-request") == "true"


def test_student_registers_confirms_logs_in_reads_notifications_and_logs_out(page, db_as_tests, live_server):
    email = address("amara")
    password = "river lantern copper " + uuid.uuid4().hex[:6]

    page.goto("/")
    _assert_htmx_loaded(page)
    page.get_by_role("button", name="Create a student account").click()
    expect(page.get_by_role("heading", name="Create your student account")).to_be_visible()
    page.get_by_label("Full name").fill("Amara Okafor")
    page.get_by_label("E-mail").fill(email)
    page.get_by_role("textbox", name=re.compile(r"^Password")).fill(password)
    page.get_by_label("Repeat the password").fill(password)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/auth/register")) as sent:
        page.get_by_role("button", name="Create account").click()
    assert sent.value.headers.get("hx-request") == "true"
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.locator("main")).to_contain_text(email)

    link = _emailed_link(db_as_tests, email, "verify_email", live_server)
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/auth/login"))
    expect(page.locator(".flashes")).to_contain_text("Your e-mail address is confirmed")

    _log_in(page, email, password)
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("heading", name="Hello, Amara")).to_be_visible()
    expect(page.locator(".page-head")).to_contain_text("Student AZ-")
    # Confirming the address left one unread notification: the bell says so.
    bell = page.get_by_role("link", name="Notifications")
    expect(bell.locator(".bell-count")).to_have_text("1 unread")

    bell.click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    note = page.locator("li.notification", has_text="Welcome to Azora")
    expect(note).to_have_class(re.compile(r"\bunread\b"))
    note.get_by_role("button", name="Mark read").click()
    # htmx swaps the item in place and the bell refreshes on the event the answer triggers.
    expect(page.locator("li.notification", has_text="Welcome to Azora")).not_to_have_class(re.compile(r"\bunread\b"))
    expect(page.locator(".bell-count")).to_have_class(re.compile(r"\bis-zero\b"))
    expect(page.locator(".bell-count")).to_have_text("")

    page.locator("summary", has_text="Amara").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.locator(".flashes")).to_contain_text("You are logged out.")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("link", name="Notifications")).to_have_count(0)

    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=(/|%2F)dashboard"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_admin_invites_faculty_who_sets_a_password_and_reaches_the_faculty_dashboard(
        new_page, db_as_tests, live_server):
    with db_as_tests():
        admin = create_user("admin", full_name="Nadia Mensah", email=address("admin"))
        admin_email = admin.email
    faculty_email = address("kofi")
    faculty_password = "granite orchard violet " + uuid.uuid4().hex[:6]

    page = new_page()
    page.goto("/auth/login")
    _log_in(page, admin_email, PASSWORD)
    expect(page.get_by_role("heading", name="Hello, Nadia")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    page.get_by_role("button", name="Invite staff").click()
    expect(page.get_by_role("heading", name="Invite a staff member")).to_be_visible()
    page.get_by_label("Full name").fill("Kofi Boateng")
    page.get_by_label("E-mail").fill(faculty_email)
    page.get_by_label("Role").select_option("faculty")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.locator(".flashes")).to_contain_text(f"Invitation sent to {faculty_email}")

    # The search box filters through htmx as one types.
    with page.expect_response(lambda r: "/admin/users?" in r.url and "q=" in r.url) as answer:
        page.get_by_role("searchbox", name="Search").type(faculty_email[:16])
    assert answer.value.request.headers.get("hx-request") == "true"
    rows = page.locator("#user-rows tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Kofi Boateng")
    expect(rows.first).to_contain_text("Invited")
    expect(rows.first.get_by_label(f"Role of {faculty_email}")).to_have_value("faculty")

    link = _emailed_link(db_as_tests, faculty_email, "invite", live_server)
    faculty = new_page()  # another person, another browser
    faculty.goto(link)
    expect(faculty.get_by_role("heading", name="Welcome: choose your password")).to_be_visible()
    expect(faculty.locator("main")).to_contain_text(faculty_email)
    faculty.get_by_role("textbox", name=re.compile(r"^New password")).fill(faculty_password)
    faculty.get_by_label("Repeat the new password").fill(faculty_password)
    faculty.get_by_role("button", name="Save the password").click()
    expect(faculty.get_by_role("heading", name="Log in")).to_be_visible()
    expect(faculty.locator(".flashes")).to_contain_text("Your account is ready")

    _log_in(faculty, faculty_email, faculty_password)
    expect(faculty).to_have_url(re.compile(r"/dashboard$"))
    expect(faculty.get_by_role("heading", name="Hello, Kofi")).to_be_visible()
    expect(faculty.locator(".page-head")).to_contain_text("Faculty")
    expect(faculty.get_by_role("heading", name="Courses I teach")).to_be_visible()
    # Faculty do not administer users: no Admin link.
    expect(faculty.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")).to_have_count(0)

    # The admin's list now shows the account as active.
    page.reload()
    expect(page.locator("#user-rows tr", has_text=faculty_email)).to_contain_text("Active")


def test_wrong_password_is_explained_in_place_and_a_student_meets_the_403_page(page, db_as_tests):
    with db_as_tests():
        student = create_user("student", full_name="Lindiwe Dube", email=address("lindiwe"))
        email = student.email

    page.goto("/auth/login")
    _assert_htmx_loaded(page)
    # A mark on the window survives an htmx swap but not a full page load.
    page.evaluate("() => { window.__samePage = true; }")
    with page.expect_response(lambda r: r.url.endswith("/auth/login") and r.request.method == "POST") as answer:
        _log_in(page, email, "not the password at all")
    assert answer.value.status == 422
    alert = page.locator("#login-form .form-errors")
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_have_text("E-mail or password is wrong.")
    assert page.evaluate("() => window.__samePage") is True
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    expect(page.locator("#login-form")).to_have_count(1)
    expect(page.get_by_role("heading", name="Log in")).to_have_count(1)
    expect(page.get_by_label("E-mail")).to_have_value(email)
    expect(page.get_by_label("Password")).to_have_value("")

    # The swapped-in form works: the right password logs in.
    _log_in(page, email, PASSWORD)
    expect(page.get_by_role("heading", name="Hello, Lindiwe")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")).to_have_count(0)

    response = page.goto("/admin/users")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="You do not have access to this page")).to_be_visible()
    expect(page.locator(".error-page")).to_contain_text("This page needs permission to manage user accounts.")
    expect(page.locator("table")).to_have_count(0)
