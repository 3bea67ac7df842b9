"""The API's fixtures (a token, a request with it) for the gateway's tests over HTTP."""

from tests.blueprints.api.conftest import api, make_token  # noqa: F401
