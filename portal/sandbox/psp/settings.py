"""The sandbox provider's settings (``python -m portal.sandbox.psp --help`` sets most of them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    api_key: str
    webhook_secret: str
    db_path: str
    #: Where events are POSTed; empty: events are recorded, not sent.
    webhook_url: str = ""
    #: The address payers reach the service at (pages' links); empty: the serving address.
    public_url: str = ""
    #: Seconds before a mobile money payment confirms, and before a refund settles.
    mobile_money_delay: float = 5.0
    refund_delay: float = 3.0
    #: Webhook retries: the first after ``retry_base`` seconds, doubling up to ``retry_cap``,
    #: at most ``max_attempts`` tries in all.
    retry_base: float = 1.0
    retry_cap: float = 60.0
    max_attempts: int = 20
    webhook_timeout: float = 5.0
    #: Chaos: some events are sent twice, some held back so later ones overtake them.
    chaos: bool = False
    chaos_seed: int | None = None
    chaos_duplicate_rate: float = 0.2
    chaos_delay_rate: float = 0.2
    chaos_delay_seconds: float = 3.0
    #: How often the background threads look for due work.
    poll_interval: float = 0.2
