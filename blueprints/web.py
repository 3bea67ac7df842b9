"""Helpers every blueprint uses (a module, not a blueprint): htmx-aware rendering, forms and
domain errors, the request's client address."""

from __future__ import annotations

from flask import current_app, make_response, redirect, render_template, request, url_for
from jinja2_fragments.flask import render_block
from markupsafe import Markup
from werkzeug.wrappers import Response
from wtforms.validators import StopValidation

from portal.accounts.services import InvalidInput, normalise_email
from portal.compliance.security.models import BlockKind
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


#: The id of ``<body>`` (templates/base.html).
PAGE_TARGET = "page"


def wants_fragment() -> bool:
    """An htmx request for a part of a page. A boosted link or form and an ``HX-Location``
    navigation both swap the whole body (their ``HX-Target`` is the body), so they get the page."""
    return (is_htmx() and request.headers.get("HX-Boosted") != "true"
            and request.headers.get("HX-Target") != PAGE_TARGET)


def render(template: str, block: str | None = None, *, status: int = 200, trigger: str | None = None, **context):
    """The whole page, or, for an htmx request, only ``block`` of the same template.

    A boosted request (a plain link or form under ``hx-boost``) and the load that follows
    ``HX-Location`` swap the whole body, so they get the whole page too."""
    if block and wants_fragment():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body, status)
    if trigger:
        response.headers["HX-Trigger"] = trigger
    return response


def redirect_to(endpoint: str | None = None, *, url: str | None = None, reload: bool = False, **values) -> Response:
    """Go to another page after a write.

    Without JavaScript: a plain redirect. With htmx: ``HX-Location`` (htmx loads the page into
    the body), or ``HX-Redirect`` when ``reload`` is set, for changes of session (login, logout)
    after which the page's CSRF token must be fetched anew.
    """
    target = url or url_for(endpoint, **values)
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect" if reload else "HX-Location"] = target
        return response
    return redirect(target)


def safe_next(target: str | None, default_endpoint: str = "home.dashboard") -> str:
    """A local path to go back to after login, never another site.

    Control characters and whitespace other than the space are refused too: browsers drop a tab
    or newline inside a URL (``/<TAB>/evil.example`` becomes ``//evil.example``), and a newline
    cannot go into a Location header at all."""
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and target.isprintable()):
        return target
    return url_for(default_endpoint)


def attach_error(form, exc: DomainError) -> None:
    """Show a service's message next to its field, or at the top of the form."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None:
        field.errors = [*field.errors, exc.message] if isinstance(field.errors, list) else [exc.message]
    else:
        form.form_errors.append(exc.message)


#: Status codes of a refusal of the page itself (no such row, no right to it), not of the input.
PAGE_REFUSALS = frozenset({403, 404})


def refusal(exc: DomainError) -> DomainError:
    """What a view does first with a ``DomainError`` a service raised: roll the request's work
    back, then re-raise a refusal of the page itself (``NotFound``, ``Forbidden``), which the
    app's error handler answers with the 404 or 403 page; any other error is returned, for the
    view to show beside its form or row::

        except DomainError as exc:
            attach_error(form, refusal(exc))
    """
    db.session.rollback()
    if exc.status_code in PAGE_REFUSALS:
        raise exc
    return exc


def valid_email(form, field) -> None:  # noqa: ARG001 - a WTForms validator
    """WTForms validator with the accounts service's own e-mail syntax check, so its message
    shows beside the field together with the other fields' messages."""
    try:
        normalise_email(field.data)
    except InvalidInput as exc:
        raise StopValidation(exc.message) from exc


def client_ip() -> str | None:
    """The client's address. Behind proxies, ``TRUSTED_PROXIES`` (README settings) says how
    many hops of ``X-Forwarded-For`` Werkzeug's ProxyFix believes (``portal/app.py``, where the
    app is wrapped); otherwise this is the socket's peer."""
    return request.remote_addr


class UrlLinks:
    """Absolute links for e-mails, built from the URL map (portal.accounts.services.Links)."""

    def _url(self, endpoint: str, **values) -> str:
        base = current_app.config.get("BASE_URL")
        if base:
            return base.rstrip("/") + url_for(endpoint, **values)
        return url_for(endpoint, _external=True, **values)

    def verify_email(self, token: str) -> str:
        return self._url("auth.verify_email", token=token)

    def reset_password(self, token: str) -> str:
        return self._url("auth.reset_password", token=token)

    def accept_invite(self, token: str) -> str:
        return self._url("auth.accept_invite", token=token)

    def login(self) -> str:
        return self._url("auth.login")


def blocked_response(block, *, refresh: bool = True):
    """The clear 403 page for a block: for htmx a fragment, and with ``refresh`` the page is
    reloaded so the whole window says it (not for a refused login: the reloaded login form would
    hide the message, so the fragment takes the form's place)."""
    context = {"block": block, "on_user": block.kind == BlockKind.USER,
               "reference": str(block.id)[:8].upper()}
    headers = {}
    if block.expires_at is not None:
        headers["Retry-After"] = str(max(1, int((block.expires_at - utcnow()).total_seconds())))
    if is_htmx():
        if refresh:
            headers["HX-Refresh"] = "true"
        else:
            headers.update({"HX-Retarget": "#main", "HX-Reswap": "innerHTML"})
        return render_template("compliance/security/_blocked.html", **context), 403, headers
    return render_template("compliance/security/blocked.html", **context), 403, headers


#: What ``when`` shows for a missing time where the page asks for a mark (tables of the finance
#: pages, where an empty cell would read as a missing column).
_NO_TIME = Markup('<span class="muted">–</span>')
_TIME = Markup('<time datetime="{}">{}{}</time>')
_CLOCK = Markup(' <small class="muted">{} UTC</small>')


def when(value, with_time: bool = True, seconds: bool = False, dash: bool = False) -> Markup:
    """A moment as pages show it, a template global: ``<time datetime=ISO>08 Dec 2026 <small>14:05
    UTC</small></time>`` (without the clock with ``with_time`` false, with seconds with
    ``seconds``); nothing for a missing one, or a muted dash with ``dash``.

    One function where six template macros repeated the same markup. The parts go through
    ``Markup.format``, which escapes them."""
    if not value:
        return _NO_TIME if dash else Markup("")
    clock = _CLOCK.format(value.strftime("%H:%M:%S" if seconds else "%H:%M")) if with_time else ""
    return _TIME.format(value.isoformat(), value.strftime("%d %b %Y"), clock)
