"""The JSON API (``/api/v1``): a user's own data for scripts and integrations, authenticated by
personal access tokens, rate limited, logged, described by OpenAPI. ``gateway`` guards every
request, ``spec`` declares the operations and builds the document, ``v1`` has the views and
``reference`` serves the document and its page. Tokens are made on the account's "API tokens"
page (``blueprints/auth/tokens.py``)."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from blueprints.api import gateway, reference, v1  # noqa: E402,F401
