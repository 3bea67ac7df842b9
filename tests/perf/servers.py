"""One way to serve a WSGI app for the bench: gunicorn on a free port of 127.0.0.1 with the
shared settings (``settings.WORKERS`` x ``THREADS``, the ``gthread`` worker), whatever the app."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.perf import settings
from tests.perf.settings import HOST


def gunicorn_settings() -> str:
    return f"gunicorn {settings.WORKERS} workers x {settings.THREADS} threads ({settings.WORKER_CLASS})"


@dataclass
class Server:
    name: str
    port: int
    log_path: Path
    problems: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _error_lines(log_path: Path) -> list[str]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [line for line in text.splitlines()
            if "Traceback" in line or "[ERROR]" in line or "[CRITICAL]" in line]


@contextmanager
def serve(name: str, app: str, ready_path: str, env: dict[str, str] | None = None,
          timeout: float = 90) -> Iterator[Server]:
    """Serve ``app`` ("module:variable") until the block ends; waits until ``ready_path`` answers
    200. Afterwards ``server.problems`` holds the error lines of its log (tracebacks, [ERROR],
    [CRITICAL] such as a worker timeout)."""
    port = _free_port()
    command = [str(Path(sys.executable).with_name("gunicorn")), "--workers", str(settings.WORKERS),
               "--threads", str(settings.THREADS), "--worker-class", settings.WORKER_CLASS,
               "--bind", f"{HOST}:{port}", "--log-level", "warning", app]
    with tempfile.TemporaryDirectory(prefix=f"azora-bench-{name}-") as tmp:
        server = Server(name, port, Path(tmp) / "gunicorn.log")
        with open(server.log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=settings.PROJECT_ROOT, env={**os.environ, **(env or {})},
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not _answers(port, ready_path):
                if process.poll() is not None or time.monotonic() > deadline:
                    why = f"exited with {process.returncode}" if process.poll() is not None else \
                        f"did not answer GET {ready_path} within {timeout:.0f} s"
                    raise SystemExit(f"{name}: gunicorn {why}:\n{server.log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # the master stops its workers gracefully
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            server.problems = _error_lines(server.log_path)
