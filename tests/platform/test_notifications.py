"""Notifications: the service, the bell, the page, and the row-level security that keeps each
user's notifications their own."""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.db.context import ANONYMOUS_WEB, Actor, acting_as
from portal.errors import NotFound
from portal.platform.notifications import services
from portal.platform.notifications.models import Notification
from tests.factories import create_notification

HTMX = {"HX-Request": "true"}
NOTE_ID = re.compile(r'<li class="notification(?: unread)?" id="note-([0-9a-f-]{36})">')
OLDER_LINK = re.compile(r'<li class="load-more">\s*<a href="([^"]+)"')
PAGE_SIZE = 20


def note_ids(body: str) -> list[uuid.UUID]:
    return [uuid.UUID(value) for value in NOTE_ID.findall(body)]


def older_link(body: str) -> str | None:
    found = OLDER_LINK.search(body)
    return html.unescape(found.group(1)) if found else None


def read_at(note_id: uuid.UUID):
    """The stored ``readAt``, read past the ORM's identity map."""
    return db.session.execute(text('SELECT "readAt" FROM notifications WHERE id = :id'), {"id": note_id}).scalar_one()


def commit_setup() -> None:
    """A refused request rolls its transaction back; in a test that would also undo setup rows
    not yet committed (committing here only releases a savepoint)."""
    db.session.commit()


# ------------------------------------------------------------------ the service


def test_notify_queues_a_notification_in_the_current_transaction(make_user):
    user = make_user("student")
    note = services.notify(user.id, "k" * 60, "T" * 300, "Body", "/somewhere")
    assert services.unread_count(user.id) == 1  # autoflush: visible to the same transaction
    assert note.user_id == user.id
    assert len(note.kind) == 40 and len(note.title) == 200
    assert note.body == "Body" and note.link == "/somewhere" and note.read_at is None


def test_unread_count_is_per_user(make_user):
    alice, bob = make_user("student"), make_user("faculty")
    for n in range(3):
        services.notify(alice.id, "test", f"A{n}")
    services.notify(bob.id, "test", "B")
    create_notification(alice, title="old", read_at=db.func.now())
    assert services.unread_count(alice.id) == 3
    assert services.unread_count(bob.id) == 1
    assert services.unread_count(uuid.uuid4()) == 0


def test_mark_read_is_idempotent(make_user):
    user = make_user("student")
    note = create_notification(user)
    first = services.mark_read(user, note.id).read_at
    assert first is not None
    db.session.flush()
    assert services.mark_read(user, note.id).read_at == first
    assert services.unread_count(user.id) == 0


def test_mark_read_refuses_someone_elses_notification(make_user):
    owner, other = make_user("student"), make_user("student")
    note = create_notification(owner)
    with pytest.raises(NotFound):
        services.mark_read(other, note.id)
    with pytest.raises(NotFound):
        services.mark_read(owner, uuid.uuid4())
    db.session.flush()
    assert read_at(note.id) is None


def test_mark_all_read_touches_only_the_users_unread_rows(make_user):
    user, other = make_user("student"), make_user("student")
    for n in range(4):
        create_notification(user, title=f"n{n}")
    theirs = create_notification(other)
    assert services.mark_all_read(user) == 4
    assert services.mark_all_read(user) == 0
    assert services.unread_count(user.id) == 0
    assert read_at(theirs.id) is None


# ------------------------------------------------------------------ the bell


def test_bell_count_fragment(client, login_as):
    user = login_as("student")
    response = client.get("/notifications/count", headers=HTMX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert 'class="bell-count is-zero"' in body

    for n in range(3):
        create_notification(user, title=f"n{n}")
    body = client.get("/notifications/count", headers=HTMX).get_data(as_text=True)
    assert body.startswith('<span class="bell-count">3<')
    assert "unread" in body  # said for screen readers


def test_bell_caps_at_99(client, login_as):
    user = login_as("student")
    for n in range(100):
        create_notification(user, title=f"n{n}")
    assert ">99+<" in client.get("/notifications/count").get_data(as_text=True)


def test_the_page_counts_unread_in_the_session_lookup_flat_at_the_cap(client, login_as):
    """The layout's bell costs no statement of its own: the session lookup counts the unread
    notifications, up to the cap the bell shows ("99+"), however many there are."""
    from tests.conftest import count_statements

    user = login_as("student")
    for n in range(3):
        create_notification(user, title=f"n{n}")
    with count_statements(db.engine) as counter:
        body = client.get("/notifications/count").get_data(as_text=True)
    assert body.startswith('<span class="bell-count">3<')
    assert counter.count == 1 and "session_for_request" in counter.statements[0]
    for n in range(150):
        create_notification(user, title=f"more {n}")
    assert services.unread_count(user.id) == 100  # counted up to the cap, not all 153


def test_a_count_remembered_for_the_request_is_forgotten_when_notifications_change(make_user):
    user = make_user(role="student")
    create_notification(user, title="one")
    services.remember_unread_count(user.id, 1)
    assert services.unread_count(user.id) == 1
    services.notify(user.id, "test", "two")
    assert services.unread_count(user.id) == 2  # the new one is counted, not the remembered 1
    services.remember_unread_count(user.id, 2)
    services.mark_all_read(user)
    assert services.unread_count(user.id) == 0
    services.remember_unread_count(user.id, 5)
    db.session.commit()
    assert services.unread_count(user.id) == 0  # a commit forgets it too


def test_bell_needs_a_login(client):
    response = client.get("/notifications/count", headers=HTMX)
    assert response.status_code == 401
    assert urlsplit(response.headers["HX-Redirect"]).path == "/auth/login"


# ------------------------------------------------------------------ the page


def test_notifications_page_lists_only_the_users_own(client, login_as, make_user):
    user = login_as("student")
    other = make_user("student")
    mine = create_notification(user, title="Grade released", body="Quiz 1: 9/10")
    create_notification(other, title="Not yours")
    response = client.get("/notifications")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in body
    assert note_ids(body) == [mine.id]
    assert "Grade released" in body and "Quiz 1: 9/10" in body and "Not yours" not in body


def test_notifications_page_empty_states(client, login_as):
    login_as("faculty")
    assert "You have no notifications yet." in client.get("/notifications").get_data(as_text=True)
    assert "No unread notifications." in client.get("/notifications?show=unread").get_data(as_text=True)


def test_notifications_page_as_htmx_fragment(client, login_as):
    user = login_as("student")
    create_notification(user)
    body = client.get("/notifications", headers=HTMX).get_data(as_text=True)
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="notification-list">')


def test_unread_filter(client, login_as):
    user = login_as("student")
    unread = create_notification(user, title="new")
    read = create_notification(user, title="seen", read_at=db.func.now())
    assert set(note_ids(client.get("/notifications").get_data(as_text=True))) == {unread.id, read.id}
    assert note_ids(client.get("/notifications?show=unread").get_data(as_text=True)) == [unread.id]


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_keyset_pagination_walks_every_notification_once(client, login_as, headers):
    user = login_as("student")
    made = {create_notification(user, title=f"n{n}").id for n in range(45)}
    seen: list[uuid.UUID] = []
    url, sizes = "/notifications", []
    while url:
        response = client.get(url, headers=headers or {})
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        if headers and seen:
            assert "<html" not in body and 'id="notification-list"' not in body  # only more items
        ids = note_ids(body)
        sizes.append(len(ids))
        seen.extend(ids)
        url = older_link(body)
        assert len(sizes) < 10
    assert sizes == [20, 20, 5]
    assert len(seen) == len(set(seen)) and set(seen) == made


def test_pagination_of_unread_keeps_the_filter(client, login_as):
    user = login_as("student")
    unread = {create_notification(user, title=f"u{n}").id for n in range(25)}
    for n in range(10):
        create_notification(user, title=f"r{n}", read_at=db.func.now())
    first = client.get("/notifications?show=unread").get_data(as_text=True)
    link = older_link(first)
    assert "show=unread" in link
    second = client.get(link).get_data(as_text=True)
    assert set(note_ids(first)) | set(note_ids(second)) == unread
    assert older_link(second) is None


@pytest.mark.parametrize("cursor", ["garbage", "é", "A" * 500, "MjAyNC0wMS0wMVQwMDowMDowMCswMDowMHx4"])
def test_tampered_cursor_is_ignored(client, login_as, cursor):
    user = login_as("student")
    for n in range(25):
        create_notification(user, title=f"n{n}")
    first = note_ids(client.get("/notifications").get_data(as_text=True))
    response = client.get("/notifications", query_string={"after": cursor})
    assert response.status_code == 200
    assert note_ids(response.get_data(as_text=True)) == first


# ------------------------------------------------------------------ marking read


def test_mark_read_without_js_goes_to_the_link(client, login_as):
    user = login_as("student")
    linked = create_notification(user, link="/dashboard")
    plain = create_notification(user)
    response = client.post(f"/notifications/{linked.id}/read")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/dashboard"
    response = client.post(f"/notifications/{plain.id}/read")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/notifications"
    assert read_at(linked.id) is not None and read_at(plain.id) is not None


def test_mark_read_with_htmx_returns_the_item_and_refreshes_the_bell(client, login_as):
    user = login_as("student")
    note = create_notification(user, title="Hello there", link="/dashboard")
    response = client.post(f"/notifications/{note.id}/read", headers=HTMX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert body.startswith(f'<li class="notification" id="note-{note.id}">')  # no longer "unread"
    assert "Mark read" not in body and 'href="/dashboard"' in body
    assert response.headers["HX-Trigger"] == "notifications-changed"
    assert read_at(note.id) is not None


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_mark_all_read(client, login_as, make_user, headers):
    user = login_as("student")
    other = make_user("student")
    mine = [create_notification(user, title=f"n{n}") for n in range(3)]
    theirs = create_notification(other)
    response = client.post("/notifications/read-all", headers=headers or {})
    if headers:
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" not in body
        assert response.headers["HX-Trigger"] == "notifications-changed"
        assert set(note_ids(body)) == {note.id for note in mine} and "Mark read" not in body
    else:
        assert response.status_code == 302
        assert urlsplit(response.headers["Location"]).path == "/notifications"
    assert all(read_at(note.id) is not None for note in mine)
    assert read_at(theirs.id) is None
    assert 'class="bell-count is-zero"' in client.get("/notifications/count").get_data(as_text=True)


@pytest.mark.parametrize("headers", [None, HTMX], ids=["no-js", "htmx"])
def test_cannot_mark_someone_elses_notification_read(client, login_as, make_user, headers):
    login_as("student")
    owner = make_user("student")
    theirs = create_notification(owner, title="Private")
    commit_setup()
    response = client.post(f"/notifications/{theirs.id}/read", headers=headers or {})
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "Private" not in body
    assert ("<html" in body) == (not headers)
    assert read_at(theirs.id) is None


def test_marking_a_malformed_or_unknown_id_is_404(client, login_as):
    login_as("student")
    assert client.post("/notifications/not-a-uuid/read").status_code == 404
    assert client.post(f"/notifications/{uuid.uuid4()}/read").status_code == 404


# ------------------------------------------------------------------ row-level security


def _visible_titles() -> set[str]:
    return set(db.session.scalars(text("SELECT title FROM notifications")))


def test_connection_is_an_unprivileged_role():
    """Row-level security only binds a role that is neither superuser nor BYPASSRLS."""
    row = db.session.execute(text(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")).one()
    assert tuple(row) == (False, False)


def test_rls_hides_other_users_notifications(make_user):
    alice, bob = make_user("student"), make_user("student")
    create_notification(alice, title="for alice")
    bobs = create_notification(bob, title="for bob")
    db.session.expunge_all()  # from here on, only what the database returns counts
    assert {"for alice", "for bob"} <= _visible_titles()  # the test's system actor sees all

    with acting_as(Actor.for_user(alice.id, "student"), db.session):
        assert db.session.execute(text("SELECT current_setting('app.user_id')")).scalar() == str(alice.id)
        assert _visible_titles() == {"for alice"}
        found = db.session.execute(text("SELECT count(*) FROM notifications WHERE id = :id"),
                                   {"id": bobs.id}).scalar()
        assert found == 0
        changed = db.session.execute(text('UPDATE notifications SET "readAt" = now(), title = \'hacked\' '
                                          "WHERE id = :id"), {"id": bobs.id}).rowcount
        assert changed == 0
        deleted = db.session.execute(text("DELETE FROM notifications WHERE id = :id"), {"id": bobs.id}).rowcount
        assert deleted == 0
        # the ORM path the web layer uses sees nothing either
        assert db.session.get(Notification, bobs.id) is None
        assert services.unread_count(bob.id) == 0

    with acting_as(ANONYMOUS_WEB, db.session):
        assert _visible_titles() == set()

    row = db.session.execute(text('SELECT title, "readAt" FROM notifications WHERE id = :id'),
                             {"id": bobs.id}).one()
    assert tuple(row) == ("for bob", None)


def test_rls_lets_anyone_notify_another_user_but_not_read_it_back(make_user):
    alice, bob = make_user("student"), make_user("student")
    db.session.flush()
    with acting_as(Actor.for_user(alice.id, "student"), db.session):
        db.session.execute(text(
            "INSERT INTO notifications (id, \"userId\", kind, title, \"createdAt\", \"updatedAt\") "
            "VALUES (gen_random_uuid(), :uid, 'test', 'hello bob', now(), now())"), {"uid": bob.id})
        assert "hello bob" not in _visible_titles()
        # an update may not move a notification to someone else either
        mine = create_notification(alice, title="mine")
        db.session.expunge_all()
        with pytest.raises(DBAPIError, match="row-level security"), db.session.begin_nested():
            db.session.execute(text('UPDATE notifications SET "userId" = :bob WHERE id = :id'),
                               {"bob": bob.id, "id": mine.id})
    with acting_as(Actor.for_user(bob.id, "student"), db.session):
        assert _visible_titles() == {"hello bob"}


# ------------------------------------------------------------------ statement budget


def test_notifications_page_statement_budget_does_not_grow(client, login_as, statements):
    user = login_as("student")

    def measure() -> int:
        with statements() as counted:
            response = client.get("/notifications")
        assert response.status_code == 200
        return counted.count

    create_notification(user)
    client.get("/notifications")  # warm up
    small = measure()
    for n in range(60):
        create_notification(user, title=f"n{n}")
    assert measure() == small <= 12
    with statements() as counted:
        assert client.get("/notifications/count").status_code == 200
    assert counted.count <= 6
    second_page = older_link(client.get("/notifications").get_data(as_text=True))
    with statements() as counted:
        assert client.get(second_page).status_code == 200
    assert counted.count == small
