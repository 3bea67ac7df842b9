"""``flask tutor ...``: commands of the course tutor.

``flask tutor reindex`` rebuilds the lesson passages the tutor searches, for every course or
for one (``--course <slug>``). Saving a lesson keeps its passages up to date by itself; this is
for a database filled before the tutor existed, or after a change to how lessons are split.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select


@click.group("tutor", help="The course tutor: its search index of lesson passages.")
def tutor_group():
    pass


@tutor_group.command("reindex", help="Rebuild the lesson passages the tutor searches (every course, or one).")
@click.option("--course", "slug", default=None, metavar="SLUG", help="Only this course (its web address).")
@with_appcontext
def reindex_command(slug: str | None):
    from portal.db import as_cli_actor, db
    from portal.learning.education.models import Course
    from portal.learning.tutoring import passages

    def run() -> tuple[int, int]:
        if slug is None:
            courses = db.session.scalar(select(func.count()).select_from(Course)) or 0
            return courses, passages.reindex_all()
        course = db.session.scalar(select(Course).where(Course.slug == slug))
        if course is None:
            raise click.ClickException(f"No course has the web address \"{slug}\".")
        return 1, passages.reindex_course(course)

    courses, count = as_cli_actor(run)()
    click.echo(f"Indexed {count} passages of {courses} course{'s' if courses != 1 else ''}.")
