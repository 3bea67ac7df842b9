"""Configuration read from the environment, in one place.

Every variable is listed in the README's configuration table. Defaults suit development on
the embedded database; production must set ``SECRET_KEY`` and ``DATABASE_URL``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = Path(os.environ.get("AZORA_INSTANCE_DIR", PROJECT_ROOT / "instance"))


class ConfigError(RuntimeError):
    """The environment lacks something the portal cannot run without."""


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _kept_secret(variable: str, file_name: str, make, *, required: bool = False) -> str:
    """``variable`` from the environment; otherwise, unless ``required`` (production), a value
    made once by ``make()`` and kept in ``instance/<file_name>`` (mode 600). It is written aside
    and linked into place, so two processes starting at once agree on one value."""
    value = os.environ.get(variable)
    if value or required:
        return value or ""
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / file_name
    if not path.exists():
        spare = path.with_name(f"{file_name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        try:
            os.link(spare, path)
        except FileExistsError:
            pass
        finally:
            spare.unlink()
    return path.read_text().strip()


def _limits(name: str, default: str) -> dict[str, str]:
    """``"USD=5000,AZR=100000"`` -> ``{"USD": "5000", "AZR": "100000"}`` (amounts stay text:
    the money services parse them as Decimal in their currency)."""
    raw = os.environ.get(name, default)
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {code.strip().upper(): amount.strip() for code, amount in pairs}


def _per_group(raw: str) -> dict[str, int]:
    """``"read=120,write=30"`` -> ``{"read": 120, "write": 30}`` (the API's route groups)."""
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {group.strip().lower(): int(count) for group, count in pairs}


def _certificate_key() -> str:
    from portal.security.signing import generate_key

    return generate_key()


def _file_key() -> str:
    from portal.security.crypto import generate_key_entry

    return generate_key_entry("dev")


def _card_data_key() -> str:
    from portal.security.crypto import generate_key_entry

    return generate_key_entry("card1")


def load_config(overrides: dict | None = None) -> dict:
    """Flask config dict built from the environment, with ``overrides`` applied last."""
    env = (overrides or {}).get("AZORA_ENV") or os.environ.get("AZORA_ENV", "development")
    config = {
        "AZORA_ENV": env,
        "SECRET_KEY": _kept_secret("SECRET_KEY", "secret_key", lambda: secrets.token_urlsafe(48),
                                   required=env == "production"),
        # Ed25519 key that signs certificates: base64 of the raw 32-byte private key.
        "CERTIFICATE_SIGNING_KEY": _kept_secret("CERTIFICATE_SIGNING_KEY", "certificate_key", _certificate_key,
                                                required=env == "production"),
        # AES-GCM keys for uploaded files: "keyid:base64key,..."; the first encrypts.
        "FILE_ENCRYPTION_KEYS": _kept_secret("FILE_ENCRYPTION_KEYS", "file_key", _file_key,
                                             required=env == "production"),
        # The app's database URL (a role that owns nothing). Unset: embedded server.
        "DATABASE_URL": os.environ.get("DATABASE_URL"),
        # The owner's URL, used only for migrations and role grants. Defaults to DATABASE_URL.
        "MIGRATION_DATABASE_URL": os.environ.get("MIGRATION_DATABASE_URL"),
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_pre_ping": True,
            "pool_size": _int("DB_POOL_SIZE", 10),
            "max_overflow": _int("DB_MAX_OVERFLOW", 10),
        },
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "BASE_URL": os.environ.get("BASE_URL", ""),
        # Sessions and cookies.
        "SESSION_COOKIE_NAME": "azora_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool("SESSION_COOKIE_SECURE", env == "production"),
        "SESSION_IDLE_MINUTES": _int("SESSION_IDLE_MINUTES", 120),
        "SESSION_MAX_HOURS": _int("SESSION_MAX_HOURS", 24 * 7),
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 16 * 1024 * 1024),
        # Proxies in front of the portal whose X-Forwarded-For/-Proto/-Host are believed; 0: none,
        # the socket's peer is the client (a header a client sends itself is then ignored).
        "TRUSTED_PROXIES": _int("TRUSTED_PROXIES", 0),
        # Login throttling (portal/accounts/services.py, authenticate). Refused for the rest of
        # the window: one address past its failures on one account, or on all accounts.
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": _int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5),
        "LOGIN_MAX_FAILURES_PER_IP": _int("LOGIN_MAX_FAILURES_PER_IP", 20),
        "LOGIN_THROTTLE_WINDOW_SECONDS": _int("LOGIN_THROTTLE_WINDOW_SECONDS", 900),
        # Paced, not locked: past this many failures on one account from untrusted clients
        # (anywhere, within the slow-down window), each attempt waits 1, 2, 4 ... seconds, at most
        # the maximum delay. Browsers that logged in before keep a device cookie and do not wait.
        "LOGIN_SLOWDOWN_AFTER": _int("LOGIN_SLOWDOWN_AFTER", 10),
        "LOGIN_SLOWDOWN_WINDOW_SECONDS": _int("LOGIN_SLOWDOWN_WINDOW_SECONDS", 24 * 3600),
        "LOGIN_MAX_DELAY_SECONDS": _int("LOGIN_MAX_DELAY_SECONDS", 300),
        "LOGIN_DEVICE_DAYS": _int("LOGIN_DEVICE_DAYS", 180),
        # E-mails of one kind (reset, confirmation, "already registered") per address per hour.
        "MAIL_PER_ADDRESS_PER_HOUR": _int("MAIL_PER_ADDRESS_PER_HOUR", 5),
        # Argon2 cost; tests lower it for speed.
        "ARGON2_TIME_COST": _int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_COST": _int("ARGON2_MEMORY_COST", 65536),
        # Token lifetimes.
        "EMAIL_VERIFY_MAX_AGE": _int("EMAIL_VERIFY_MAX_AGE", 3 * 24 * 3600),
        "PASSWORD_RESET_MAX_AGE": _int("PASSWORD_RESET_MAX_AGE", 3600),
        "INVITE_MAX_AGE": _int("INVITE_MAX_AGE", 7 * 24 * 3600),
        # E-mail delivery.
        "MAIL_BACKEND": os.environ.get("MAIL_BACKEND", "console" if env != "production" else "smtp"),
        "MAIL_FROM": os.environ.get("MAIL_FROM", "Azora Portal <no-reply@azora.example>"),
        "SMTP_HOST": os.environ.get("SMTP_HOST", "localhost"),
        "SMTP_PORT": _int("SMTP_PORT", 25),
        "SMTP_USERNAME": os.environ.get("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _bool("SMTP_STARTTLS", False),
        "SMTP_TIMEOUT": _int("SMTP_TIMEOUT", 10),
        "MAIL_MAX_ATTEMPTS": _int("MAIL_MAX_ATTEMPTS", 8),
        # Analytics (portal/platform/analytics). Record events from domain events (the bench
        # turns it off to measure its cost); months of events kept (older partitions are dropped
        # by the daily job); months of partitions made ahead; how far the first rollup reaches back.
        "ANALYTICS_CAPTURE": _bool("ANALYTICS_CAPTURE", True),
        "ANALYTICS_RETENTION_MONTHS": _int("ANALYTICS_RETENTION_MONTHS", 13),
        "ANALYTICS_PARTITIONS_AHEAD": _int("ANALYTICS_PARTITIONS_AHEAD", 3),
        "ANALYTICS_BACKFILL_DAYS": _int("ANALYTICS_BACKFILL_DAYS", 7),
        # Money. What one user may send to others per rolling 24 hours, per currency.
        "TRANSFER_DAILY_LIMITS": _limits("TRANSFER_DAILY_LIMITS", "AZR=100000,USD=5000,BTC=1,ETH=20"),
        # Exchange: a rate older than this is not used; a quote can be accepted for this long.
        "EXCHANGE_RATE_MAX_AGE_SECONDS": _int("EXCHANGE_RATE_MAX_AGE_SECONDS", 3600),
        "EXCHANGE_QUOTE_SECONDS": _int("EXCHANGE_QUOTE_SECONDS", 30),
        # An HTTP JSON source of rates (README: exchange rates); empty: none.
        "EXCHANGE_RATE_URL": os.environ.get("EXCHANGE_RATE_URL", ""),
        "EXCHANGE_RATE_TIMEOUT_SECONDS": _int("EXCHANGE_RATE_TIMEOUT_SECONDS", 5),
        # The tutor's optional language model: an OpenAI-compatible chat endpoint (base URL, e.g.
        # http://127.0.0.1:8080/v1; empty: none), the model's name, its key and the time allowed.
        "TUTOR_MODEL_URL": os.environ.get("TUTOR_MODEL_URL", ""),
        "TUTOR_MODEL_NAME": os.environ.get("TUTOR_MODEL_NAME", ""),
        "TUTOR_MODEL_KEY": os.environ.get("TUTOR_MODEL_KEY", ""),
        "TUTOR_MODEL_TIMEOUT_SECONDS": _int("TUTOR_MODEL_TIMEOUT_SECONDS", 8),
        # A tutoring conversation with no message for this long is ended at its last message.
        "TUTOR_SESSION_IDLE_MINUTES": _int("TUTOR_SESSION_IDLE_MINUTES", 30),
        # Payments from outside (README: payments). Which provider adapter serves each kind of
        # method ("sandbox" or "stripe").
        "PAYMENT_PROVIDERS": _limits("PAYMENT_PROVIDERS", "CARD=sandbox,MOBILE_MONEY=sandbox"),
        # The sandbox payment provider (portal/sandbox/psp): its address (``make run`` starts it
        # and sets this), the portal's API key there and the secret its webhooks are signed with.
        "SANDBOX_PSP_URL": os.environ.get("SANDBOX_PSP_URL", ""),
        "SANDBOX_PSP_API_KEY": _kept_secret("SANDBOX_PSP_API_KEY", "sandbox_psp_api_key",
                                            lambda: "sk_sandbox_" + secrets.token_urlsafe(24)),
        "SANDBOX_PSP_WEBHOOK_SECRET": _kept_secret("SANDBOX_PSP_WEBHOOK_SECRET", "sandbox_psp_webhook_secret",
                                                   lambda: "whsec_" + secrets.token_urlsafe(24)),
        # Stripe: the secret key, the webhook endpoint's signing secret, and the API's base address
        # (empty: Stripe's own; the tests point it at a local fake).
        "STRIPE_SECRET_KEY": os.environ.get("STRIPE_SECRET_KEY", ""),
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE", ""),
        # Seconds to wait for a provider's answer; a webhook older than the tolerance is refused.
        "PAYMENT_PROVIDER_TIMEOUT_SECONDS": _int("PAYMENT_PROVIDER_TIMEOUT_SECONDS", 10),
        "PAYMENT_WEBHOOK_TOLERANCE_SECONDS": _int("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", 300),
        # Smallest and largest top-up, per currency (a currency absent here cannot be topped up).
        "TOP_UP_MINIMUMS": _limits("TOP_UP_MINIMUMS", "USD=1"),
        "TOP_UP_MAXIMUMS": _limits("TOP_UP_MAXIMUMS", "USD=10000"),
        # A bought course is refunded at once when asked within this many days and with at most
        # this share of its lessons completed (percent); otherwise finance decides.
        "COURSE_REFUND_DAYS": _int("COURSE_REFUND_DAYS", 14),
        "COURSE_REFUND_MAX_PROGRESS_PERCENT": _int("COURSE_REFUND_MAX_PROGRESS_PERCENT", 20),
        # A payment still processing after this many minutes is asked about by the reconciliation job.
        "PAYMENT_STUCK_MINUTES": _int("PAYMENT_STUCK_MINUTES", 10),
        # Virtual cards (README: cards). AES-GCM keys for card numbers, "keyid:base64key,...", the
        # first encrypts (``flask cards rotate-key`` re-encrypts under it); separate from every
        # other key. The HMAC key of the numbers' lookup hash, the key the security codes are
        # derived from (never stored), and the secret the card network signs its messages with.
        "CARD_DATA_KEYS": _kept_secret("CARD_DATA_KEYS", "card_data_key", _card_data_key,
                                       required=env == "production"),
        "CARD_LOOKUP_KEY": _kept_secret("CARD_LOOKUP_KEY", "card_lookup_key", lambda: secrets.token_urlsafe(32),
                                        required=env == "production"),
        "CARD_VERIFICATION_KEY": _kept_secret("CARD_VERIFICATION_KEY", "card_verification_key",
                                              lambda: secrets.token_urlsafe(32), required=env == "production"),
        "CARD_NETWORK_SECRET": _kept_secret("CARD_NETWORK_SECRET", "card_network_secret",
                                            lambda: "cnsec_" + secrets.token_urlsafe(24),
                                            required=env == "production"),
        # The issuer's BIN (the first six digits of every card number): a test range by default.
        "CARD_BIN": os.environ.get("CARD_BIN", "999100"),
        # Live (not canceled or replaced) cards one user may hold; years a new card is valid.
        "CARD_MAX_LIVE_PER_USER": _int("CARD_MAX_LIVE_PER_USER", 3),
        "CARD_VALID_YEARS": _int("CARD_VALID_YEARS", 3),
        # A network message whose signed timestamp is older (or further ahead) than this is refused.
        "CARD_NETWORK_TOLERANCE_SECONDS": _int("CARD_NETWORK_TOLERANCE_SECONDS", 300),
        # A capture may exceed its authorization by this share (tips), in percent.
        "CARD_TIP_TOLERANCE_PERCENT": _int("CARD_TIP_TOLERANCE_PERCENT", 20),
        # An authorization not captured within this many days is released by the expiry job.
        "CARD_HOLD_DAYS": _int("CARD_HOLD_DAYS", 7),
        # Wrong security codes in a row before the card is frozen.
        "CARD_MAX_WRONG_CVV": _int("CARD_MAX_WRONG_CVV", 3),
        # Billing (README: billing). Days after an invoice's due date when a failed charge is
        # retried, and what happens after the last retry fails: "cancel" or "downgrade" (to the
        # free plan).
        "BILLING_RETRY_DAYS": os.environ.get("BILLING_RETRY_DAYS", "1,3,5,7"),
        "BILLING_AFTER_FINAL_FAILURE": os.environ.get("BILLING_AFTER_FINAL_FAILURE", "cancel"),
        # The seller's legal details printed on invoices.
        "BILLING_LEGAL_NAME": os.environ.get("BILLING_LEGAL_NAME", "Azora Portal"),
        "BILLING_LEGAL_ADDRESS": os.environ.get("BILLING_LEGAL_ADDRESS", ""),
        "BILLING_TAX_ID": os.environ.get("BILLING_TAX_ID", ""),
        # Lending (README: lending). A loan above this amount (in its currency) needs a second
        # officer's confirmation (four eyes).
        "LENDING_FOUR_EYES_ABOVE": os.environ.get("LENDING_FOUR_EYES_ABOVE", "1000"),
        # The order a repayment pays the parts of what is due, comma separated.
        "LENDING_ALLOCATION_ORDER": os.environ.get("LENDING_ALLOCATION_ORDER", "penalty,fee,interest,principal"),
        # Collateral: the share taken off its market value, the loan-to-value at which the
        # borrower gets a margin call and the one at which collateral is sold (fractions).
        "LENDING_COLLATERAL_HAIRCUT": os.environ.get("LENDING_COLLATERAL_HAIRCUT", "0.30"),
        "LENDING_MARGIN_CALL_LTV": os.environ.get("LENDING_MARGIN_CALL_LTV", "0.75"),
        "LENDING_LIQUIDATION_LTV": os.environ.get("LENDING_LIQUIDATION_LTV", "0.90"),
        # Whether the daily job takes due instalments from the wallets of loans set to repay
        # automatically.
        "LENDING_AUTO_REPAY": _bool("LENDING_AUTO_REPAY", True),
        # Compliance. Screening: a watchlist candidate scoring at least this (0-100) is a hit.
        "AML_MATCH_THRESHOLD": _int("AML_MATCH_THRESHOLD", 85),
        # Transaction monitoring: a single movement at or above this is large, per currency
        # (the other rules' defaults are in portal/compliance/aml/monitoring.py; admins edit them).
        "MONITORING_LARGE_AMOUNTS": _limits("MONITORING_LARGE_AMOUNTS", "AZR=100000,USD=10000,BTC=0.25,ETH=5"),
        # Largest KYC document upload, in bytes.
        "KYC_MAX_UPLOAD_BYTES": _int("KYC_MAX_UPLOAD_BYTES", 5 * 1024 * 1024),
        # Failed logins from one address within the login throttle window before it is blocked
        # automatically, and for how long.
        "AUTO_BLOCK_FAILURES": _int("AUTO_BLOCK_FAILURES", 50),
        "AUTO_BLOCK_MINUTES": _int("AUTO_BLOCK_MINUTES", 60),
        # The JSON API (README: API). Requests per window (seconds) for each route group: per
        # token, per user (all their tokens) and per client address; a group absent from a list
        # is not limited on that key.
        "API_RATE_WINDOW_SECONDS": _int("API_RATE_WINDOW_SECONDS", 60),
        "API_RATE_LIMITS": _per_group(os.environ.get("API_RATE_LIMITS", "read=120,write=20")),
        "API_RATE_LIMITS_PER_USER": _per_group(os.environ.get("API_RATE_LIMITS_PER_USER", "read=240,write=40")),
        "API_RATE_LIMITS_PER_ADDRESS": _per_group(os.environ.get("API_RATE_LIMITS_PER_ADDRESS",
                                                                 "read=600,write=100,docs=120")),
        # Largest request body the API reads, in bytes (a larger one is refused with 413).
        "API_MAX_BODY_BYTES": _int("API_MAX_BODY_BYTES", 64 * 1024),
        # The request log (api_logs): every API request and this share (0 to 1) of page requests;
        # written in batches of this many entries or after this many seconds, kept this many days.
        "API_LOG_PAGE_SAMPLE": float(os.environ.get("API_LOG_PAGE_SAMPLE", "0.05")),
        "API_LOG_BATCH_SIZE": _int("API_LOG_BATCH_SIZE", 50),
        "API_LOG_FLUSH_SECONDS": _int("API_LOG_FLUSH_SECONDS", 5),
        "API_LOG_RETENTION_DAYS": _int("API_LOG_RETENTION_DAYS", 30),
        # Whether the app may serve as a superuser / BYPASSRLS role (development and tests only).
        "ALLOW_PRIVILEGED_DB_ROLE": _bool("ALLOW_PRIVILEGED_DB_ROLE", env in {"development", "test"}),
        "PREFERRED_URL_SCHEME": "https" if env == "production" else "http",
    }
    if overrides:
        config.update(overrides)
    if config["AZORA_ENV"] == "production":
        missing = [name for name in ("SECRET_KEY", "DATABASE_URL") if not config.get(name)]
        if missing:
            raise ConfigError(f"In production set {' and '.join(missing)} in the environment (see the README's "
                              "configuration table); nothing is made up for them there.")
    if not config["MIGRATION_DATABASE_URL"]:
        config["MIGRATION_DATABASE_URL"] = config["DATABASE_URL"]
    return config
