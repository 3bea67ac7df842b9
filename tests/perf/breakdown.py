"""Where a page's time goes: ``python -m tests.perf.breakdown`` (``make breakdown``).

For every page of the bench (``tests/perf/pages.py``, on the bench database the bench built), in
this process through ``app.test_client()``, one thread, after a warm-up: the CPU and wall time
of a request, split into

- **session & access**: the request's hooks up to the view (the session cookie, the session
  lookup and its statement, blocks, the permission check),
- **queries**: the view's own SQL statements, from before each statement is sent until its rows
  are in (the database's work, the round trip and the driver),
- **rendering**: Jinja, the page and its layout,
- **rest**: everything else of the request (the view's own Python, the ORM's building of objects
  and statements, Flask and Werkzeug, the response).

The figures are milliseconds per request, the mean of ``BREAKDOWN_REQUESTS`` (default 200;
fewer for the gradebook export). It asserts nothing: it is for reading beside the bench.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.perf import pages, settings

REQUESTS = int(os.environ.get("BREAKDOWN_REQUESTS") or 200)


@dataclass
class Clock:
    """Wall time per part of the request, added up over the requests measured."""

    parts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    statements: int = 0
    _depth: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @contextmanager
    def part(self, name: str):
        self._depth[name] += 1
        began = time.perf_counter()
        try:
            yield
        finally:
            self._depth[name] -= 1
            if not self._depth[name]:  # nested (a template including a template): counted once
                self.parts[name] += time.perf_counter() - began

    def in_part(self, name: str) -> bool:
        return self._depth[name] > 0


def instrument(app, now: Callable[[], Clock]) -> None:
    """Time the request's hooks, its statements and its rendering, into the clock ``now()``
    returns (one per page)."""
    import jinja2
    from sqlalchemy import event

    from portal.db import db

    hooks = app.before_request_funcs[None]
    app.before_request_funcs[None] = [_timed(now, "session & access", hook) for hook in hooks]

    render = jinja2.Template.render
    jinja2.Template.render = lambda self, *a, **k: _within(now(), "rendering", render, self, *a, **k)
    with app.app_context():
        engine = db.engine
    began: dict[int, float] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def _sent(conn, cursor, *_):
        began[id(cursor)] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _answered(conn, cursor, *_):
        took = time.perf_counter() - began.pop(id(cursor), time.perf_counter())
        clock = now()
        clock.statements += 1
        if not clock.in_part("session & access"):
            clock.parts["queries"] += took


def _timed(now: Callable[[], Clock], name: str, hook):
    def timed():
        with now().part(name):
            return hook()

    timed.__name__ = getattr(hook, "__name__", "hook")
    return timed


def _within(clock: Clock, name: str, function, *args, **kwargs):
    with clock.part(name):
        return function(*args, **kwargs)


def main() -> int:
    os.chdir(settings.PROJECT_ROOT)
    ready = pages.prepare()
    clients, page_list = ready.clients, ready.pages
    clocks = [Clock()]
    instrument(ready.app, lambda: clocks[-1])
    width = max(len(page.label) for page, _ in page_list)
    header = (f"{'page':<{width}} {'stmts':>5} {'CPU ms':>7} {'wall ms':>8} {'session':>8} {'queries':>8} "
              f"{'render':>8} {'rest':>8}")
    print(f"Per request, in process, one thread; {REQUESTS} requests per page\n{header}\n{'-' * len(header)}")
    for page, path in page_list:
        requests = max(10, REQUESTS // 10) if path.endswith(".csv") else REQUESTS
        client = clients[page.who]
        for _ in range(5):
            client.get(path).get_data()
        clocks.append(clock := Clock())
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            response = client.get(path)
            response.get_data()
            if response.status_code != 200:
                raise SystemExit(f"GET {path} as {page.who or 'anonymous'}: {response.status_code}")
        cpu_ms = (time.process_time() - cpu) * 1000 / requests
        wall_ms = (time.perf_counter() - wall) * 1000 / requests
        part = {name: seconds * 1000 / requests for name, seconds in clock.parts.items()}
        session, queries, render = (part.get(n, 0.0) for n in ("session & access", "queries", "rendering"))
        rest = wall_ms - session - queries - render
        print(f"{page.label:<{width}} {clock.statements / requests:>5.0f} {cpu_ms:>7.2f} {wall_ms:>8.2f} "
              f"{session:>8.2f} {queries:>8.2f} {render:>8.2f} {rest:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
