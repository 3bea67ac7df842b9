"""``blueprints.web``: how every view treats a ``DomainError`` a service raised (``refusal``), and
how pages show a moment (``when``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import render_template_string
from sqlalchemy import select

from blueprints import web
from blueprints.web import refusal
from portal.accounts.models import User
from portal.db import db
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.money.exchange.sources import SourceError


def _renamed(user: User) -> None:
    db.session.commit()  # the user as an earlier request left it
    user.full_name = "Not Saved"
    db.session.flush()


def _name_in_database(user: User) -> str:
    return db.session.scalar(select(User.full_name).where(User.id == user.id))


@pytest.mark.parametrize("exc", [NotFound("No such course."), Forbidden("You cannot edit this course.")],
                         ids=["404", "403"])
def test_a_refusal_of_the_page_is_raised_again_after_the_rollback(make_user, exc):
    user = make_user()
    name = user.full_name
    _renamed(user)
    with pytest.raises(type(exc)) as raised:
        refusal(exc)
    assert raised.value is exc
    assert _name_in_database(user) == name


@pytest.mark.parametrize("exc", [DomainError("Enter an amount.", field="amount"), Conflict("Already sent."),
                                 SourceError("The rate source did not answer.")],
                         ids=["400", "409", "502"])
def test_any_other_error_is_rolled_back_and_returned_for_the_form(make_user, exc):
    user = make_user()
    name = user.full_name
    _renamed(user)
    assert refusal(exc) is exc
    assert _name_in_database(user) == name


class TestWhen:
    """The template global that shows a moment (one for every page, where six macros were)."""

    at = datetime(2026, 3, 7, 9, 5, 42, tzinfo=UTC)

    def test_a_moment_with_its_clock_in_a_time_element(self):
        assert str(web.when(self.at)) == ('<time datetime="2026-03-07T09:05:42+00:00">07 Mar 2026 '
                                          '<small class="muted">09:05 UTC</small></time>')

    def test_seconds_and_the_day_alone(self):
        assert "09:05:42 UTC" in web.when(self.at, seconds=True)
        assert str(web.when(self.at, with_time=False)) == '<time datetime="2026-03-07T09:05:42+00:00">07 Mar 2026</time>'

    def test_a_missing_moment_is_nothing_or_a_dash(self):
        assert web.when(None) == "" and web.when(None, dash=True) == '<span class="muted">–</span>'

    def test_it_renders_as_markup_in_a_template(self, app):
        with app.test_request_context():
            html = render_template_string("{{ when(at, seconds=true) }}", at=self.at)
        assert html.startswith('<time datetime="2026-03-07T09:05:42+00:00">')
