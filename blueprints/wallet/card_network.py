"""``POST /wallet/cards/network/authorize|capture|reverse|refund``: the card network calls here.

No login and no CSRF token: the network's server calls it, and ``portal.money.cards.network``
checks its signature (HMAC-SHA256 over timestamp and body) before believing anything. Answers
are small JSON: 200 with the decision (approved or a decline code) for every message that was
understood, duplicates included; 400 for one malformed, unsigned, forged or replayed (as the
payment webhooks answer: no credentials are asked of a caller, so 401 would promise a login the
route does not have; the message says which), 413 for a body larger than any real message. A
refused message leaves no hold behind. The same message delivered twice at the same moment is
applied once: the second delivery is rolled back and received again, and gets the first answer.
"""

from __future__ import annotations

from flask import jsonify, request

from blueprints.wallet import bp
from portal.db import db
from portal.money.cards import network
from portal.security.access import public, signed_by_sender


def _receive(kind: str):
    if request.content_length is not None and request.content_length > network.MAX_BODY:
        return jsonify(error="The body is too large."), 413
    body = request.get_data(cache=False)
    if len(body) > network.MAX_BODY:
        return jsonify(error="The body is too large."), 413
    for _attempt in range(2):
        try:
            with network.acting_for_network():
                answer = network.receive(kind, body, request.headers)
                db.session.commit()
        except network.Unauthenticated as exc:
            db.session.commit()  # the security event, and nothing else, is kept
            return jsonify(error=exc.message), 400
        except network.BadMessage as exc:
            db.session.rollback()
            return jsonify(error=exc.message), 400
        except network.DeliveredAtOnce:
            db.session.rollback()  # the other delivery committed: receiving again finds its answer
            continue
        return jsonify(answer.as_json())
    return jsonify(error="The message is being applied by another delivery; send it again."), 409


@bp.post("/cards/network/authorize")
@public
@signed_by_sender
def card_network_authorize():
    return _receive("authorize")


@bp.post("/cards/network/capture")
@public
@signed_by_sender
def card_network_capture():
    return _receive("capture")


@bp.post("/cards/network/reverse")
@public
@signed_by_sender
def card_network_reverse():
    return _receive("reverse")


@bp.post("/cards/network/refund")
@public
@signed_by_sender
def card_network_refund():
    return _receive("refund")
