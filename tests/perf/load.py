"""Load generation: ``wrk`` (C, event-driven: a few percent of one core at these rates), or,
when wrk is not installed, Python threads with ``http.client``, whose own CPU use on the same
cores depresses the figures of the server they measure (the bench says so when it falls back).

Also the small HTTP client the bench logs in and checks pages with.
"""

from __future__ import annotations

import http.client
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from tests.perf import settings
from tests.perf.settings import HOST

WRK = shutil.which("wrk")
#: wrk drops a request slower than its timeout (default 2 s) from the latency figures and counts
#: it as a socket error: a long timeout keeps slow pages in the percentiles.
WRK_TIMEOUT = "30s"


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    #: Answers outside 2xx/3xx, and socket errors (connect, read, write, timeout).
    bad_answers: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    #: Lines the wrk script printed (its ``done`` callback), or the statuses the Python client saw.
    script_lines: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.bad_answers + sum(self.socket_errors.values())


# ---------------------------------------------------------------- wrk

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")


def to_ms(text: str) -> float:
    """A duration as wrk prints it ("812.00us", "3.21ms", "1.02s", "1.50m") in milliseconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    """The figures of ``wrk --latency`` output: requests, duration, Requests/sec, the 50% and 99%
    latencies, "Non-2xx or 3xx responses" and socket errors. Other lines (a script's) are kept
    in ``script_lines``."""
    requests = seconds = rps = None
    percentiles: dict[str, float] = {}
    result = LoadResult(0, 0.0, 0.0, float("nan"), float("nan"))
    in_distribution = False
    for line in output.splitlines():
        text = line.strip()
        if text == "Latency Distribution":
            in_distribution = True
            continue
        if in_distribution:
            match = re.match(r"^(\d+)%\s+(\S+)$", text)
            if match:
                percentiles[match.group(1)] = to_ms(match.group(2))
                continue
            in_distribution = False
        if match := re.match(r"^(\d+) requests in ([\d.]+\w+),", text):
            requests, seconds = int(match.group(1)), to_ms(match.group(2)) / 1000
        elif match := re.match(r"^Requests/sec:\s+([\d.]+)$", text):
            rps = float(match.group(1))
        elif match := re.match(r"^Non-2xx or 3xx responses:\s+(\d+)$", text):
            result.bad_answers = int(match.group(1))
        elif match := re.match(r"^Socket errors: (.*)$", text):
            for name, count in re.findall(r"(\w+) (\d+)", match.group(1)):
                if int(count):
                    result.socket_errors[name] = int(count)
        elif text and not re.match(r"^(Running |\d+ threads and |Thread Stats|Latency |Req/Sec |Transfer/sec)", text):
            result.script_lines.append(text)
    if requests is None or rps is None or "50" not in percentiles or "99" not in percentiles:
        raise ValueError(f"unexpected wrk output:\n{output}")
    result.requests, result.seconds, result.rps = requests, seconds, rps
    result.p50_ms, result.p99_ms = percentiles["50"], percentiles["99"]
    return result


def run_wrk(url: str, seconds: int, connections: int, headers: dict[str, str] | None = None,
            script: Path | None = None) -> LoadResult:
    """``wrk -t2 -c<connections> -d<seconds>s --latency`` against ``url``."""
    threads = max(1, min(settings.WRK_THREADS, connections))
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", WRK_TIMEOUT]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    run = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 120)
    if run.returncode != 0:
        raise SystemExit(f"wrk failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
    return parse_wrk(run.stdout)


# ---------------------------------------------------------------- Python client


class Client:
    """One keep-alive HTTP connection with a cookie jar; reconnects when the server closes."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None):
        self.port = port
        self.cookies = dict(cookies or {})
        self.connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, bytes]:
        headers = {"Cookie": cookie_header(self.cookies)} if self.cookies else {}
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: once more on a new one.
                self.close()
                if attempt == 2:
                    raise
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value
        if response.will_close:
            self.close()
        return response.status, dict(response.headers.items()), payload


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


CSRF_FIELD = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"'
                        rb'|"X-CSRFToken": "([^"]+)"')


def csrf_token(page: bytes) -> str | None:
    match = CSRF_FIELD.search(page)
    return next(g for g in match.groups() if g).decode() if match else None


def log_in(port: int, email: str, password: str) -> dict[str, str]:
    """Log in through the real form (CSRF token from the page); returns the session cookies."""
    client = Client(port)
    status, _, page = client.request("GET", "/auth/login")
    token = csrf_token(page)
    if status != 200 or token is None:
        raise SystemExit(f"GET /auth/login gave {status} without a CSRF token")
    status, headers, _ = client.request("POST", "/auth/login",
                                        {"csrf_token": token, "email": email, "password": password, "next": ""})
    client.close()
    if status != 302 or not headers.get("Location", "").endswith("/dashboard"):
        raise SystemExit(f"login as {email} failed: {status} {headers.get('Location')}")
    return client.cookies


#: (method, path, form body or None, cookies) of one request, made from a random generator.
Request = tuple[str, str, dict | None, dict[str, str]]


def run_python(port: int, seconds: int, connections: int, next_request: Callable[[random.Random], Request]
               ) -> LoadResult:
    """The fallback: ``connections`` threads, each a keep-alive connection sending the requests
    ``next_request`` makes, for ``seconds``."""
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    gate = threading.Barrier(connections + 1)

    def worker(n: int) -> None:
        rng = random.Random(n)
        clients: dict[str, Client] = {}
        mine: list[float] = []
        seen: dict[int, int] = {}
        gate.wait()
        try:
            while not stop.is_set():
                method, path, body, cookies = next_request(rng)
                key = cookie_header(cookies)
                client = clients.get(key) or clients.setdefault(key, Client(port, cookies))
                began = time.perf_counter()
                try:
                    status = client.request(method, path, body)[0]
                except OSError:
                    status = 0
                    client.close()
                mine.append((time.perf_counter() - began) * 1000)
                seen[status] = seen.get(status, 0) + 1
        finally:
            for client in clients.values():
                client.close()
            with lock:
                latencies.extend(mine)
                for status, count in seen.items():
                    statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=worker, args=(n,), name=f"bench-client-{n}") for n in range(connections)]
    for thread in threads:
        thread.start()
    gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")

    return LoadResult(len(ordered), elapsed, len(ordered) / elapsed, percentile(50), percentile(99),
                      bad_answers=sum(n for s, n in statuses.items() if not 200 <= s < 400), statuses=statuses)


def load_page(port: int, path: str, cookies: dict[str, str], seconds: int) -> LoadResult:
    """GETs of ``path`` from ``settings.CONNECTIONS`` connections for ``seconds``, with wrk
    (or the Python fallback)."""
    if WRK:
        headers = {"Cookie": cookie_header(cookies)} if cookies else None
        return run_wrk(f"http://{HOST}:{port}{path}", seconds, settings.CONNECTIONS, headers)
    return run_python(port, seconds, settings.CONNECTIONS, lambda rng: ("GET", path, None, cookies))
