"""The cost of event capture (``portal.platform.analytics.capture``) and of the request log
(``portal.platform.gateway.logs``), in this process.

Two figures of capture, each with capture on and off in the same run:

1. **A page**: ``BENCH_CAPTURE_REQUESTS`` (300) GETs of the learner's wallet through the test
   client. A read records nothing, so this is the price of the request hooks alone.
2. **A write with events**: ``BENCH_CAPTURE_REQUESTS`` units of work that record
   ``EVENTS_PER_WRITE`` events (a quiz submitted, passed, a lesson completed: what one quiz
   submission sends) and commit, as a request does, then end as a request ends (its response
   made). Off, the same work records nothing. That is what the request pays; the events are
   written after the response has gone (``capture.after_response``: the buffer in one INSERT,
   on the writer's own pool), timed apart as a third line: the server's thread pays it, no
   request waits for it.

And the page again with every page request in the request log and with none (``logging_cost``).

Printed as mean milliseconds per request and the difference: what each adds to a request.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

REQUESTS = int(os.environ.get("BENCH_CAPTURE_REQUESTS", "300"))
EVENTS_PER_WRITE = 3


@dataclass
class CaptureCost:
    label: str
    on_ms: float
    off_ms: float

    @property
    def added_ms(self) -> float:
        return self.on_ms - self.off_ms


def _page(client, path: str) -> float:
    client.get(path).close()  # warm-up
    started = time.perf_counter()
    for _ in range(REQUESTS):
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"capture bench: GET {path} answered {response.status_code}")
        response.close()  # as a server does once it has sent it: the request log's writes run then
    return (time.perf_counter() - started) * 1000 / REQUESTS


def _writes(app) -> tuple[float, float]:
    """Mean ms per unit of work until its response is made, and of the write after it."""
    from portal.db import db
    from portal.db.context import Actor, acting_as
    from portal.platform.analytics import capture

    user_id, course_id = uuid.uuid4(), uuid.uuid4()
    answering = after = 0.0
    for _ in range(REQUESTS):
        started = time.perf_counter()
        with app.app_context(), acting_as(Actor.system("bench")):
            capture.begin_request(lambda: None)
            for name in ("quiz_submitted", "quiz_passed", "lesson_completed")[:EVENTS_PER_WRITE]:
                capture.record(name, user_id, course_id=course_id)
            db.session.commit()
            write = capture.after_response()  # as the app factory hands it to the response
            capture.end_request()
            db.session.remove()
        sent = time.perf_counter()
        answering += sent - started
        if write is not None:
            write()  # as the server calls it, once the response has gone (WSGI close)
        after += time.perf_counter() - sent
    return answering * 1000 / REQUESTS, after * 1000 / REQUESTS


def capture_costs(app, client, path: str) -> list[CaptureCost]:
    """The page and the write, capture on then off; the setting is restored afterwards."""
    saved = app.config.get("ANALYTICS_CAPTURE", True)
    results = {}
    try:
        for on in (True, False):
            app.config["ANALYTICS_CAPTURE"] = on
            results[on] = (_page(client, path), _writes(app))
    finally:
        app.config["ANALYTICS_CAPTURE"] = saved
    return [CaptureCost(f"GET {path} (records nothing)", results[True][0], results[False][0]),
            CaptureCost(f"a commit recording {EVENTS_PER_WRITE} events", results[True][1][0], results[False][1][0]),
            CaptureCost("  its write, after the response", results[True][1][1], results[False][1][1])]


def logging_cost(app, client, path: str) -> CaptureCost:
    """The page with every page request in the request log (``API_LOG_PAGE_SAMPLE`` 1) and with
    none (0): the price of logging a page, its batched writes included. The setting is restored."""
    saved = app.config["API_LOG_PAGE_SAMPLE"]
    try:
        timed = {}
        for rate in (1.0, 0.0):
            app.config["API_LOG_PAGE_SAMPLE"] = rate
            timed[rate] = _page(client, path)
    finally:
        app.config["API_LOG_PAGE_SAMPLE"] = saved
    return CaptureCost(f"GET {path}, logged in api_logs", timed[1.0], timed[0.0])


def print_costs(costs: list[CaptureCost]) -> None:
    print(f"\nEvent capture and request logging, {REQUESTS} requests each, in process (mean ms per request):")
    print(f"  {'':44} {'on':>8} {'off':>8} {'added':>8}")
    for cost in costs:
        print(f"  {cost.label:44} {cost.on_ms:8.2f} {cost.off_ms:8.2f} {cost.added_ms:8.2f}")
