"""``flask ledger ...``: commands of the ledger.

``flask ledger verify`` checks the ledger (``portal.money.wallets.ledger.verify``), prints what
it checked and every difference, records the result as a ``ledger.verification`` metric (the
admin dashboard shows the last one) and exits with status 1 when anything differs, so a cron
job or a deployment step notices.
"""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from portal.money.currency import format_amount


@click.group("ledger", help="The ledger: verification.")
def ledger_group():
    pass


def _record():
    from portal.db import as_cli_actor
    from portal.money.wallets.admin_services import verify_and_record

    # The metric is committed whatever the verification found: a failed check is worth keeping.
    return as_cli_actor(lambda: verify_and_record("flask ledger verify"))()


@ledger_group.command("verify", help="Check that every currency's balances sum to zero and every wallet's "
                                     "balance is the replay of its transactions; exit 1 on any difference.")
@with_appcontext
def verify_command():
    recorded = _record()
    report = recorded.report
    click.echo(f"Checked {report.wallets} wallets and {report.transactions} transactions.")
    for code, total in sorted(report.currencies.items()):
        state = "ok" if total == 0 else "DIFFERS"
        click.echo(f"  {code}: balances sum to {format_amount(total, code)} ({state})")
    if report.ok:
        click.echo("The ledger verifies: every balance is the replay of its transactions.")
        return
    click.echo(f"{len(report.problems)} difference(s):", err=True)
    for problem in report.problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(1)
