from sqlalchemy import text

from portal.db import db


def test_login_dashboard_and_context(client, login_as, app):
    user = login_as("admin")
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert user.first_name in response.get_data(as_text=True)
    # the next request runs in a fresh savepoint: it must see its own identity
    response = client.get("/admin/users")
    assert response.status_code == 200
    actor = db.session.execute(text("select current_setting('app.actor', true)")).scalar()
    assert actor == "system:tests"
