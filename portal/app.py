"""The composition root: ``create_app`` wires configuration, extensions, request hooks,
blueprints and commands together. It is the one module of ``portal/`` that may touch the
request and the logged-in user."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, abort, g, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from blueprints.web import is_htmx, wants_fragment
from portal import events
from portal.config import PROJECT_ROOT, load_config
from portal.db import context as db_context
from portal.db import db
from portal.db.runtime import resolve_urls
from portal.errors import DomainError, Throttled
from portal.security import passwords
from portal.security.access import ANONYMOUS_ONLY, PUBLIC, access_of
from portal.security.permissions import Permission, has_permission

log = logging.getLogger(__name__)

login_manager = LoginManager()
csrf = CSRFProtect()
migrate = Migrate()

#: Flask's own endpoints that serve files and need no declaration.
BUILTIN_PUBLIC_ENDPOINTS = frozenset({"static"})


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    app.config.from_mapping(load_config(overrides))
    _configure_database(app)
    passwords.configure(app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_COST"])

    login_manager.init_app(app)
    login_manager.request_loader(_load_user_from_session)

    from portal.platform import jobs

    jobs.configure(app)
    _import_models()
    _register_blueprints(app)
    _register_hooks(app)
    # After the hooks: a blocked address gets the blocked page, not a CSRF failure.
    csrf.init_app(app)
    _register_error_handlers(app)
    _register_template_helpers(app)

    from portal import cli

    cli.register(app)
    check_access_declared(app)
    return app


def _configure_database(app: Flask) -> None:
    urls = resolve_urls(app.config)
    app.config["SQLALCHEMY_DATABASE_URI"] = urls.app
    app.config["MIGRATION_DATABASE_URL"] = urls.owner
    app.config["DATABASE_IS_EMBEDDED"] = urls.embedded
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), compare_type=True)


def _import_models() -> None:
    """Import every models module so the metadata (and migrations) know every table."""
    import portal.accounts.models
    import portal.compliance.kyc.models
    import portal.compliance.security.models
    import portal.db.audit
    import portal.learning.assessment.models
    import portal.learning.education.models
    import portal.learning.lms.models
    import portal.learning.tutoring.models
    import portal.money.earnings.models
    import portal.money.exchange.models
    import portal.money.wallets.models
    import portal.platform.analytics.models
    import portal.platform.email.models
    import portal.platform.gateway.models
    import portal.platform.notifications.models  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from blueprints.admin import bp as admin_bp
    from blueprints.auth import bp as auth_bp
    from blueprints.compliance import bp as compliance_bp
    from blueprints.home import bp as home_bp
    from blueprints.learning import bp as learning_bp
    from blueprints.wallet import bp as wallet_bp

    for bp in (auth_bp, home_bp, learning_bp, wallet_bp, compliance_bp, admin_bp):
        app.register_blueprint(bp)


def session_policy(app: Flask):
    from portal.compliance.security.services import SessionPolicy

    return SessionPolicy(
        idle=timedelta(minutes=app.config["SESSION_IDLE_MINUTES"]),
        max_age=timedelta(hours=app.config["SESSION_MAX_HOURS"]),
    )


def _load_user_from_session(_request):
    """Flask-Login's loader: the user of the live server-side session named by the cookie."""
    from flask import current_app

    from portal.compliance.security.services import resolve_checked

    # The request's address goes along: the block check rides in the same query.
    found = resolve_checked(session.get("sid"), session_policy(current_app), ip=request.remote_addr)
    if found is None:
        if "sid" in session:
            session.clear()  # ended elsewhere (logout, password change, admin): forget it here
        return None
    record, user = found.record, found.user
    g.session_record = record
    g.session_blocks = (found.ip_block_id, found.user_block_id)
    actor = db_context.Actor.for_user(user.id, user.role.value)
    if "actor_token" in g:
        db_context.set_actor(actor, db.session)
    else:
        # Loaded before ``identify_and_authorise`` ran (an error page, e.g. a CSRF failure):
        # keep a token so teardown restores the previous identity instead of leaving this
        # user as the thread's actor for whatever runs next.
        g.actor_token = db_context.push(actor, db.session)
    _note_new_address(record, user)
    return user


def _note_new_address(record, user) -> None:
    """A session used from an address other than the one it was opened from: one medium
    security event per session and new address (a counter keyed by both remembers which were
    told, for the session's whole life). Commits its own write."""
    from flask import current_app

    from portal.compliance.security import events as security_events
    from portal.platform.gateway import services as rate_limits

    ip = security_events.clean_ip(request.remote_addr)
    opened = security_events.clean_ip(record.ip_address)
    if ip is None or opened is None or ip == opened:
        return
    seen = rate_limits.hit(f"security:session-ip:{record.id}:{ip}", current_app.config["SESSION_MAX_HOURS"] * 3600)
    if seen.count == 1:
        security_events.session_new_ip(record, user, ip)
    # The event and its counter outlive the request, whatever the view does next (a GET
    # commits nothing, a refused request rolls back), as blocks and permission denials do.
    db.session.commit()


#: Reachable even from a blocked address: files and the load balancer's health check.
UNBLOCKABLE_ENDPOINTS = frozenset({"static", "home.healthz"})


def _enforce_blocks():
    """Refuse a request from a blocked address or by a blocked user. Returns the refusal, or
    None to go on.

    A request with a session has its address and its user checked inside the session lookup
    (one query it makes anyway); one without gets a single indexed query. So blocks cost a
    logged-in page no statement."""
    from portal.compliance.security import blocks

    ip = request.remote_addr
    user_id = None
    if "sid" in session and current_user.is_authenticated:  # loads the session, checking blocks
        ip_block_id, user_block_id = g.session_blocks
        block_id = ip_block_id or user_block_id
        user_id = current_user.id
    else:
        block_id = blocks.check_request(ip)
    if block_id is None:
        return None
    block = blocks.get_block(block_id)
    blocks.note_blocked_request(block, ip=ip, user_id=user_id)
    db.session.commit()
    return blocked_response(block)


def blocked_response(block, *, refresh: bool = True):
    """The clear 403 page for a block: for htmx a fragment, and with ``refresh`` the page is
    reloaded so the whole window says it (not for a refused login: the reloaded login form would
    hide the message, so the fragment takes the form's place)."""
    from portal.compliance.security.models import BlockKind
    from portal.db.base import utcnow

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


def _register_hooks(app: Flask) -> None:
    # Security events: the receivers of the domain events connect on import.
    from portal.compliance.security import events as security_events

    @app.before_request
    def identify_and_authorise():
        if request.endpoint in BUILTIN_PUBLIC_ENDPOINTS:
            return None
        # Identify afresh on every request, even where one app context serves several
        # requests (the test suite keeps one pushed around each test).
        g.pop("_login_user", None)
        g.actor_token = db_context.push(db_context.ANONYMOUS_WEB, db.session)
        g.security_context = security_events.set_request_context(
            request.remote_addr, request.user_agent.string, request.path)
        if request.endpoint not in UNBLOCKABLE_ENDPOINTS:
            refused = _enforce_blocks()
            if refused is not None:
                return refused
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        if view is None:
            return None  # 404 / 405 follow
        access = access_of(view)
        if access is PUBLIC:
            return None
        if access is ANONYMOUS_ONLY:
            return redirect(url_for("home.dashboard")) if current_user.is_authenticated else None
        if not current_user.is_authenticated:
            back = request.full_path.rstrip("?")  # Werkzeug adds "?" even without a query
            login = url_for("auth.login", next=back if request.method == "GET" else None)
            if is_htmx():
                return "", 401, {"HX-Redirect": login}
            return redirect(login)
        if access.permission is not None and not has_permission(current_user.role, access.permission):
            events.permission_denied.send(user=current_user._get_current_object(), endpoint=request.endpoint,
                                          needed=access.permission)
            db.session.commit()  # the security event outlives the refused request
            abort(403, description=access.describe())
        return None

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'self'; object-src 'none'",
        )
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.is_secure or app.config["AZORA_ENV"] == "production":
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        response.vary.add("HX-Request")
        if request.endpoint not in BUILTIN_PUBLIC_ENDPOINTS and current_user.is_authenticated:
            headers.setdefault("Cache-Control", "no-store")
        return response

    @app.teardown_request
    def forget_actor(_exc):
        # The request's transaction ends with the app context (Flask-SQLAlchemy removes the
        # session), so only the context variable needs restoring, not the database settings.
        token = g.pop("actor_token", None)
        if token is not None:
            db_context.reset(token)
        context = g.pop("security_context", None)
        if context is not None:
            security_events.reset_request_context(context)


def _error_response(status: int, title: str, message: str, headers: dict | None = None):
    template = "errors/_inline.html" if wants_fragment() else "errors/error.html"
    return render_template(template, status=status, title=title, message=message), status, headers or {}


_TITLES = {
    400: "Bad request",
    401: "Please log in",
    403: "You do not have access to this page",
    404: "Page not found",
    405: "Not allowed",
    409: "That cannot be done now",
    413: "Too large",
    422: "Please check your input",
    429: "Too many requests",
    500: "Something went wrong",
}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        db.session.rollback()
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return _error_response(exc.status_code, _TITLES.get(exc.status_code, "Cannot do that"), exc.message,
                               headers)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _error_response(400, "The form expired",
                               "The page was open too long or the session changed. Reload it and try again.")

    @app.errorhandler(403)
    def forbidden(exc):
        needed = exc.description if isinstance(exc.description, str) else ""
        message = (f"This page needs {needed}. Your account does not have it. If you think it should, "
                   "ask an administrator.") if needed and not needed.startswith("You ") else (
                   needed or "Your account cannot open this page.")
        return _error_response(403, _TITLES[403], message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {
            404: "There is nothing at this address. Check the link, or go back to your dashboard.",
            405: "This address does not accept that kind of request.",
            413: f"The upload is larger than {app.config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB.",
        }
        code = exc.code or 500
        return _error_response(code, _TITLES.get(code, exc.name), messages.get(code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return _error_response(500, _TITLES[500],
                               "The portal hit an error it did not expect. It has been logged; please try again.")


def _register_template_helpers(app: Flask) -> None:
    from portal.accounts.models import Role
    from portal.learning.markdown import markdown_to_text, render_markdown

    # Markdown anywhere a template shows course text: sanitised HTML, or plain text for previews.
    app.jinja_env.globals.update(render_markdown=render_markdown, markdown_to_text=markdown_to_text)

    @app.context_processor
    def shell():
        def unread_notifications() -> int:
            if not current_user.is_authenticated:
                return 0
            from portal.platform.notifications.services import unread_count

            return unread_count(current_user.id)

        def can(permission: str) -> bool:
            return current_user.is_authenticated and has_permission(current_user.role, Permission(permission))

        return {"unread_notifications": unread_notifications, "can": can, "Role": Role, "is_htmx": is_htmx}


def check_access_declared(app: Flask) -> None:
    """Refuse to start when a route does not declare who may use it."""
    missing = sorted(
        endpoint for endpoint, view in app.view_functions.items()
        if endpoint not in BUILTIN_PUBLIC_ENDPOINTS and access_of(view) is None
    )
    if missing:
        raise RuntimeError("Routes without a declared access (portal.security.access): " + ", ".join(missing))
