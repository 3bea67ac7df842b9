"""Settings: every environment variable the configuration reads is in the README's table, and
``TRUSTED_PROXIES`` decides whose word about the client's address is believed."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from blueprints.web import client_ip
from portal.app import _trust_proxies
from portal.config import PROJECT_ROOT

READ = re.compile(r'(?:_int|_bool|_limits|_kept_secret|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)"')


def test_every_setting_read_from_the_environment_is_documented():
    source = (PROJECT_ROOT / "portal" / "config.py").read_text()
    readme = (PROJECT_ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`(?: / `([A-Z][A-Z0-9_]+)`)?", readme, re.M))
    names = {name for pair in documented for name in pair if name}
    read = set(READ.findall(source))
    assert "TRUSTED_PROXIES" in read
    assert read - names == set()


def _peer_app(hops: int) -> Flask:
    bare = Flask("proxies")
    bare.config["TRUSTED_PROXIES"] = hops
    _trust_proxies(bare)
    bare.add_url_rule("/ip", "ip", lambda: f"{client_ip()} {bare.config['TRUSTED_PROXIES']}")
    return bare


@pytest.mark.parametrize(("hops", "forwarded", "seen"), [
    (0, "203.0.113.7", "10.0.0.2"),  # no proxy trusted: a header the client wrote is ignored
    (1, "203.0.113.7", "203.0.113.7"),  # one proxy: its word about the client is believed
    (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # only the nearest hop, not what the client added
    (2, "198.51.100.1, 203.0.113.7", "198.51.100.1"),
])
def test_trusted_proxies_decide_the_client_address(hops, forwarded, seen):
    response = _peer_app(hops).test_client().get("/ip", headers={"X-Forwarded-For": forwarded},
                                                  environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert response.get_data(as_text=True).split()[0] == seen
