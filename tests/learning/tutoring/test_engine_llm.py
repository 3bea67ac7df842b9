"""The optional language model, against a fake OpenAI-compatible server on 127.0.0.1: a good
reply rewords with the same citations; a hang, a trickle, an error status, garbage, empty or
absurd content fall back to the retrieval answer in time, with a reason and never the key."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal.learning.assessment.models import QuestionKind
from portal.learning.tutoring import llm
from portal.learning.tutoring.answers import compose_reply
from portal.learning.tutoring.models import ReplyKind, ReplySource
from tests.learning.factories import catalog as factories_catalog
from tests.learning.factories.quiz import add_question
from tests.learning.tutoring.factories.engine import course_with_lessons

KEY = "sk-test-secret-0123456789"
TIMEOUT = 1
GARDEN = {
    "Watering": "# Watering plants\n\nWater tomatoes deeply twice a week. Morning watering keeps leaves dry.",
    "Pests": "# Slugs\n\nSlugs eat young seedlings at night. Beer traps and copper tape keep them off.",
}


class FakeModel:
    """What the fake server does next, and what it was sent."""

    def __init__(self):
        self.mode = "good"
        self.content = "Water them deeply twice a week, in the morning [1]."
        self.requests: list[dict] = []
        #: Called (in the server's thread) as each request arrives, before the answer.
        self.on_request = None


def _handler(state: FakeModel):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            state.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
            if state.on_request is not None:
                state.on_request()
            mode = state.mode
            if mode == "hang":
                time.sleep(TIMEOUT + 3)
                return
            if mode == "status":
                self._send(500, b'{"error": "overloaded"}')
            elif mode == "garbage":
                self._send(200, b"<html>not json{")
            elif mode == "wrong_shape":
                self._send(200, b'{"answer": "hello"}')
            elif mode == "trickle":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(40):
                    try:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.15)
            else:
                content = {"good": state.content, "empty": "   ", "long": "word " * 2000}[mode]
                payload = {"id": "x", "object": "chat.completion",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                self._send(200, json.dumps(payload).encode())

        def _send(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def fake_model():
    state = FakeModel()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def model(app, fake_model, monkeypatch):
    fake_model.mode = "good"
    fake_model.requests.clear()
    fake_model.on_request = None
    monkeypatch.setitem(app.config, "TUTOR_MODEL_URL", fake_model.url)
    monkeypatch.setitem(app.config, "TUTOR_MODEL_NAME", "tiny-tutor")
    monkeypatch.setitem(app.config, "TUTOR_MODEL_KEY", KEY)
    monkeypatch.setitem(app.config, "TUTOR_MODEL_TIMEOUT_SECONDS", TIMEOUT)
    return fake_model


@pytest.fixture
def garden(app):
    course, module, _lessons = course_with_lessons(GARDEN, title="Gardening basics")
    return course, module


QUESTION = "how often should I be watering my tomato plants?"


def retrieval_only(app, course, question=QUESTION):
    """The reply with no model configured, to compare with."""
    url = app.config["TUTOR_MODEL_URL"]
    app.config["TUTOR_MODEL_URL"] = ""
    try:
        return compose_reply(course, question)
    finally:
        app.config["TUTOR_MODEL_URL"] = url


def test_a_good_reply_rewords_with_the_same_citations(app, model, garden):
    course, _module = garden
    reply = compose_reply(course, QUESTION)
    assert reply.kind == ReplyKind.ANSWER and reply.source == ReplySource.MODEL
    assert reply.body == model.content and reply.fallback_reason is None
    plain = retrieval_only(app, course)
    assert plain.source == ReplySource.RETRIEVAL and plain.fallback_reason is None
    assert reply.citations == plain.citations and reply.topic_module_id == plain.topic_module_id


def test_the_request_carries_the_passages_the_question_and_the_bearer_key(model, garden):
    course, _module = garden
    compose_reply(course, QUESTION)
    [sent] = model.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    body = sent["json"]
    assert body["model"] == "tiny-tutor"
    system, user = body["messages"]
    assert system["role"] == "system" and "only" in system["content"] and "passages" in system["content"]
    assert "Water tomatoes deeply twice a week." in user["content"] and "[1] Watering — Watering plants" in user["content"]
    assert QUESTION in user["content"]


@pytest.mark.parametrize(("mode", "reason"), [
    ("hang", "did not answer in time"),
    ("trickle", "did not answer in time"),
    ("status", "HTTP 500"),
    ("garbage", "not valid chat JSON"),
    ("wrong_shape", "not valid chat JSON"),
    ("empty", "empty"),
    ("long", "too long"),
])
def test_failures_fall_back_to_the_retrieval_answer_in_time(app, model, garden, caplog, mode, reason):
    course, _module = garden
    model.mode = mode
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    reply = compose_reply(course, QUESTION)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 1.5
    assert reply.source == ReplySource.RETRIEVAL and reply.kind == ReplyKind.ANSWER
    assert reason in reply.fallback_reason
    plain = retrieval_only(app, course)
    assert reply.body == plain.body and reply.citations == plain.citations
    assert KEY not in reply.fallback_reason and KEY not in caplog.text
    assert "Tutor model not used" in caplog.text


def test_an_unreachable_model_falls_back(app, model, garden, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(app.config, "TUTOR_MODEL_URL", f"http://127.0.0.1:{port}/v1")
    reply = compose_reply(garden[0], QUESTION)
    assert reply.source == ReplySource.RETRIEVAL and reply.fallback_reason == "the model could not be reached"


def test_a_url_that_is_not_http_is_not_called(app, model, garden, monkeypatch):
    monkeypatch.setitem(app.config, "TUTOR_MODEL_URL", "file:///etc/passwd")
    reply = compose_reply(garden[0], QUESTION)
    assert reply.source == ReplySource.RETRIEVAL and "not http" in reply.fallback_reason
    assert model.requests == []


def test_nothing_found_never_asks_the_model(model, garden):
    reply = compose_reply(garden[0], "what is the capital of France?")
    assert reply.kind == ReplyKind.NOT_FOUND and reply.source == ReplySource.RETRIEVAL
    assert reply.fallback_reason is None and model.requests == []


def test_with_no_model_configured_there_is_no_fallback_reason(app, garden, monkeypatch):
    monkeypatch.setitem(app.config, "TUTOR_MODEL_URL", "")
    reply = compose_reply(garden[0], QUESTION)
    assert reply.source == ReplySource.RETRIEVAL and reply.fallback_reason is None


@pytest.fixture
def quiz_question(garden):
    course, module = garden
    quiz = factories_catalog.make_quiz(course, module=module, points=())
    add_question(quiz, QuestionKind.SINGLE, prompt="Which animal eats young seedlings at night?",
                 options=[("Slugs", True), ("Bees", False)])
    return course


def test_a_hint_is_reworded_with_a_prompt_not_to_give_the_answer(model, quiz_question):
    model.content = "Think about which garden creature is active after dark, then reread the pests lesson [1]."
    reply = compose_reply(quiz_question, "which animal is eating my young seedlings at night?")
    assert reply.kind == ReplyKind.HINT and reply.source == ReplySource.MODEL
    assert "do NOT give the answer" in model.requests[-1]["json"]["messages"][0]["content"]


def test_a_hint_from_the_model_that_gives_the_answer_away_is_refused(model, quiz_question):
    model.content = "The answer is slugs."
    reply = compose_reply(quiz_question, "which animal is eating my young seedlings at night?")
    assert reply.kind == ReplyKind.HINT and reply.source == ReplySource.RETRIEVAL
    assert reply.fallback_reason == "the model's hint gave the answer away"
    assert "slugs" not in reply.body.lower()


def test_reword_itself_never_raises_and_reports_the_key_nowhere(model):
    settings = llm.ModelConfig(url=model.url, name="m", key=KEY, timeout=TIMEOUT)
    model.mode = "status"
    result = llm.reword("q", [llm.Passage("L", "H", "text")], settings=settings)
    assert result.text is None and KEY not in (result.fallback_reason or "")
    model.mode = "good"
    result = llm.reword("q", [llm.Passage("L", "H", "text")], settings=settings)
    assert result.text == model.content and result.fallback_reason is None


def test_the_chat_asks_the_model_holding_no_lock_and_keeps_its_reply(app, client, login_as, model, garden):
    """A slow model must not keep the student's ask lock (nor a transaction that took it): the
    reply is drafted, the read-only transaction ended, the model asked, then the exchange
    written with the model's words and the lessons' citations."""
    import psycopg
    from sqlalchemy import select

    from portal.db import db
    from portal.db.urls import libpq_url
    from portal.learning.education import services as education
    from portal.learning.tutoring.models import Message, MessageRole

    course, _module = garden
    student = login_as("student")
    education.enrol(student, course.id)
    db.session.commit()  # the view ends its read-only transaction: keep what the test made
    locks_while_asked: list[int] = []

    def count_advisory_locks():
        with psycopg.connect(libpq_url(app.config["MIGRATION_DATABASE_URL"])) as conn:
            locks_while_asked.append(conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
                                     .fetchone()[0])

    model.on_request = count_advisory_locks
    model.content = "Water them deeply twice a week, in the morning [1]."
    response = client.post(f"/learning/courses/{course.slug}/tutor/ask", data={"question": QUESTION},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert locks_while_asked == [0]
    assert "Water them deeply twice a week, in the morning" in response.get_data(as_text=True)
    reply = db.session.scalars(select(Message).where(Message.user_id == student.id,
                                                     Message.role == MessageRole.TUTOR)).one()
    assert reply.source == ReplySource.MODEL and reply.fallback_reason is None
    assert [c["lesson_title"] for c in reply.citations][:1] == ["Watering"]
