"""The checks every browser journey gets without asking: accessibility (axe-core), console
errors, and a phone-width pass for horizontal overflow.

How it works, so that no journey can forget it and no check disturbs a journey:

- Each journey page reports every state it settles in: a script added to every document sends
  the whole document to Python on ``load`` and after every htmx swap has settled
  (``htmx:afterSettle``), in the same JavaScript task, so the copy is exactly what the journey
  saw. Recording it is all that happens during the journey.
- Console errors and uncaught page errors of the journey's pages are recorded as they happen.
- At the end of the test, every distinct recorded state is loaded into a separate checker page
  (same stylesheets and images, no scripts, no other requests, the portal's own CSP), where axe
  runs at desktop width and the page is then narrowed to a phone's 390 px to measure overflow.
  Serious and critical axe violations, horizontal overflow and console errors fail the test.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from axe_playwright_python.sync_playwright import Axe

#: A phone's CSS width (an iPhone 12 to 15 is 390 px wide).
PHONE_WIDTH = 390
DESKTOP = {"width": 1280, "height": 800}
#: axe impacts that fail a journey.
FAILING_IMPACTS = {"serious", "critical"}

#: Sent by every document of a journey page: the settled document, doctype included (without
#: it the checker would render in quirks mode).
REPORTER = """
(() => {
  const send = (why) => {
    if (typeof window.__e2eSettled !== "function") return;
    window.__e2eSettled(location.href, why, "<!doctype html>" + document.documentElement.outerHTML);
  };
  window.addEventListener("load", () => send("load"));
  document.addEventListener("htmx:afterSettle", () => send("htmx swap"));
})();
"""

#: Measures horizontal overflow and names the element that sticks out furthest.
OVERFLOW = """
() => {
  const root = document.scrollingElement;
  const overflow = root.scrollWidth - root.clientWidth;
  if (overflow <= 0) return null;
  const limit = root.clientWidth;
  let widest = null, right = limit;
  // Content inside its own scrolling box (a table in .table-wrap) does not widen the page.
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const x = getComputedStyle(p).overflowX;
      if (x !== "visible") return true;
    }
    return false;
  };
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= right || clipped(el)) continue;
    right = box.right; widest = el;
  }
  const describe = (el) => {
    if (!el) return "(none found)";
    let name = el.tagName.toLowerCase();
    if (el.id) name += "#" + el.id;
    if (el.classList.length) name += "." + [...el.classList].join(".");
    const path = [];
    for (let p = el.parentElement; p && p !== document.body && path.length < 3; p = p.parentElement) {
      path.unshift(p.tagName.toLowerCase() + (p.id ? "#" + p.id : "") + (p.classList.length ? "." + p.classList[0] : ""));
    }
    return (path.length ? path.join(" > ") + " > " : "") + name + " (right edge " + Math.round(right) + " px)";
  };
  return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, widest: describe(widest)};
}
"""

#: 4xx answers are the portal refusing bad input on purpose (some journeys send it); the
#: browser logs each as a failed resource load and htmx as a response error, which is not an
#: error of the page. 5xx answers stay errors.
_CLIENT_ERROR_LOAD = re.compile(r"^(Failed to load resource: the server responded with a status of 4\d\d"
                                r"|Response Status Error Code 4\d\d from )")


@dataclass
class Snapshot:
    url: str
    why: str
    html: str


@dataclass
class Recorder:
    """What one journey's pages did: the states they settled in and the errors they logged."""

    snapshots: list[Snapshot] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def watch(self, context, label: str) -> None:
        """Record everything ``context``'s pages do (call before the first page opens)."""
        context.expose_binding("__e2eSettled", lambda _source, url, why, html:
                               self.snapshots.append(Snapshot(url, why, html)))
        context.add_init_script(REPORTER)
        context.on("page", lambda page: self._listen(page, label))

    def _listen(self, page, label: str) -> None:
        def console(message):
            if message.type == "error" and not _CLIENT_ERROR_LOAD.match(message.text):
                self.errors.append(f"{label}: console error on {_path(page.url)}: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda error: self.errors.append(f"{label}: page error on {_path(page.url)}: {error}"))

    def distinct(self) -> list[Snapshot]:
        """The recorded states, each distinct document once."""
        seen: set[str] = set()
        unique = []
        for snap in self.snapshots:
            digest = hashlib.sha256(snap.html.encode()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                unique.append(snap)
        return unique


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Checker:
    """A page that shows recorded documents as they were, for axe and the overflow pass."""

    def __init__(self, browser, base_url: str, csp: str):
        self._axe = Axe()
        self._html = ""
        self._csp = csp
        self.context = browser.new_context(base_url=base_url, viewport=DESKTOP, java_script_enabled=True)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.checked = 0

    def _route(self, route):
        request = route.request
        if request.resource_type == "document":
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=self._html,
                          headers={"Content-Security-Policy": self._csp})
        elif request.resource_type in ("stylesheet", "image", "font"):
            route.continue_()
        else:  # scripts, htmx polling, anything that could change the portal's state
            route.abort()

    def problems(self, snap: Snapshot) -> list[str]:
        """Serious or critical axe violations and phone-width overflow of one recorded state."""
        self._html = snap.html
        page = self.page
        page.set_viewport_size(DESKTOP)
        page.goto(snap.url, wait_until="load")
        self.checked += 1
        where = _path(snap.url)
        found = []
        results = self._axe.run(page)
        for violation in results.response["violations"]:
            if violation.get("impact") in FAILING_IMPACTS:
                targets = "; ".join(" ".join(node["target"]) if isinstance(node["target"], list) else str(node["target"])
                                    for node in violation["nodes"][:5])
                found.append(f"axe {violation['impact']} {violation['id']} on {where}: {violation['help']} "
                             f"[{targets}]")
        shots = os.environ.get("E2E_CHECK_SCREENSHOTS")  # a folder: keep each checked state's look
        if shots:
            name = f"{self.checked:03d}-" + re.sub(r"[^A-Za-z0-9]+", "_", _path(snap.url))[:80]
            page.screenshot(path=f"{shots}/{name}-desktop.png", full_page=True)
            with open(f"{shots}/{name}.html", "w") as copy:
                copy.write(snap.html)
        page.set_viewport_size({"width": PHONE_WIDTH, "height": 844})
        if shots:
            page.screenshot(path=f"{shots}/{name}-phone.png", full_page=True)
        overflow = page.evaluate(OVERFLOW)
        if overflow:
            found.append(f"overflow at {PHONE_WIDTH} px on {where}: page is {overflow['scrollWidth']} px wide; "
                         f"widest: {overflow['widest']}")
        return found

    def close(self):
        self.context.close()
