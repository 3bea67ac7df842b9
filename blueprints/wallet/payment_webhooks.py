"""``POST /wallet/payments/webhooks/<provider>``: payment providers report here.

No login and no CSRF token: a provider's server calls it, and ``portal.money.payments.webhooks``
checks the provider's signature before believing anything. Answers are small JSON: 200 once the
event is stored and applied (a duplicate too: the provider stops retrying), 503 when it is
stored but applying it failed (the provider's retry applies it again), 400 for a webhook that does not
verify (a security event is kept), 404 for a provider the portal does not have, 413 for a body
larger than any real event.
"""

from __future__ import annotations

from flask import jsonify, request

from blueprints.wallet import bp
from portal.db import db
from portal.money.payments import webhooks
from portal.money.payments.models import WebhookOutcome
from portal.security.access import public, signed_by_sender

#: Larger than any provider's event; anything bigger is refused before it is read.
MAX_BODY = 256 * 1024


@bp.post("/payments/webhooks/<provider>")
@public
@signed_by_sender
def payment_webhook(provider: str):
    if request.content_length is not None and request.content_length > MAX_BODY:
        return jsonify(error="The body is too large."), 413
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        return jsonify(error="The body is too large."), 413
    try:
        receipt = webhooks.receive(provider, body, dict(request.headers), ip=request.remote_addr)
    except webhooks.UnknownProvider as exc:
        db.session.rollback()
        return jsonify(error=exc.message), 404
    except webhooks.BadWebhook as exc:
        db.session.commit()  # the security event, and nothing else, is kept
        return jsonify(error=exc.message), 400
    db.session.commit()
    body = dict(received=True, id=receipt.event_id, duplicate=receipt.duplicate, outcome=receipt.outcome.value)
    if receipt.outcome == WebhookOutcome.FAILED:
        # Stored, but applying failed: ask the provider to deliver it again later (its retry
        # applies it), while the job and finance's replay can repair it meanwhile.
        return jsonify(body), 503, {"Retry-After": "60"}
    return jsonify(body)
