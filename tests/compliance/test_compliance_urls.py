"""The addresses the compliance lists build once per page (``id_url`` for rows' ids,
``QueryUrl`` for query values) are the ones ``url_for`` builds for each row, escaping included."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
from flask import render_template_string, url_for

from blueprints.compliance import query_url


@pytest.fixture(autouse=True)
def _request(app):
    with app.test_request_context("/compliance/"):
        yield


@pytest.mark.parametrize("endpoint, field", [("compliance.kyc_review", "verification_id"),
                                             ("compliance.kyc_assign", "verification_id"),
                                             ("compliance.case_detail", "case_id"),
                                             ("compliance.close_case", "case_id"),
                                             ("compliance.screening_check", "check_id")])
def test_a_row_address_is_url_for_with_the_rows_id(endpoint, field):
    for _ in range(3):
        row_id = uuid.uuid4()
        built = render_template_string("{{ id_url(e, **{f: i}) }}", e=endpoint, f=field, i=row_id)
        assert built == url_for(endpoint, **{field: row_id})


@pytest.mark.parametrize("value", ["198.51.100.23", ipaddress.ip_address("2001:db8::1"), "a.b+tag@example.org",
                                   "x y&z=1#frag", "zoë@exämple.org", "100%", "/?:@!$'()*,;"])
def test_a_query_address_escapes_as_url_for_does(value):
    assert query_url("compliance.security_events", "ip")(value) == url_for("compliance.security_events", ip=value)
    assert query_url("compliance.security_events", "email")(value) == url_for("compliance.security_events",
                                                                                email=value)
    assert (query_url("compliance.security_blocks", "target", kind="ip")(value)
            == url_for("compliance.security_blocks", kind="ip", target=value))


def test_addresses_follow_the_application_root(app):
    with app.test_request_context("/compliance/", base_url="http://localhost/portal"):
        row_id = uuid.uuid4()
        assert (render_template_string("{{ id_url('compliance.kyc_review', verification_id=i) }}", i=row_id)
                == f"/portal/compliance/kyc/{row_id}")
        assert query_url("compliance.security_events", "ip")("10.0.0.1") == "/portal/compliance/security/events?ip=10.0.0.1"
