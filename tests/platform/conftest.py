import pytest

from portal.platform import jobs


@pytest.fixture(autouse=True)
def _jobs_on_this_app(app):
    """Jobs run in the app the queue was configured with: make sure it is the session's, even
    if another test created an app of its own."""
    if jobs._flask_app is not app:
        jobs.configure(app)
