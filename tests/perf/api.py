"""The API's transactions list beside the HTML wallet history, in the same run (``bench.py``):
the learner's ``GET /api/v1/transactions`` with a personal access token made for the run, loaded
with wrk as the pages are, and its statements counted in process as theirs are.

The bench raises the API's rate limits for the portal it serves (``LIMITS``): a limit of 120
requests a minute would turn the load into 429s, and what is measured is the read, not the
refusal. The request log stays on: its cost is part of the API's.
"""

from __future__ import annotations

from tests.perf import load, settings

PATH = "/api/v1/transactions"
LABEL = "API transactions (learner)"
#: The portal's environment while the bench serves it: limits no bench reaches.
LIMITS = {"API_RATE_LIMITS": "read=1000000000", "API_RATE_LIMITS_PER_USER": "read=1000000000",
          "API_RATE_LIMITS_PER_ADDRESS": "read=1000000000,docs=1000000000"}


def make_token(app, email: str, secret_key: str) -> str:
    """A read token of the user with ``email``, committed; its hash under the served portal's
    ``secret_key`` (the served portal has its own)."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.db import db
    from portal.db.context import Actor, acting_as
    from portal.platform.gateway import tokens

    with app.app_context(), acting_as(Actor.system("bench")):
        user = db.session.scalars(select(User).where(User.email == email)).one()
        made = tokens.create_token(user, "bench", ["read"], 7, tokens.token_key(secret_key))
        db.session.commit()
        return made.secret


def count_statements(app, token: str) -> int:
    """The statements one API request sends (after one that is not counted)."""
    from portal.config import _per_group
    from portal.db import db
    from tests.conftest import count_statements as counting

    with app.app_context():
        engine = db.engine
    # The served portal's load counted against the same user and address in ``rate_limits``:
    # this app's limits are raised as that portal's were.
    app.config.update({name: _per_group(value) for name, value in LIMITS.items()})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    client.get(PATH, headers=headers).get_data()
    with counting(engine) as counter:
        response = client.get(PATH, headers=headers)
        response.get_data()
    if response.status_code != 200:
        raise SystemExit(f"in-process GET {PATH}: {response.status_code} {response.get_data(as_text=True)[:200]}")
    return counter.count


def measure(port: int, token: str) -> load.LoadResult | None:
    """wrk with the bearer token; None without wrk (the Python fallback sends cookies only)."""
    if not load.WRK:
        return None
    url = f"http://{load.HOST}:{port}{PATH}"
    headers = {"Authorization": f"Bearer {token}"}
    load.run_wrk(url, settings.WARMUP_SECONDS, settings.CONNECTIONS, headers)  # warm-up: figures dropped
    return load.run_wrk(url, settings.SECONDS, settings.CONNECTIONS, headers)
