"""Payment provider adapters behind one port (``base.Provider``).

``provider_named`` builds an adapter from the app's configuration by its name; ``provider_for``
the one ``PAYMENT_PROVIDERS`` configures for a kind of payment method. Adapters are imported only
when named, so a portal without Stripe keys never touches the Stripe SDK.

Each adapter class has ``from_config(config) -> Provider`` reading its own settings
(``SANDBOX_PSP_*``, ``STRIPE_*``, ``PAYMENT_PROVIDER_TIMEOUT_SECONDS``,
``PAYMENT_WEBHOOK_TOLERANCE_SECONDS``) and refusing with ``ProviderUnavailable`` when they are
missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from portal.money.payments.providers.base import MethodKind, Provider, ProviderError

#: Adapter name -> "module:class".
ADAPTERS = {
    "sandbox": "portal.money.payments.providers.sandbox:SandboxProvider",
    "stripe": "portal.money.payments.providers.stripe:StripeProvider",
}


class UnknownProvider(ProviderError):
    """A provider name no adapter answers to (a configuration mistake)."""


def provider_named(name: str, config: Mapping) -> Provider:
    try:
        module_name, class_name = ADAPTERS[name].split(":")
    except KeyError:
        raise UnknownProvider(f"No payment provider is called {name!r} (known: {', '.join(sorted(ADAPTERS))}).") from None
    adapter = getattr(importlib.import_module(module_name), class_name)
    return adapter.from_config(config)


def provider_name_for(kind: MethodKind, config: Mapping) -> str:
    """The adapter name configured for ``kind`` (``PAYMENT_PROVIDERS``, default ``sandbox``)."""
    return config.get("PAYMENT_PROVIDERS", {}).get(MethodKind(kind).value.upper(), "sandbox")


def provider_for(kind: MethodKind, config: Mapping) -> Provider:
    return provider_named(provider_name_for(kind, config), config)
