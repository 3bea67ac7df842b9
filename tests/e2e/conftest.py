"""Browser journeys: the session's app served on 127.0.0.1 by a threaded Werkzeug server,
driven by the system's Chromium through Playwright.

Rows written here are committed (the ``e2e`` marker turns off the per-test rollback), so every
journey uses addresses of its own. Without Chromium or Playwright the journeys are skipped,
except under CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HERE = Path(__file__).resolve().parent
SCREENSHOTS = HERE.parent.parent / "test-artifacts" / "e2e"
#: Playwright's default wait (ms): generous for a loaded CI machine, far below a stuck test.
TIMEOUT_MS = 10_000


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e is a browser journey."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI the browser journeys must run.", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def live_server(app):
    """The session's app on a free local port, served by threads, while the journeys run."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def _live_config(app, live_server):
    """For each journey: e-mailed links point at the live server and CSRF is enforced as in
    production; the session app's settings are restored afterwards for the other tests."""
    changes = {"BASE_URL": live_server, "WTF_CSRF_ENABLED": True}
    saved = {key: app.config.get(key) for key in changes}
    app.config.update(changes)
    try:
        yield
    finally:
        app.config.update(saved)


@pytest.fixture(scope="package")
def sandbox_psp(app, live_server, tmp_path_factory):
    """The sandbox payment provider (portal/sandbox/psp) for the payment journeys, served from a
    thread on a free port: its webhooks go to the live server, chaos off, payments by mobile
    money and refunds settled only by its test helper (``sandbox_psp.settle()``). The app's
    provider settings point at it while the journeys run and are restored afterwards."""
    from tests.money.payments.sandbox_server import API_KEY, WEBHOOK_SECRET, running_sandbox

    hooks = f"{live_server}/wallet/payments/webhooks/sandbox"
    with running_sandbox(tmp_path_factory.mktemp("sandbox-psp"), webhook_url=hooks, chaos=False) as sandbox:
        changes = {"SANDBOX_PSP_URL": sandbox.url, "SANDBOX_PSP_API_KEY": API_KEY,
                   "SANDBOX_PSP_WEBHOOK_SECRET": WEBHOOK_SECRET,
                   "PAYMENT_PROVIDERS": {"CARD": "sandbox", "MOBILE_MONEY": "sandbox"}}
        saved = {key: app.config.get(key) for key in changes}
        app.config.update(changes)
        try:
            yield sandbox
        finally:
            app.config.update(saved)


@pytest.fixture(scope="package")
def browser():
    """Chromium for the journeys of this package. Playwright's sync API keeps an event loop
    marked as running in this thread while it is open, which breaks code run later that bridges
    async to sync (the job queue does): it is closed when the last journey ends."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(autouse=True)
def _deliver_outbox(app, db_as_tests):
    """The journeys read their e-mails from the outbox, so the browser test plays the mail
    server: what a journey queued is marked sent at its end, leaving no due e-mail behind for
    the tests that sweep the outbox."""
    from sqlalchemy import func, select, update

    from portal.db.base import utcnow
    from portal.platform.email.models import Email, EmailStatus

    with db_as_tests() as session:
        started = session.scalar(select(func.now()))
    yield
    with db_as_tests() as session:
        session.execute(
            update(Email)
            .where(Email.status == EmailStatus.QUEUED, Email.created_at >= started)
            .values(status=EmailStatus.SENT, attempts=Email.attempts + 1, sent_at=utcnow())
        )


@pytest.fixture(scope="package")
def checker(browser, live_server):
    """The page the end-of-test checks load recorded documents into (tests/e2e/audit.py),
    served with the portal's own Content-Security-Policy."""
    from urllib.request import urlopen

    from tests.e2e.audit import Checker

    with urlopen(f"{live_server}/auth/login") as response:
        csp = response.headers["Content-Security-Policy"]
    checking = Checker(browser, live_server, csp)
    try:
        yield checking
    finally:
        checking.close()


@pytest.fixture
def new_page(browser, live_server, checker, request):
    """``new_page()`` opens a page in a fresh browser context (its own cookies: one person).

    Every page opened is checked (tests/e2e/audit.py): each document it settles in, on load and
    after each htmx swap, gets axe-core (serious and critical violations fail) and a 390 px
    phone-width pass (horizontal overflow fails), and a console or page error fails the test.
    The checks run when the journey has passed, and their failure fails it.
    On failure every page opened is saved as a screenshot under test-artifacts/e2e/."""
    from tests.e2e.audit import Recorder

    contexts = []
    recorder = Recorder()

    def open_page():
        context = browser.new_context(base_url=live_server)
        context.set_default_timeout(TIMEOUT_MS)
        recorder.watch(context, f"person {len(contexts) + 1}")
        contexts.append(context)
        return context.new_page()

    yield open_page
    failed = getattr(request.node, "report_call", None) is not None and request.node.report_call.failed
    for number, context in enumerate(contexts):
        if failed:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            for index, page in enumerate(context.pages):
                # A screenshot is a courtesy: failing to take one must not hide the real failure.
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(SCREENSHOTS / f"{name}-{number}-{index}.png"), full_page=True)
        context.close()
    if failed:
        return
    problems = list(dict.fromkeys(recorder.errors))
    snapshots = recorder.distinct()
    for snap in snapshots:
        problems.extend(found for found in checker.problems(snap) if found not in problems)
    if os.environ.get("E2E_AUDIT_LOG"):
        with open(os.environ["E2E_AUDIT_LOG"], "a") as log:
            for snap in snapshots:
                log.write(f"{request.node.name}\t{snap.why}\t{snap.url}\n")
    if problems:
        pytest.fail(f"{len(problems)} problem(s) on the pages this journey visited "
                    f"({len(snapshots)} checked):\n" + "\n".join(f"- {p}" for p in problems), pytrace=False)


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def db_as_tests(app):
    """A block that talks to the test database as ``system:tests`` and commits."""
    from portal.db import db
    from portal.db.context import Actor, acting_as

    @contextlib.contextmanager
    def block():
        with app.app_context(), acting_as(Actor.system("tests")):
            try:
                yield db.session
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    return block
