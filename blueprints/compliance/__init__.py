"""Compliance for officers and admins: the KYC review queue, AML screening and its hits, the
watchlist, transaction-monitoring cases and their reports, the officers' dashboard, and
security events and blocks.

One blueprint, a module per part: ``kyc_review``, ``screening``, ``cases`` and ``security``.
(Students' own identity verification lives with their wallet, whose limits it unlocks; their
login sessions with their account.)
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus, urlencode

from flask import Blueprint, request, url_for

from portal.compliance import COUNT_CAP

bp = Blueprint("compliance", __name__, url_prefix="/compliance")


@bp.app_template_filter("capped")
def capped(count: int) -> str:
    """A count made by ``portal.compliance.count_upto``: "1000+" past the cap."""
    return f"{COUNT_CAP}+" if count > COUNT_CAP else str(count)


#: The characters werkzeug's ``url_for`` leaves unescaped in a query string (``urlencode``
#: with ``quote_plus``), and a value made of nothing else.
_QUERY_SAFE = "!$'()*,/:;?@"
_PLAIN = re.compile(r"[A-Za-z0-9_.~\-!$'()*,/:;?@]*")
_query_urls: dict[tuple, QueryUrl] = {}


class QueryUrl:
    """``url_for(endpoint, **fixed, name=value)`` for many values, built once: the address with
    its fixed arguments, then ``name=value`` escaped as ``url_for`` escapes it (the event log
    links each row's address and e-mail to the events of that address and that e-mail)."""

    def __init__(self, endpoint: str, name: str, **fixed) -> None:
        head = url_for(endpoint, **fixed)
        self._head = f"{head}{'&' if '?' in head else '?'}{urlencode(((name, ''),))}"

    def __call__(self, value) -> str:
        value = str(value)
        if _PLAIN.fullmatch(value):  # an address, most e-mails: nothing to escape
            return self._head + value
        return self._head + quote_plus(value, safe=_QUERY_SAFE)


@bp.app_template_global("query_url")
def query_url(endpoint: str, name: str, **fixed) -> QueryUrl:
    """``QueryUrl`` of an endpoint, kept per application root."""
    key = (request.script_root, endpoint, name, *sorted(fixed.items()))
    found = _query_urls.get(key)
    if found is None:
        found = _query_urls[key] = QueryUrl(endpoint, name, **fixed)
    return found


from blueprints.compliance import cases, kyc_review, screening, security, sla  # noqa: E402,F401
