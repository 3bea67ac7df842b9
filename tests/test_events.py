"""The receivers of the domain events: where they live, how they take their arguments, and that
the "received by" column of the table in portal/events.py says who is connected once the app
exists, and nothing else."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import blinker
import pytest

from portal import events

ROOT = Path(__file__).resolve().parents[1]


def _received_by() -> dict[str, set[str]]:
    """{event: the packages the table says receive it} from portal/events.py's docstring."""
    table = {}
    for row in re.findall(r"^\| ``\w+`` \|.*\|$", events.__doc__, re.MULTILINE):
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        name, received = cells[0].strip("`"), cells[-1]
        table[name] = set() if received == "(none)" else {part.strip().strip("`") for part in received.split(",")}
    return table


def _receivers(name: str) -> list:
    return list(getattr(events, name).receivers_for(blinker.ANY))


def _package(receiver) -> str:
    """``portal.money.earnings.listeners`` -> ``money.earnings``."""
    return receiver.__module__.removeprefix("portal.").removesuffix(".listeners")


@pytest.mark.usefixtures("app")  # create_app connects the receivers
def test_the_received_by_column_names_every_connected_receiver():
    table = _received_by()
    assert set(table) == set(events.NAMES)
    connected = {name: {_package(receiver) for receiver in _receivers(name)} for name in events.NAMES}
    assert connected == table


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize("name", events.NAMES)
def test_receivers_live_in_a_listeners_module_and_take_keyword_only_arguments(name):
    for receiver in _receivers(name):
        assert receiver.__module__.endswith(".listeners"), f"{receiver.__qualname__} of {name} is in {receiver.__module__}"
        params = list(inspect.signature(receiver).parameters.values())
        sender, rest = params[0], params[1:]
        assert sender.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and sender.default is None, receiver
        assert rest and all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in rest), receiver
        # ``**kwargs`` read with ``.get`` would skip a missing argument quietly: a receiver names
        # what it needs and ignores the rest as ``**_``.
        assert [p.name for p in rest if p.kind is p.VAR_KEYWORD] == ["_"], receiver


def test_connecting_the_listeners_needs_no_blueprint():
    """A process that never imports an HTTP module (a script, a worker) still reacts to events:
    the wiring is ``_connect_listeners``, not the import of a blueprint part."""
    script = (
        "import sys\n"
        "from portal import events\n"
        "from portal.app import _connect_listeners\n"
        "_connect_listeners()\n"
        "import blinker\n"
        "print(sorted(r.__module__ for r in events.quiz_passed.receivers_for(blinker.ANY)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('blueprints.') and m != 'blueprints.web'))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == str(["portal.learning.education.listeners", "portal.learning.tutoring.listeners",
                          "portal.money.earnings.listeners", "portal.platform.analytics.listeners"])
    assert out[1] == "[]"
