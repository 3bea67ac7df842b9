"""The composition root: ``create_app`` wires configuration, extensions, request hooks,
blueprints and commands together. It is the one module of ``portal/`` that may touch the
request and the logged-in user."""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, abort, g, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from blueprints.web import blocked_response, is_htmx, wants_fragment, when
from portal import events
from portal.compliance.security.services import session_policy
from portal.config import PROJECT_ROOT, load_config
from portal.db import context as db_context
from portal.db import db
from portal.db import reads as db_reads
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
    _trust_proxies(app)
    _configure_database(app)
    passwords.configure(app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_COST"])

    login_manager.init_app(app)
    login_manager.request_loader(_load_user_from_session)

    from portal.platform import jobs

    jobs.configure(app)
    _import_models()
    _connect_listeners()
    _register_blueprints(app)
    _register_hooks(app)
    # After the hooks: a blocked address gets the blocked page, not a CSRF failure.
    csrf.init_app(app)
    _exempt_signed_views(app)
    _register_error_handlers(app)
    _register_template_helpers(app)

    from portal import cli

    cli.register(app)
    check_access_declared(app)
    return app


def _trust_proxies(app: Flask) -> None:
    """Behind ``TRUSTED_PROXIES`` proxies, the client's address, scheme and host are taken from
    their ``X-Forwarded-*`` headers (the nearest that many hops), so throttling, blocks and
    security events see the real client. Without it those headers are ignored: a client could
    write any address into them."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def _configure_database(app: Flask) -> None:
    urls = resolve_urls(app.config)
    app.config["SQLALCHEMY_DATABASE_URI"] = urls.app
    app.config["MIGRATION_DATABASE_URL"] = urls.owner
    app.config["DATABASE_IS_EMBEDDED"] = urls.embedded
    # Tests pass their own pool sizes: the liveness check on checkout stays on whatever they say,
    # so a connection the server dropped (a restart) is replaced before a request uses it.
    options = {"pool_pre_ping": True, **app.config["SQLALCHEMY_ENGINE_OPTIONS"]}
    # No just-in-time compilation of statements: it pays off for long analytical queries, while
    # the portal's are short, and a plan over its cost threshold (a large export) would spend tens
    # of milliseconds compiling before running. A random read costs about what a sequential one
    # does (the working set is in memory): at the default 4x, walking an index to a LIMIT (a
    # wallet's history) could lose by a hair to reading and sorting all of a user's rows.
    connect_args = options.setdefault("connect_args", {})
    connect_args["options"] = " ".join(filter(None, ["-c jit=off -c random_page_cost=1.1",
                                                     connect_args.get("options")]))
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), compare_type=True)


def _import_models() -> None:
    """Import every models module so the metadata (and migrations) know every table."""
    import portal.accounts.models
    import portal.compliance.aml.models
    import portal.compliance.cases.models
    import portal.compliance.kyc.models
    import portal.compliance.security.models
    import portal.db.audit
    import portal.learning.assessment.models
    import portal.learning.education.models
    import portal.learning.lms.models
    import portal.learning.tutoring.models
    import portal.money.billing.models
    import portal.money.cards.models
    import portal.money.earnings.models
    import portal.money.exchange.models
    import portal.money.lending.models
    import portal.money.payments.models
    import portal.money.wallets.models
    import portal.platform.analytics.models
    import portal.platform.cache.models
    import portal.platform.email.models
    import portal.platform.gateway.models
    import portal.platform.notifications.models  # noqa: F401


def _connect_listeners() -> None:
    """Connect every receiver of the domain events (``portal/events.py``): each package keeps its
    receivers in its ``listeners`` module, and importing it connects them. Every one is listed
    here, so any process that builds the app (web, worker, command) reacts to the same events,
    whichever blueprints it loads; ``tests/test_events.py`` checks the table in ``portal/events.py``
    against what is connected."""
    import portal.accounts.listeners
    import portal.compliance.aml.listeners
    import portal.compliance.security.listeners
    import portal.learning.education.listeners
    import portal.learning.lms.listeners
    import portal.learning.tutoring.listeners
    import portal.money.billing.listeners
    import portal.money.earnings.listeners
    import portal.platform.analytics.listeners  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from blueprints.admin import bp as admin_bp
    from blueprints.api import bp as api_bp
    from blueprints.auth import bp as auth_bp
    from blueprints.compliance import bp as compliance_bp
    from blueprints.home import bp as home_bp
    from blueprints.learning import bp as learning_bp
    from blueprints.wallet import bp as wallet_bp

    for bp in (auth_bp, home_bp, learning_bp, wallet_bp, compliance_bp, admin_bp, api_bp):
        app.register_blueprint(bp)


def _load_user_from_session(_request):
    """Flask-Login's loader: the user of the live server-side session named by the cookie.

    The lookup is the request's first statement and sets who acts in the same statement
    (``lookup_for_request``), so a logged-in page spends no statement on its identity; only when
    the portal decides otherwise than the database did (an idle session) is it set again."""
    from flask import current_app

    from portal.compliance.security.services import lookup_for_request
    from portal.platform.notifications.services import remember_unread_count

    # The request's address goes along: the block check rides in the same query.
    with db_context.set_by_first_statement(db.session):
        lookup = lookup_for_request(session.get("sid"), session_policy(current_app), ip=request.remote_addr)
    found = lookup.found
    if found is None:
        if "sid" in session:
            session.clear()  # ended elsewhere (logout, password change, admin): forget it here
        if lookup.context_user_id is not None and (
                lookup.context_user_id or db_context.current_actor() != db_context.ANONYMOUS_WEB):
            # The statement left the transaction acting as someone other than the request:
            # the session's user (the database took an idle session for live) or anonymous.
            # Before anything is flushed: the idle session is ended by the anonymous request.
            with db.session.no_autoflush:
                db_context.reapply(db.session)
        return None
    record, user = found.record, found.user
    g.session_record = record
    g.session_blocks = (found.ip_block_id, found.user_block_id)
    remember_unread_count(user.id, found.unread_notifications)
    actor = db_context.Actor.for_user(user.id, user.role.value)
    in_transaction = db.session if lookup.context_user_id != actor.user_id else None
    if "actor_token" in g:
        db_context.set_actor(actor, in_transaction)
    else:
        # Loaded before ``identify_and_authorise`` ran (an error page, e.g. a CSRF failure):
        # keep a token so teardown restores the previous identity instead of leaving this
        # user as the thread's actor for whatever runs next.
        g.actor_token = db_context.push(actor, in_transaction)
    if record in db.session.dirty:
        # The session's once-a-minute touch (``lastSeenAt``), written now as the user: a read
        # keeps it (``portal.db.reads``), so a session used only to read does not end as idle.
        with db_reads.bookkeeping(db.session):
            db.session.flush()
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
    if is_api_request():
        from blueprints.api.gateway import blocked

        return blocked(block)
    return blocked_response(block)


def nul_in_request() -> str | None:
    """Where the request carries a NUL character (``\\0``): the address, the query, a form field
    (name or value), an uploaded file's name or a JSON value; None when nowhere.

    PostgreSQL's text types cannot hold a NUL, so one reaching a query fails there, after the
    view has started. No field, search, slug or token of the portal has a use for it, so such a
    request is refused as a whole, in one place, before anything reads it. Headers are not
    checked: the few that are stored (the user agent) are cleaned where they are kept."""
    if "\0" in request.path:
        return "page address"
    if any("\0" in key or "\0" in value for key, value in request.args.items(multi=True)):
        return "link's query"
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        if any("\0" in key or "\0" in value for key, value in request.form.items(multi=True)):
            return "form"
        if any("\0" in key or "\0" in (upload.filename or "") for key, upload in request.files.items(multi=True)):
            return "uploaded file's name"
        if request.is_json and _has_nul(request.get_json(silent=True)):
            return "JSON body"
    return None


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


#: What a client may send as ``X-Request-Id`` and have kept (else the portal makes one).
_REQUEST_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _request_id() -> str:
    given = request.headers.get("X-Request-Id", "")
    if 8 <= len(given) <= 64 and set(given) <= _REQUEST_ID_CHARACTERS:
        return given
    return uuid.uuid4().hex


def _log_request(app: Flask, response) -> None:
    """Put the request in the request log's buffer (every API request, a sample of the pages)
    and have the buffer written after the response, when due (``portal.platform.gateway.logs``).
    Reads only what the request already knows: no statement."""
    from portal.db.base import utcnow
    from portal.platform.gateway import logs

    api = is_api_request()
    if request.endpoint in BUILTIN_PUBLIC_ENDPOINTS or "request_started" not in g:
        return
    if not api and not logs.sampled(app.config["API_LOG_PAGE_SAMPLE"]):
        return
    user = g.get("_login_user")
    user_id = g.get("api_user_id") or (getattr(user, "id", None) if getattr(user, "is_authenticated", False)
                                       and not api else None)
    entry = logs.Entry(
        kind="api" if api else "page", method=request.method[:10],
        route=(request.url_rule.rule if request.url_rule is not None else "<unmatched>")[:200],
        status=response.status_code, duration_ms=int((time.perf_counter() - g.request_started) * 1000),
        user_id=user_id, token_id=g.get("api_token_id"), ip_address=(request.remote_addr or None),
        request_id=g.request_id, created_at=utcnow())
    buffer = app.extensions["portal.request_log"]
    logs.record(buffer, entry)
    config = app.config
    url = config["SQLALCHEMY_DATABASE_URI"]
    response.call_on_close(lambda: logs.flush_if_due(buffer, url, config["API_LOG_BATCH_SIZE"],
                                                     config["API_LOG_FLUSH_SECONDS"]))


def _register_hooks(app: Flask) -> None:
    from portal.compliance.security import events as security_events
    from portal.platform.analytics import capture as analytics_capture
    from portal.platform.gateway import logs

    app.extensions["portal.request_log"] = logs.Buffer()

    # Before every other hook: the request's clock and id, for the request log.
    @app.before_request
    def start_clock():
        g.request_started = time.perf_counter()
        g.request_id = _request_id()

    # The first after-request hook registered, so the last to run (last-first): the others
    # have read what they need of the request's objects before its transaction ends.
    @app.after_request
    def end_reads_with_commit(response):
        if request.method in ("GET", "HEAD") and response.status_code < 400:
            db_reads.commit_if_unwritten(db.session())
        return response

    @app.after_request
    def log_request(response):
        try:
            _log_request(app, response)
        except Exception:  # the log is a measurement: it never fails the request
            log.exception("could not put the request in the request log")
        response.headers.setdefault("X-Request-Id", g.get("request_id", ""))
        return response

    # First of all hooks: nothing else (the session lookup, security events, views) should see
    # a NUL the database would refuse.
    @app.before_request
    def refuse_nul_characters():
        where = nul_in_request()
        if where is None:
            return None
        return _error_response(400, _TITLES[400], f"The {where} contains a NUL character (\\0), which the "
                               "portal does not accept anywhere. Remove it and try again.")

    @app.before_request
    def hold_analytics_events():
        # Events the request commits wait for its response to be sent (``write_after_response``).
        analytics_capture.begin_request(lambda: getattr(g.get("session_record"), "id", None))

    @app.before_request
    def identify_and_authorise():
        if request.endpoint in BUILTIN_PUBLIC_ENDPOINTS:
            return None
        # Identify afresh on every request: Flask 3.1 lets a request reuse an app context
        # that is already pushed, so nothing of an earlier request's identity may linger.
        g.pop("_login_user", None)
        g.actor_token = db_context.push(db_context.ANONYMOUS_WEB, db.session)
        g.security_context = security_events.set_request_context(
            request.remote_addr, request.user_agent.string, request.path)
        if is_api_request():
            # The API reads no session cookie: anonymous unless its token says who (below).
            g._login_user = login_manager.anonymous_user()
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
        if access.kind == "token":
            from blueprints.api.gateway import authenticate

            return authenticate(access)
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

    # The events the request committed are written once the server has sent the response (WSGI
    # close), off the request's path, as the request log is: no request waits for them.
    @app.after_request
    def write_analytics_after_response(response):
        try:
            writer = analytics_capture.after_response()
        except Exception:  # the events are a measurement: ``write_analytics_events`` writes them then
            log.exception("could not hand the request's analytics to its response")
            return response
        if writer is not None:
            response.call_on_close(writer)
        return response

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

    # Runs before Flask-SQLAlchemy's own teardown (registered earlier; the last registered runs
    # first). A request whose connection the server dropped after its work was done (a restart
    # between the last query and the end) must not turn a finished answer into a 500 when the
    # session's closing ROLLBACK fails: the pool has already thrown the connection away.
    @app.teardown_appcontext
    def close_session_quietly(_exc):
        try:
            db.session.remove()
        except sa_exc.DBAPIError as exc:
            if not _connection_lost(exc):
                raise
            log.warning("database connection lost while ending the request's session: %s",
                        str(exc.orig or exc).strip().splitlines()[0])
            db.session.registry.clear()

    @app.teardown_request
    def forget_actor(_exc):
        # The request's transaction ends with the app context (Flask-SQLAlchemy removes the
        # session), so only the context variables need restoring, not the database settings.
        _forget_identity()

    # Registered after ``forget_actor``, so it runs before it (teardown runs last-first): what
    # the request did not commit records nothing; what it did is written after the response
    # (``write_analytics_after_response``), or now when the response never got that far.
    @app.teardown_request
    def write_analytics_events(_exc):
        try:
            analytics_capture.end_request()
        except Exception:  # never turn a finished answer into an error
            log.exception("could not end the request's analytics")


def is_api_request() -> bool:
    """A request under ``/api``: the JSON API, whose every answer (refusals and errors of the
    app's own handlers included) is JSON, and which reads no session cookie."""
    return request.path == "/api" or request.path.startswith("/api/")


def _error_response(status: int, title: str, message: str, headers: dict | None = None):
    if is_api_request():
        from blueprints.api.problems import problem  # here: a process without the API imports none of it

        return problem(status, message, headers=headers)
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


#: A GET that met a dropped connection waits this long before its one retry, so a database
#: that restarts in a fraction of a second is back for it.
DATABASE_RETRY_PAUSE_SECONDS = 0.3
#: What a 503 tells the client to wait before trying again.
DATABASE_RETRY_AFTER_SECONDS = 5


def _connection_lost(exc: Exception) -> bool:
    """The database could not be reached or dropped the connection: the server restarted, shut
    down, is starting up, or the network broke. Not an error of the statement itself."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection freed up in time
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    import psycopg

    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    # 08: connection exception; 57: operator intervention (admin shutdown, crash, starting up),
    # but for 57014, a statement cancelled (its timeout), which is the statement's own failure.
    # A plain psycopg OperationalError (no subclass) is a failure to connect or a lost socket.
    if sqlstate[:2] == "08" or (sqlstate[:2] == "57" and sqlstate != "57014"):
        return True
    return type(exc.orig) in (psycopg.OperationalError, psycopg.InterfaceError)


def _forget_identity() -> None:
    """Restore the identity and the security context the request's first hook set."""
    from portal.compliance.security import events as security_events

    token = g.pop("actor_token", None)
    if token is not None:
        db_context.reset(token)
    context = g.pop("security_context", None)
    if context is not None:
        security_events.reset_request_context(context)


def _forget_failed_attempt() -> None:
    """Undo what the request had set up, so that it can run again from its first hook: the
    session (on a connection the pool has thrown away), the identity and the security context."""
    try:
        db.session.remove()
    except sa_exc.SQLAlchemyError:  # its closing ROLLBACK met the dropped connection
        db.session.registry.clear()
    _forget_identity()
    g.pop("_login_user", None)
    g.pop("session_record", None)


def _database_unavailable():
    """503 with ``Retry-After`` and a calm page that needs nothing from the database (the
    usual layout asks it for the user and the notification count)."""
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if is_api_request():
        from blueprints.api.problems import problem

        return problem(503, "The portal could not reach its database just now. Try again in a few seconds.",
                       headers=headers)
    if "_login_user" not in g:
        # Flask-Login would load the user for the template (a query): the page is for anyone.
        g._login_user = login_manager.anonymous_user()
    title = "The portal is busy for a moment"
    message = "It could not reach its database just now. Please try again in a few seconds."
    if wants_fragment():
        return render_template("errors/_inline.html", status=503, title=title, message=message), 503, headers
    return render_template("errors/unavailable.html", title=title, message=message), 503, headers


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        db.session.rollback()
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return _error_response(exc.status_code, _TITLES.get(exc.status_code, "Cannot do that"), exc.message,
                               headers)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):  # noqa: ARG001 - Flask passes the error; the message is fixed
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
        if is_api_request():
            messages = {404: "There is nothing at this address: the API's operations are listed at /api/v1/reference.",
                        405: f"This address does not accept {request.method}: see /api/v1/reference.",
                        413: "The request body is too large."}
        code = exc.code or 500
        return _error_response(code, _TITLES.get(code, exc.name), messages.get(code, exc.description or exc.name))

    @app.errorhandler(sa_exc.DBAPIError)
    @app.errorhandler(sa_exc.TimeoutError)
    def database_error(exc: Exception):
        """A lost database connection: a read (GET, HEAD) is run once more on a fresh
        connection; what still fails, and any write, is answered 503 with ``Retry-After``, and
        logged without a traceback. Any other database error is a bug (500)."""
        if not _connection_lost(exc):
            return unexpected(exc)
        if request.method in ("GET", "HEAD") and not g.get("database_retried"):
            g.database_retried = True
            _forget_failed_attempt()
            time.sleep(DATABASE_RETRY_PAUSE_SECONDS)
            try:
                return app.preprocess_request() or app.dispatch_request()
            except Exception as again:  # noqa: BLE001 - handled as any error of the request
                return app.handle_user_exception(again)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.warning("database unavailable on %s %s: %s", request.method, request.path,
                    reason[0] if reason else type(exc).__name__)
        try:
            db.session.rollback()
        except sa_exc.SQLAlchemyError:
            db.session.remove()
        return _database_unavailable()

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # noqa: ARG001 - log.exception records the error being handled
        log.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return _error_response(500, _TITLES[500],
                               "The portal hit an error it did not expect. It has been logged; please try again.")


#: The layout's main navigation: label, endpoint, the endpoints it stands for (a prefix ending in
#: "." or "_", or the one endpoint), and the permissions of which any one shows it. "Wallet" and "Money" share a
#: place: a role with a wallet sees its own, one that manages money sees the admin side.
MAIN_NAV = (
    ("Dashboard", "home.dashboard", "home.dashboard", ()),
    ("Learning", "learning.catalog", "learning.", (Permission.LEARN, Permission.TEACH)),
    ("Wallet", "wallet.overview", "wallet.", (Permission.USE_WALLET,)),
    ("Money", "wallet.admin_dashboard", "wallet.", (Permission.MANAGE_MONEY,)),
    ("Compliance", "compliance.dashboard", "compliance.", (Permission.REVIEW_COMPLIANCE,)),
    ("Analytics", "admin.analytics", "admin.analytics", (Permission.VIEW_SYSTEM,)),
    ("Admin", "admin.users", "admin.", (Permission.MANAGE_USERS,)),
    ("Data", "admin.data_tables", "admin.data_", (Permission.VIEW_SYSTEM,)),
)


def _nav_entries(role) -> list[tuple[str, str, str]]:
    """The main navigation a role sees: (label, endpoint, section), "Money" only without "Wallet"."""
    entries = [(label, endpoint, section) for label, endpoint, section, needs in MAIN_NAV
               if not needs or any(has_permission(role, p) for p in needs)]
    if any(label == "Wallet" for label, _, _ in entries):
        entries = [entry for entry in entries if entry[0] != "Money"]
    return entries


def _register_template_helpers(app: Flask) -> None:
    from portal.accounts.models import Role
    from portal.learning.markdown import markdown_to_text, render_markdown

    # Markdown anywhere a template shows course text: sanitised HTML, or plain text for previews.
    app.jinja_env.globals.update(render_markdown=render_markdown, markdown_to_text=markdown_to_text)

    # The layout asks on every page for the same few addresses (stylesheets, scripts, the
    # navigation): built once per application root and kept, as url_for builds them anew each time.
    fixed_urls: dict[tuple, str] = {}
    id_patterns: dict[tuple, str] = {}
    nav_by_role = {role: _nav_entries(role) for role in Role}

    def fixed_url(endpoint: str, **values) -> str:
        """``url_for`` of an address that depends on nothing but its arguments (a static file,
        a page without parameters), remembered."""
        key = (request.script_root, endpoint, *sorted(values.items()))
        url = fixed_urls.get(key)
        if url is None:
            url = fixed_urls[key] = url_for(endpoint, **values)
        return url

    def id_url(endpoint: str, **ids: uuid.UUID) -> str:
        """``url_for`` of a route whose parameters are ids, for lists that link every row: the
        address is built once per endpoint with stand-in ids, then the row's ids are put in.
        Anything but UUIDs goes to ``url_for``."""
        if not all(isinstance(value, uuid.UUID) for value in ids.values()):
            return url_for(endpoint, **ids)
        names = tuple(sorted(ids))
        key = (request.script_root, endpoint, names)
        pattern = id_patterns.get(key)
        if pattern is None:
            stand_ins = {name: uuid.UUID(int=n + 1) for n, name in enumerate(names)}
            pattern = url_for(endpoint, **stand_ins)
            for name, stand_in in stand_ins.items():
                pattern = pattern.replace(str(stand_in), "{" + name + "}")
            id_patterns[key] = pattern
        return pattern.format(**ids)

    def main_nav() -> list[tuple[str, str, bool]]:
        """(label, address, whether the page is in that section) for the logged-in user."""
        here = request.endpoint or ""
        entries = nav_by_role[current_user.role]
        # The one section the page is in: the longest that matches ("admin.data_" before "admin.").
        matching = [section for _, _, section in entries
                    if (here.startswith(section) if section.endswith((".", "_")) else here == section)]
        current = max(matching, key=len, default=None)
        return [(label, fixed_url(endpoint), section == current) for label, endpoint, section in entries]

    app.jinja_env.globals.update(fixed_url=fixed_url, id_url=id_url, main_nav=main_nav, when=when)

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


def _exempt_signed_views(app: Flask) -> None:
    """Views a machine calls with its own signature (``portal.security.access.signed_by_sender``:
    payment webhooks) carry no CSRF token; they verify the signature themselves."""
    from portal.security.access import is_csrf_exempt

    for view in app.view_functions.values():
        if is_csrf_exempt(view):
            csrf.exempt(view)


def check_access_declared(app: Flask) -> None:
    """Refuse to start when a route does not declare who may use it."""
    missing = sorted(
        endpoint for endpoint, view in app.view_functions.items()
        if endpoint not in BUILTIN_PUBLIC_ENDPOINTS and access_of(view) is None
    )
    if missing:
        raise RuntimeError("Routes without a declared access (portal.security.access): " + ", ".join(missing))
