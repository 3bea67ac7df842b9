"""The pages the bench measures (``PAGES``, the one list), who loads each, and the ids their
addresses need, found in the bench database with the app in this process.

Accounts: the demo admin, faculty member, compliance officer and student (``portal/demo.py``),
and the *learner*: the first scale student enrolled in the large course (500 students by 30
graded items), for the pages whose cost grows with the data: the course page of that course,
the quiz being answered there, and the wallet and history of a student with a hundred ledger
rows among a million. The lesson and the tutor chat are the demo student's in a demo course
they are enrolled in: real Markdown lessons that the tutor has indexed.
"""

from __future__ import annotations

import string
import urllib.parse
from dataclasses import dataclass

from tests.perf.load import Client

DEMO_ACCOUNTS = {
    "admin": "admin@azora.example",
    "faculty": "faculty@azora.example",
    "compliance": "compliance@azora.example",
    "student": "student@azora.example",
}
SEARCH = "python"


@dataclass(frozen=True)
class Page:
    label: str
    #: The address; ``{name}`` parts are filled from ``find_ids``.
    path: str
    #: An account of ``DEMO_ACCOUNTS``, "learner", or None (anonymous).
    who: str | None


PAGES = [
    Page("/healthz", "/healthz", None),
    Page("admin money", "/wallet/admin", "admin"),
    Page(f"catalog search ?q={SEARCH}", f"/learning/courses?{urllib.parse.urlencode({'q': SEARCH})}", "student"),
    Page("KYC queue", "/compliance/kyc", "compliance"),
    Page("compliance dashboard", "/compliance/", "compliance"),
    Page("compliance service levels", "/compliance/sla", "compliance"),
    Page("analytics dashboard", "/admin/analytics", "admin"),
    Page("to grade (faculty)", "/learning/grading", "faculty"),
    Page("faculty dashboard", "/dashboard", "faculty"),
    Page("wallet (learner)", "/wallet/", "learner"),
    Page("wallet history (learner)", "/wallet/history", "learner"),
    Page("student dashboard", "/dashboard", "student"),
    Page("course page (large, learner)", "/learning/courses/{large_slug}", "learner"),
    Page("admin users", "/admin/users", "admin"),
    Page("cases", "/compliance/cases", "compliance"),
    Page("manage courses", "/learning/manage/", "faculty"),
    Page("catalog", "/learning/courses", "student"),
    Page("notifications", "/notifications", "student"),
    Page("lesson page", "/learning/courses/{demo_slug}/lessons/{lesson_id}", "student"),
    Page("quiz, answering (learner)", "/learning/attempts/{attempt_id}", "learner"),
    Page("grading screen", "/learning/assignments/{assignment_id}/grade?s={submission_id}", "faculty"),
    Page("gradebook 500 x 30", "/learning/courses/{large_id}/gradebook", "faculty"),
    Page("gradebook CSV export", "/learning/courses/{large_id}/gradebook.csv", "faculty"),
    Page("case page", "/compliance/cases/{case_id}", "compliance"),
    Page("tutor chat", "/learning/courses/{demo_slug}/tutor", "student"),
    Page("top-up form (learner)", "/wallet/top-up", "learner"),
    Page("my payments (learner)", "/wallet/payments", "learner"),
    Page("payment methods (learner)", "/wallet/payment-methods", "learner"),
    Page("course sales (faculty)", "/learning/manage/sales", "faculty"),
    Page("payments (finance)", "/wallet/admin/payments", "admin"),
    Page("refunds queue (finance)", "/wallet/admin/refunds", "admin"),
    Page("webhook log (finance)", "/wallet/admin/payments/webhooks", "admin"),
]


def _placeholders(path: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(path) if name}


def learner_email(app) -> str | None:
    """The first scale student (by e-mail) enrolled in the large course."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.learning.demo import LARGE_COURSE_SLUG
    from portal.learning.education.models import Course, Enrollment

    with app.app_context(), unit_of_work(Actor.system("bench")):
        return db.session.scalar(
            select(User.email).join(Enrollment, Enrollment.user_id == User.id).join(Course, Course.id == Enrollment.course_id)
            .where(Course.slug == LARGE_COURSE_SLUG, User.email.like("scale%@azora.example"))
            .order_by(User.email).limit(1))


def find_ids(app, learner: str | None, learner_client) -> dict[str, str]:
    """The ids the addresses of ``PAGES`` need (a name is missing when the data has none).
    Starts a quiz attempt for the learner through the real route (``learner_client``, logged in
    as ``learner``) unless one is open already: the large course's quizzes have no time limit, so
    one open attempt serves every run."""
    from sqlalchemy import func, select

    from portal.accounts.models import User
    from portal.compliance.cases.models import SuspiciousActivity
    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
    from portal.learning.demo import LARGE_COURSE_SLUG
    from portal.learning.education.models import Course, Progress
    from portal.learning.lms.models import Assignment, Submission, SubmissionStatus

    ids: dict[str, str] = {"large_slug": LARGE_COURSE_SLUG}
    with app.app_context(), unit_of_work(Actor.system("bench")):
        user_id = {email: uid for email, uid in db.session.execute(select(User.email, User.id).where(
            User.email.in_([DEMO_ACCOUNTS["student"], learner or ""])))}
        student, learner_id = user_id.get(DEMO_ACCOUNTS["student"]), user_id.get(learner or "")
        large = db.session.scalar(select(Course.id).where(Course.slug == LARGE_COURSE_SLUG))
        if large is not None:
            ids["large_id"] = str(large)
            waiting = db.session.execute(
                select(Submission.assignment_id, Submission.id).join(Assignment, Assignment.id == Submission.assignment_id)
                .where(Assignment.course_id == large, Submission.status == SubmissionStatus.SUBMITTED)
                .order_by(Assignment.title, Submission.submitted_at).limit(1)).first()
            if waiting:
                ids["assignment_id"], ids["submission_id"] = map(str, waiting)
        # The lesson the demo student viewed last (the next one may still be locked).
        viewed = db.session.execute(
            select(Course.slug, Progress.lesson_id).join(Progress, Progress.course_id == Course.id)
            .where(Progress.user_id == student, Course.slug != LARGE_COURSE_SLUG)
            .order_by(Progress.first_viewed_at.desc()).limit(1)).first()
        if viewed:
            ids["demo_slug"], ids["lesson_id"] = viewed[0], str(viewed[1])
        case = db.session.scalar(select(SuspiciousActivity.id).order_by(SuspiciousActivity.created_at).limit(1))
        if case is not None:
            ids["case_id"] = str(case)
        open_attempt = quiz_to_start = None
        if learner_id is not None and large is not None:
            open_attempt = db.session.scalar(
                select(QuizAttempt.id).join(Quiz, Quiz.id == QuizAttempt.quiz_id)
                .where(Quiz.course_id == large, QuizAttempt.user_id == learner_id,
                       QuizAttempt.status == AttemptStatus.IN_PROGRESS, Quiz.time_limit_minutes.is_(None))
                .order_by(QuizAttempt.started_at).limit(1))
            used = (select(func.count()).select_from(QuizAttempt)
                    .where(QuizAttempt.quiz_id == Quiz.id, QuizAttempt.user_id == learner_id).scalar_subquery())
            quiz_to_start = db.session.scalar(
                select(Quiz.id).where(Quiz.course_id == large, Quiz.published, Quiz.time_limit_minutes.is_(None),
                                      (Quiz.max_attempts.is_(None)) | (used < Quiz.max_attempts))
                .order_by(Quiz.title).limit(1))
    if open_attempt is None and quiz_to_start is not None:
        response = learner_client.post(f"/learning/quizzes/{quiz_to_start}/start")
        location = response.headers.get("Location", "")
        if response.status_code == 302 and "/learning/attempts/" in location:
            open_attempt = location.rstrip("/").rsplit("/", 1)[1]
            print(f"  started a quiz attempt for the learner: {location}", flush=True)
    if open_attempt is not None:
        ids["attempt_id"] = str(open_attempt)
    return ids


def resolve(app, ids: dict[str, str]) -> list[tuple[Page, str]]:
    """(page, address) of every page the build serves and the data allows; a page left out is
    said so."""
    from werkzeug.exceptions import HTTPException

    adapter = app.url_map.bind("localhost")
    found = []
    for page in PAGES:
        missing = _placeholders(page.path) - ids.keys()
        if missing:
            print(f"  skipped {page.label}: no {', '.join(sorted(missing))} in the demo data")
            continue
        path = page.path.format(**ids)
        try:
            adapter.match(urllib.parse.urlsplit(path).path, method="GET")
        except HTTPException as exc:  # not found, another method, or a redirect: not a page here
            print(f"  skipped {page.label}: this build does not serve GET {path} ({exc.code})")
            continue
        found.append((page, path))
    return found


def in_process_clients(app, password: str, accounts: dict[str, str]) -> dict:
    """A logged-in test client per account (None: anonymous), for ids and statement counts."""
    clients: dict = {None: app.test_client()}
    for who, email in accounts.items():
        client = app.test_client()
        response = client.post("/auth/login", data={"email": email, "password": password})
        if response.status_code != 302:
            raise SystemExit(f"in-process login as {email} failed: {response.status_code}")
        clients[who] = client
    return clients


def count_statements(app, clients: dict, pages: list[tuple[Page, str]]) -> dict[str, int]:
    """The SQL statements one request to each page sends, through the test client (after one
    request that is not counted, so one-off work such as first connections is left out)."""
    from portal.db import db
    from tests.conftest import count_statements as counting

    with app.app_context():
        engine = db.engine
    counts = {}
    for page, path in pages:
        client = clients[page.who]
        client.get(path).get_data()
        with counting(engine) as counter:
            response = client.get(path)
            response.get_data()  # a streamed body runs its queries as it is read
        if response.status_code != 200:
            raise SystemExit(f"in-process GET {path} as {page.who or 'anonymous'}: {response.status_code}")
        counts[page.label] = counter.count
    return counts


def check_answers(port: int, path: str, cookies: dict[str, str]) -> str | None:
    """None when a plain GET of ``path`` answers 200; else what it answered (a redirect to the
    login page means the session cookie did not work, and would be measured as speed)."""
    client = Client(port, cookies)
    try:
        status, headers, _ = client.request("GET", path)
    finally:
        client.close()
    if status == 200:
        return None
    return f"{status}" + (f" -> {headers['Location']}" if "Location" in headers else "")


@dataclass
class Prepared:
    """The bench database, the app on it in this process, a logged-in test client per account
    and the pages with their addresses: what the bench and the breakdown both start from."""

    owner_url: str
    app_url: str
    app: object
    password: str
    learner: str | None
    #: Who loads the pages: ``DEMO_ACCOUNTS`` and the learner, by e-mail.
    accounts: dict[str, str]
    clients: dict
    pages: list[tuple[Page, str]]


def prepare() -> Prepared:
    from tests.perf.database import make_local_app, migrate_and_seed, prepare_database

    owner_url, app_url = prepare_database()
    app = make_local_app(owner_url, app_url)
    password = migrate_and_seed(app)
    learner = learner_email(app)
    accounts = {**DEMO_ACCOUNTS, **({"learner": learner} if learner else {})}
    clients = in_process_clients(app, password, accounts)
    return Prepared(owner_url, app_url, app, password, learner, accounts, clients,
                    resolve(app, find_ids(app, learner, clients.get("learner"))))
