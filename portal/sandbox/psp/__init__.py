"""The sandbox payment service provider: a small HTTP service that behaves like a real one
(a JSON API, a hosted payment page, a challenge step, delayed settlement, signed webhooks), so
the portal can take payments offline, in the demo and in the tests.

Run it: ``python -m portal.sandbox.psp --port 5001 --db psp.sqlite3 --webhook-url URL`` (the API
key and the webhook secret from ``--api-key``/``--webhook-secret`` or ``SANDBOX_PSP_API_KEY`` and
``SANDBOX_PSP_WEBHOOK_SECRET``). In a test: ``Server(Settings(...)).start()``, or
``make_app(settings)`` for the WSGI application alone.

**API** (JSON; ``Authorization: Bearer <api key>``, else 401). Amounts are integers in the
currency's minor units (``1250`` is 12.50 USD); currencies: ``rules.CURRENCY_SCALES``. Every
POST honours ``Idempotency-Key``: the same key with the same body answers the first answer again
(header ``Idempotent-Replayed: true``), with another body 409. Errors are
``{"error": {"type", "code", "message", "param"}}``: 400 bad input, 401 bad key, 402 a declined
off-session charge (the error carries the failed ``payment``), 404 unknown id, 409 a state that
does not allow the call or a refund above what is left.

- ``POST /v1/customers`` {email, name} -> customer ``cus_...``; ``GET /v1/customers/<id>``
- ``POST /v1/payments`` {amount, currency, method_kind: card|mobile_money, return_url,
  description?, metadata? (strings), customer?, payment_method? (a saved one: charged at once),
  save_method?, capture_method?: automatic|manual} -> payment ``pay_...``
- ``GET /v1/payments/<id>``; ``POST /v1/payments/<id>/capture`` {amount?};
  ``POST /v1/payments/<id>/cancel``
- ``POST /v1/refunds`` {payment, amount? (default: all that is left), reason?} -> refund
  ``re_...`` (``pending``); ``GET /v1/refunds/<id>``
- ``GET /v1/customers/<id>/payment_methods``; ``POST /v1/payment_methods/<id>/detach``
- ``GET /v1/webhook_deliveries``: the latest deliveries, their attempts and answers
- Test helpers: ``POST /v1/test_helpers/settle`` settles every pending mobile money payment
  and refund now; ``POST /v1/test_helpers/webhooks/flush`` makes every waiting webhook due now.

A payment: ``state`` (requires_action -> the payer goes to ``next_action_url``;
requires_payment_method after a decline, with ``failure_code``/``failure_message``;
processing; requires_capture; succeeded; failed; canceled), ``amount``, ``amount_captured``,
``amount_refunded`` (settled refunds), ``fee`` and ``net`` once succeeded, ``payment_method``
(brand, last4, expiry), ``method_saved``, ``metadata`` as given.

**Hosted pages.** ``/pay/<id>`` takes the card or the phone number (the portal never sees
them); ``/challenge/<id>`` is the 3-D Secure-like step. The payer then returns to
``return_url?payment_ref=<id>``. Test cards (``rules.TEST_CARDS``): 4242424242424242 succeeds;
4000000000009995 declines insufficient_funds, 4000000000009979 stolen_card, 4000000000000002
card_declined (the page shows why; the payer may try again); 4000002760003184 asks for the
challenge; 4000000000000341 succeeds and may be saved, but every later off-session charge
with it declines (card_declined); any other valid number succeeds. Mobile money is ``processing`` and settles after
``mobile_money_delay`` seconds; a phone number ending 0002 fails (insufficient_funds).

**Fees**: card 2.9% + 0.30, mobile money 1.5%, rounded half up to a minor unit. **Refunds**
settle after ``refund_delay`` seconds; one whose amount ends in 13 minor units (0.13, 5.13 USD)
fails. **Webhooks**: see ``webhooks`` (signature, retries, chaos).
"""

from portal.sandbox.psp.app import SandboxApp, Server, make_app
from portal.sandbox.psp.settings import Settings
from portal.sandbox.psp.webhooks import SIGNATURE_HEADER, sign

__all__ = ["SIGNATURE_HEADER", "SandboxApp", "Server", "Settings", "make_app", "sign"]
