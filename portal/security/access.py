"""What a view declares about who may reach it.

Every view function carries an ``Access`` in ``__access__``; the app factory checks it before
the view runs and refuses to start if a view has none. Declaring access is one decorator::

    @bp.get("/users")
    @requires(Permission.MANAGE_USERS)
    def users(): ...

These decorators only label the function; they import nothing from Flask.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.security.permissions import Permission


@dataclass(frozen=True)
class Access:
    #: ``public`` (anyone), ``anonymous`` (only logged-out visitors, e.g. the login page),
    #: ``login`` (any logged-in user), ``permission``, ``token`` (a personal access token with
    #: ``scope``, and ``permission`` when set: the JSON API; session cookies are not accepted).
    kind: str
    permission: Permission | None = None
    scope: str | None = None

    def describe(self) -> str:
        if self.kind == "token":
            needs = f"a personal access token with the {self.scope} scope"
            return needs + (f" and permission to {self.permission.label}" if self.permission else "")
        if self.kind == "permission":
            return f"permission to {self.permission.label}"
        return {"public": "nothing", "anonymous": "being logged out", "login": "being logged in"}[self.kind]


PUBLIC = Access("public")
ANONYMOUS_ONLY = Access("anonymous")
LOGIN = Access("login")


def _mark(access: Access):
    def decorate(view):
        view.__access__ = access
        return view

    return decorate


public = _mark(PUBLIC)
anonymous_only = _mark(ANONYMOUS_ONLY)
login_required = _mark(LOGIN)


def requires(permission: Permission):
    return _mark(Access("permission", permission))


def token_required(scope: str, permission: Permission | None = None):
    """A JSON API view: the caller presents a personal access token with ``scope`` (and, with
    ``permission``, the token's user has it). Exempt from the CSRF token, as no cookie is read:
    a browser cannot send a bearer token on its own."""

    def decorate(view):
        view.__access__ = Access("token", permission, scope)
        view.__csrf_exempt__ = True
        return view

    return decorate


def signed_by_sender(view):
    """Mark a public view that a machine calls with a signature of its own (a payment provider's
    webhook) as exempt from the CSRF token: there is no form and no browser session, and the view
    checks the signature before it believes anything. The app factory exempts marked views."""
    view.__csrf_exempt__ = True
    return view


def is_csrf_exempt(view) -> bool:
    return getattr(view, "__csrf_exempt__", False) is True


def access_of(view) -> Access | None:
    return getattr(view, "__access__", None)
