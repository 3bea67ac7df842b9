"""An optional language model that rewords the tutor's reply: any OpenAI-compatible chat
completions endpoint (``POST {TUTOR_MODEL_URL}/chat/completions``).

Configuration: ``TUTOR_MODEL_URL`` (the base URL, e.g. ``http://127.0.0.1:8080/v1``; empty: no
model), ``TUTOR_MODEL_NAME``, ``TUTOR_MODEL_KEY`` (sent as a bearer token when set) and
``TUTOR_MODEL_TIMEOUT_SECONDS``.

The model gets a system prompt that tells it to answer only from the numbered passages, then
the passages and the question. It never decides what is cited: the citations are retrieval's.

``reword`` never raises for anything the endpoint does. A timeout (including an answer trickled
slowly past the deadline), a refused connection, a non-200 status, a body that is not the
expected JSON, empty content or content absurdly long comes back as ``ModelResult(text=None,
fallback_reason=...)``, and the caller keeps its retrieval answer. The key never appears in a
reason or a log line.

The standard library's ``urllib`` is the client, as for the exchange-rate source
(``portal/money/exchange/sources.py``): one POST needs no extra dependency.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from flask import current_app, has_app_context

__all__ = ["MAX_REPLY_CHARS", "ModelConfig", "ModelResult", "Passage", "build_messages", "config", "reword"]

log = logging.getLogger(__name__)

#: A reply longer than this is not shown (a model gone astray); the retrieval answer is.
MAX_REPLY_CHARS = 4000
#: The most bytes read from the endpoint.
MAX_RESPONSE_BYTES = 256 * 1024
_CHUNK = 16 * 1024

SYSTEM_PROMPT = (
    "You are Elara, the tutor of an online course. Answer the student's question using only the "
    "numbered passages from the course's lessons given below. Do not add facts that are not in "
    "the passages; if they do not answer the question, say so. Write plainly for a student, in the "
    "language of the passages, in at most two short paragraphs, without markdown. You may refer "
    "to a passage by its number in square brackets, like [1]."
)
HINT_PROMPT = (
    " The question is one of the course's quiz questions: do NOT give the answer, the correct "
    "option or the result. Give a hint instead: say which idea to revisit and where, and ask a "
    "guiding question."
)


@dataclass(frozen=True)
class ModelConfig:
    url: str
    name: str
    key: str
    timeout: float

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class Passage:
    """What the model sees of one passage."""

    lesson_title: str
    heading: str
    text: str


@dataclass(frozen=True)
class ModelResult:
    text: str | None
    fallback_reason: str | None = None


def config() -> ModelConfig:
    """The model settings of the current app (disabled outside an app context)."""
    if not has_app_context():
        return ModelConfig("", "", "", 8.0)
    settings = current_app.config
    return ModelConfig(url=str(settings.get("TUTOR_MODEL_URL") or "").strip(),
                       name=str(settings.get("TUTOR_MODEL_NAME") or ""),
                       key=str(settings.get("TUTOR_MODEL_KEY") or ""),
                       timeout=float(settings.get("TUTOR_MODEL_TIMEOUT_SECONDS") or 8))


def build_messages(question: str, passages: Sequence[Passage], *, hint: bool = False) -> list[dict]:
    numbered = "\n\n".join(
        f"[{n}] {p.lesson_title}" + (f" — {p.heading}" if p.heading else "") + f"\n{p.text}"
        for n, p in enumerate(passages, start=1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT + (HINT_PROMPT if hint else "")},
        {"role": "user", "content": f"Passages:\n\n{numbered}\n\nQuestion: {question}"},
    ]


def _endpoint(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def _read(response, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise _Fallback("the model's answer was too large")
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise _Fallback("the model did not answer in time")
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _Fallback("the model's answer was too large")


class _Fallback(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _content(body: bytes) -> str:
    try:
        data = json.loads(body)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Fallback("the model's answer was not valid chat JSON") from None
    if not isinstance(content, str) or not content.strip():
        raise _Fallback("the model's answer was empty")
    content = content.strip()
    if len(content) > MAX_REPLY_CHARS:
        raise _Fallback("the model's answer was too long")
    return content


def reword(question: str, passages: Sequence[Passage], *, hint: bool = False,
           settings: ModelConfig | None = None) -> ModelResult:
    """Ask the configured model to answer ``question`` from ``passages``. Never raises for what
    the endpoint does; see the module docstring."""
    settings = settings or config()
    if not settings.enabled:
        return ModelResult(None, None)
    url = _endpoint(settings.url)
    if not url.lower().startswith(("http://", "https://")):
        return ModelResult(None, "the model URL is not http(s)")
    payload = json.dumps({
        "model": settings.name,
        "messages": build_messages(question, passages, hint=hint),
        "temperature": 0.2,
        "stream": False,
    }).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "User-Agent": "AzoraPortal-tutor/1"}
    if settings.key:
        headers["Authorization"] = f"Bearer {settings.key}"
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")  # noqa: S310 - checked
    timeout = max(settings.timeout, 0.1)
    deadline = time.monotonic() + timeout
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
                body = _read(response, deadline)
        except urllib.error.HTTPError as exc:
            raise _Fallback(f"the model answered HTTP {exc.code}") from None
        except TimeoutError:
            raise _Fallback("the model did not answer in time") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Fallback("the model did not answer in time") from None
            raise _Fallback("the model could not be reached") from None
        except (OSError, ValueError, http.client.HTTPException):
            raise _Fallback("the model could not be reached") from None
        text = _content(body)
    except _Fallback as fallback:
        log.warning("Tutor model not used: %s (%s)", fallback.reason, _safe_url(url))
        return ModelResult(None, fallback.reason)
    return ModelResult(text, None)


def _safe_url(url: str) -> str:
    """The endpoint without any user:password part, for logs."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}"
