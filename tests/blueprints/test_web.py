"""``blueprints.web.refusal``: how every view treats a ``DomainError`` a service raised."""

from __future__ import annotations

import pytest
from sqlalchemy import select

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
