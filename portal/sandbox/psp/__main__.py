"""``python -m portal.sandbox.psp``: serve the sandbox payment provider until stopped."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from portal.sandbox.psp.app import Server
from portal.sandbox.psp.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.sandbox.psp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--db", required=True, help="SQLite file holding the provider's state")
    parser.add_argument("--webhook-url", default="", help="where events are POSTed (empty: not sent)")
    parser.add_argument("--public-url", default="", help="the address payers reach (default: http://HOST:PORT)")
    parser.add_argument("--api-key", default=os.environ.get("SANDBOX_PSP_API_KEY", ""))
    parser.add_argument("--webhook-secret", default=os.environ.get("SANDBOX_PSP_WEBHOOK_SECRET", ""))
    parser.add_argument("--mobile-money-delay", type=float, default=5.0)
    parser.add_argument("--refund-delay", type=float, default=3.0)
    parser.add_argument("--chaos", action=argparse.BooleanOptionalAction, default=True,
                        help="send some events twice or late (default: on)")
    parser.add_argument("--chaos-seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not args.api_key or not args.webhook_secret:
        parser.error("set --api-key and --webhook-secret (or SANDBOX_PSP_API_KEY and SANDBOX_PSP_WEBHOOK_SECRET)")
    settings = Settings(api_key=args.api_key, webhook_secret=args.webhook_secret, db_path=args.db,
                        webhook_url=args.webhook_url, public_url=args.public_url,
                        mobile_money_delay=args.mobile_money_delay, refund_delay=args.refund_delay,
                        chaos=args.chaos, chaos_seed=args.chaos_seed)
    server = Server(settings, args.host, args.port)
    print(f"Sandbox payment provider at {server.url}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
