"""The catalog's filter choices and counts in the shared cache: the second read computes
nothing, a change made through the authoring services shows as soon as it commits, and the
entry holds nothing of the reader who computed it."""

from __future__ import annotations

import re
import uuid

from portal.db import db
from portal.learning.education import authoring, queries, services
from portal.learning.education.models import CourseLevel, CourseStatus
from portal.platform.cache.models import CacheEntry
from tests.factories import PASSWORD
from tests.learning.factories.catalog import make_course


def _never():
    raise AssertionError("computed, where the cached facets should have been read")


def _category() -> str:
    return f"Cat {uuid.uuid4().hex[:8]}"


def test_the_second_read_comes_from_the_cache(monkeypatch, statements):
    category = _category()
    make_course(category=category, level=CourseLevel.ADVANCED)
    with statements() as miss:
        first = queries.catalog_facets()
    assert first["category_counts"][category] == 1 and category in first["categories"]
    monkeypatch.setattr(queries, "_count_facets", _never)
    with statements() as hit:
        again = queries.catalog_facets()
    assert again == first
    assert hit.count == 1 < miss.count, hit.statements  # the lookup alone


def test_publishing_archiving_and_a_new_category_show_at_once(make_user):
    faculty = make_user("faculty")
    category, renamed = _category(), _category()
    course = make_course(category=category, level=CourseLevel.ADVANCED, status=CourseStatus.DRAFT,
                         instructor=faculty, modules=1, lessons_per_module=1)
    db.session.commit()
    before = queries.catalog_facets()
    assert category not in before["categories"]
    make_course(category=category)  # behind the services' back: the kept facets do not see it
    assert queries.catalog_facets() == before

    authoring.change_status(faculty, course.id, CourseStatus.PUBLISHED)
    db.session.commit()
    published = queries.catalog_facets()
    assert published["category_counts"][category] == 2  # both, as the entry was computed again
    assert published["catalog_total"] == before["catalog_total"] + 2
    assert published["level_counts"]["advanced"] == before["level_counts"].get("advanced", 0) + 1

    fields = {"title": course.title, "slug": course.slug, "summary": course.summary, "description": course.description,
              "category": renamed, "level": "intermediate", "estimated_hours": course.estimated_hours or 1}
    authoring.update_course(faculty, course.id, **fields)
    db.session.commit()
    moved = queries.catalog_facets()
    assert moved["category_counts"][category] == 1 and moved["category_counts"][renamed] == 1
    assert moved["level_counts"].get("advanced", 0) == published["level_counts"]["advanced"] - 1

    authoring.change_status(faculty, course.id, CourseStatus.ARCHIVED)
    db.session.commit()
    archived = queries.catalog_facets()
    assert renamed not in archived["categories"]
    assert archived["catalog_total"] == published["catalog_total"] - 1


def test_the_shared_entry_holds_nothing_of_its_reader(client, make_user):
    """Facets are the same for every reader: two students with different enrolments get the
    same choices and counts, and the stored value names neither of them."""
    category = _category()
    course = make_course(category=category, modules=1, lessons_per_module=1)
    alice, bob = make_user("student"), make_user("student")
    services.enrol(alice, course.id)

    def choices(user) -> str:
        client.post("/auth/logout")
        assert client.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code in (302, 204)
        body = client.get("/learning/courses").get_data(as_text=True)
        assert f"<summary>{user.first_name}</summary>" in body  # the page is the user's own
        return body[body.index("<hgroup"):body.index('id="results"')]

    seen = choices(alice)
    assert f"{category} (1)" in seen and re.search(r'id="catalog-total">\d+ courses? in the catalog', seen)
    assert choices(bob) == seen
    queries.catalog_facets()
    stored = db.session.get(CacheEntry, queries.CATALOG_FACETS_KEY.text)
    assert queries.CATALOG_FACETS_KEY.text == "catalog-facets:shared"
    assert str(alice.id) not in str(stored.value) and str(bob.id) not in str(stored.value)
