"""Command-line interface (``flask --app wsgi <command>``).

Every command that writes acts as the named system actor ``system:cli``, so the audit trail
says who did it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.db import CLI_ACTOR, as_cli_actor, db, unit_of_work


def register(app: Flask) -> None:
    from portal import demo, doctor
    from portal.compliance.aml.watchlist import watchlist_group
    from portal.evaluation import eval_group
    from portal.learning.lms.certificates import certificates_command
    from portal.learning.tutoring.cli import tutor_group
    from portal.money.cards.cli import cards_group
    from portal.money.payments.cli import payments_group
    from portal.money.wallets.cli import ledger_group

    app.cli.add_command(users)
    app.cli.add_command(db_roles)
    app.cli.add_command(doctor.doctor_command)
    app.cli.add_command(demo.seed_demo_command)
    app.cli.add_command(worker)
    app.cli.add_command(dev)
    app.cli.add_command(db_server)
    app.cli.add_command(certificates_command)
    app.cli.add_command(ledger_group)
    app.cli.add_command(payments_group)
    app.cli.add_command(cards_group)
    app.cli.add_command(watchlist_group)
    app.cli.add_command(tutor_group)
    app.cli.add_command(eval_group)


# ---------------------------------------------------------------- users

@click.group(help="Manage accounts.")
def users():
    pass


@users.command("create", help="Create a staff account (faculty, compliance or admin) that can log in at once.")
@click.argument("email")
@click.option("--name", "full_name", required=True, help="Full name.")
@click.option("--role", type=click.Choice(["faculty", "compliance", "admin"]), required=True)
@click.password_option(help="Password (asked for when not given).")
@with_appcontext
@as_cli_actor
def create_user(email, full_name, role, password):
    from portal.accounts import services
    from portal.errors import DomainError

    try:
        user = services.create_staff(None, email, full_name, role, None, password=password)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created {user.role.value} account {user.email}.")


# ---------------------------------------------------------------- database roles

@click.group("db-roles", help="Database roles for running against an external PostgreSQL.")
def db_roles():
    pass


@db_roles.command("create-app-role", help=(
    "Create (or repair) the app's login role and grant it row access to the schema. Connects with "
    "MIGRATION_DATABASE_URL (the owner, who needs CREATEROLE)."))
@click.option("--name", default="azora_app", show_default=True, help="Role name.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Password for the role (asked for when not given).")
@with_appcontext
def create_app_role_command(name, password):
    from portal.db.provision import create_app_role

    create_app_role(current_app.config["MIGRATION_DATABASE_URL"], name, password)
    click.echo(f"Role {name} is ready: no superuser, no BYPASSRLS, owns nothing.")
    click.echo(f"Set DATABASE_URL to connect as it, e.g. postgresql://{name}:PASSWORD@HOST/DBNAME")


# ---------------------------------------------------------------- embedded server

@click.group("db-server", help="The embedded PostgreSQL under instance/ (used when DATABASE_URL is unset).")
def db_server():
    pass


@db_server.command("stop", help="Stop the embedded server.")
def db_server_stop():
    import subprocess

    from portal.db import embedded

    try:
        stopped = embedded.stop()
    except (subprocess.CalledProcessError, RuntimeError) as error:
        raise click.ClickException(f"The embedded server did not stop: {error}") from error
    click.echo("Stopped." if stopped else "The embedded server is not running.")


# ---------------------------------------------------------------- worker and dev server

@click.command(help="Run a job-queue worker (e-mail delivery, scheduled jobs).")
@click.option("--concurrency", default=1, show_default=True)
@with_appcontext
def worker(concurrency):
    from portal.platform import jobs

    if current_app.config.get("JOB_QUEUE") == "memory":
        raise click.ClickException("JOB_QUEUE=memory keeps jobs in this process; a worker needs the database.")
    click.echo("Worker started; Ctrl+C to stop.")
    jobs.run_worker(concurrency)


@click.command(help="Development: migrate, load the demo data (idempotent), start a worker and serve.")
@click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"), show_default="HOST or 127.0.0.1")
@click.option("--port", default=lambda: int(os.environ.get("PORT", "5000")), type=int,
              show_default="PORT or 5000")
@click.option("--no-worker", is_flag=True, help="Do not start a worker process.")
@with_appcontext
def dev(host, port, no_worker):
    from flask_migrate import upgrade
    from werkzeug.serving import run_simple

    from portal import demo
    from portal.db.runtime import refuse_privileged_role

    app = current_app._get_current_object()
    upgrade()
    refuse_privileged_role(db.engine, app.config["ALLOW_PRIVILEGED_DB_ROLE"])
    with unit_of_work(CLI_ACTOR):
        logins = demo.seed()  # idempotent: fills an empty database, keeps the printed logins valid
    worker_proc = None
    if not no_worker:
        worker_proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"])
    psp_proc, psp_url = _start_sandbox_psp(app, host, port)
    url = f"http://{host}:{port}/"
    click.echo("\n" + "=" * 64)
    click.echo(f"Azora Portal is running at {url}")
    click.echo(f"Sandbox payment provider: {psp_url} (test card 4242 4242 4242 4242)")
    demo.print_logins(logins)
    click.echo("=" * 64 + "\n")
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        for proc in (worker_proc, psp_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


def _start_sandbox_psp(app: Flask, host: str, port: int) -> tuple[subprocess.Popen | None, str]:
    """Start the sandbox payment provider (portal/sandbox/psp) on SANDBOX_PSP_PORT or the
    portal's port + 1, its webhooks sent to the portal, unless SANDBOX_PSP_URL names one already."""
    if os.environ.get("SANDBOX_PSP_URL"):
        return None, os.environ["SANDBOX_PSP_URL"]
    psp_port = int(os.environ.get("SANDBOX_PSP_PORT", port + 1))
    env = {**os.environ, "SANDBOX_PSP_API_KEY": app.config["SANDBOX_PSP_API_KEY"],
           "SANDBOX_PSP_WEBHOOK_SECRET": app.config["SANDBOX_PSP_WEBHOOK_SECRET"]}
    proc = subprocess.Popen(  # noqa: S603 (this interpreter and module; host and port from our options)
        [sys.executable, "-m", "portal.sandbox.psp", "--host", host, "--port", str(psp_port),
         "--db", os.path.join(app.instance_path, "sandbox-psp.sqlite3"),
         "--webhook-url", f"http://{host}:{port}/wallet/payments/webhooks/sandbox"], env=env)
    app.config["SANDBOX_PSP_URL"] = f"http://{host}:{psp_port}"
    return proc, app.config["SANDBOX_PSP_URL"]
