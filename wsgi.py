"""WSGI entry point: ``gunicorn wsgi:app``. Refuses to serve as a privileged database role
outside development and tests (see portal.db.runtime)."""

import os

from portal.app import create_app

app = create_app()

if os.environ.get("AZORA_SKIP_ROLE_CHECK") != "1" and not os.environ.get("FLASK_RUN_FROM_CLI"):
    from portal.db import db
    from portal.db.runtime import refuse_privileged_role

    with app.app_context():
        refuse_privileged_role(db.engine, app.config["ALLOW_PRIVILEGED_DB_ROLE"])
