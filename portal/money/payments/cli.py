"""``flask payments ...``: commands of the payment gateway.

``flask payments reconcile`` compares every payment and refund with its provider's record and
with the ledger (``portal.money.payments.reconcile``), prints every difference and exits with
status 1 when there is any, so a cron job or a deployment step notices. ``--fix`` first applies
what the providers say (as the periodic job does); ``--days N`` limits it to recent payments;
``--offline`` compares with the ledger only, without asking the providers.
"""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext


@click.group("payments", help="Payments from outside: reconciliation.")
def payments_group():
    pass


@payments_group.command("reconcile", help="Compare payments and refunds with the providers and the ledger; "
                                          "exit 1 on any difference.")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Only payments of the last N days.")
@click.option("--fix", is_flag=True, help="Apply what the providers say first (idempotent).")
@click.option("--offline", is_flag=True, help="Compare with the ledger only; do not ask the providers.")
@with_appcontext
def reconcile_command(days: int | None, fix: bool, offline: bool):
    from portal.db import as_cli_actor
    from portal.money.payments import reconcile as module

    # The result is recorded (the reconciliation page shows the last run) whatever it found.
    report = as_cli_actor(lambda: module.reconcile_and_record("flask payments reconcile", days=days, fix=fix,
                                                              provider_calls=not offline))()
    click.echo(f"Checked {report.payments} payments and {report.refunds} refunds"
               + (f"; {report.fixed} brought up to date from the providers" if fix else "") + ".")
    if report.ok:
        click.echo("Every payment and refund matches its provider and the ledger.")
        return
    click.echo(f"{len(report.differences)} difference(s):", err=True)
    for difference in report.differences:
        click.echo(f"  - [{difference.kind}] payment {difference.payment_id}: {difference.message}", err=True)
    sys.exit(1)
