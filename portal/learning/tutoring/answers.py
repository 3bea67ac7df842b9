"""The tutor's reply to one question: ``compose_reply(course, question)``.

HTTP-free and commit-free; the caller (the chat service) has checked that the student may ask
about ``course`` and that the question is not empty or too long, and stores what comes back.

What the reply is, in order:

1. The question looks like one of the course's published quiz questions (``hints``), or is
   phrased as a test item (options listed, "which of the following", "true or false", what a
   piece of code prints; ``hints.exam_item``) and the lessons teach its idea: a HINT.
   It names the quiz, says which lesson sections explain the idea and which of the question's
   key ideas to look for there, and never contains the correct option, an accepted answer or
   the numeric result (any heading or word that would give one away is left out, of the body
   and of the citation: such a section is cited as its lesson, without heading or anchor).
2. Retrieval finds relevant passages (``retrieval.search``; the best one above the relevance
   floor, the others cited from up to three lessons, ``_cited``): an ANSWER made of the passages'
   most relevant sentences (extractive: the lessons' own words, never invented), each group
   framed "From <lesson> — <section>:", citing them.
3. Nothing relevant: NOT_FOUND. The tutor says it found nothing in the lessons rather than
   guess, and suggests where to look: the lessons whose passages share some of the question's
   words (below the relevance floor), else lessons and modules whose titles come close to one
   of its words, else the course's modules.

Statements: the quiz questions of the course (and the matched one's options), one search, and
for NOT_FOUND the course's outline. The model call, when there is one, happens inside the
caller's transaction and is bounded by ``TUTOR_MODEL_TIMEOUT_SECONDS``.

Then, when a language model is configured (``llm``) and the reply is an ANSWER or a HINT, the
model is asked to reword it from the same passages only. Its text replaces the body
(``source=MODEL``) with the same citations; when it fails, the retrieval reply stands and
``fallback_reason`` says why. A model's hint that contains the answer is refused the same way.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from rapidfuzz import fuzz
from sqlalchemy import select

from portal.db import db
from portal.learning.education.models import Course, Lesson, Module
from portal.learning.tutoring import hints, llm, retrieval
from portal.learning.tutoring.hints import QuizMatch
from portal.learning.tutoring.models import ReplyKind, ReplySource
from portal.learning.tutoring.passages import CODE_INDENT
from portal.learning.tutoring.retrieval import Hit

__all__ = ["Reply", "compose_reply"]

#: Passages an answer quotes at most, and how close to the best one's score the others must be.
MAX_CITED = 3
RELATIVE_CUTOFF = 0.5
#: How close to the best one's score the best passage of another lesson must be to be cited.
LESSON_CUTOFF = 0.3
#: Passages a search returns for the citations to choose from (several lessons' best).
CANDIDATES = 10
#: Sentences quoted per passage at most, and characters per passage.
SENTENCES_PER_PASSAGE = 3
CHARS_PER_PASSAGE = 480
#: Similarity (0-100) of a question's word to a word of a lesson's or module's title for it to
#: be suggested when nothing was found ("pest" and "Pests").
SUGGEST_MIN_SCORE = 80

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[A-Z0-9À-Ý\"“(])")
_PREFIX = 5
#: A sentence shorter than this is quoted with the one before it.
MIN_SENTENCE_CHARS = 30


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    #: Plain text (the view escapes it); paragraphs separated by blank lines.
    body: str
    #: ``[{"passage_id", "lesson_id", "lesson_title", "module_title", "heading", "anchor",
    #: "rank"}]``, ids as strings, best first.
    citations: list[dict]
    #: The module of the best passage (HINT: of the matched quiz question when it has one).
    topic_module_id: uuid.UUID | None
    source: ReplySource
    #: Why the configured model was not used (None when it was, or when none is configured).
    fallback_reason: str | None = None


@dataclass
class Draft:
    """The reply found in the lessons, with what the model step needs: plain data, so the model
    can be asked with no database transaction open."""

    question: str
    reply: Reply
    hits: list[Hit]
    match: QuizMatch | None

    @property
    def for_the_model(self) -> bool:
        """Whether ``finish_reply`` will ask the configured model (nothing found: never)."""
        return self.reply.kind != ReplyKind.NOT_FOUND and llm.config().enabled


def draft_reply(course: Course, question: str, *,
                searchable_course_ids: Iterable[uuid.UUID] | None = None) -> Draft:
    """The reply from the lessons alone (the database part of answering)."""
    course_ids = list(searchable_course_ids) if searchable_course_ids is not None else [course.id]
    match = hints.match_quiz_question(course.id, question)
    exam = hints.exam_item(question) if match is None else None
    if match is not None:
        hits = _cited(_hint_search(course_ids, question, match))
        reply = _hint(question, match, hits)
    elif exam is not None:
        found = _exam_search(course_ids, question, exam)
        hits = _cited(found) if any(_exam_relevant(hit) for hit in found) else []
        reply = _exam_hint(question, exam, hits) if hits else _not_found(course, question, found)
    else:
        # One search with no floor: the relevant hits answer; when there are none, the best of
        # the rest say where the question's words come closest.
        found = retrieval.search(course_ids, question, min_score=0, min_coverage=0, limit=CANDIDATES)
        hits = _cited(found) if any(retrieval.relevant(hit) for hit in found) else []
        reply = _answer(question, hits) if hits else _not_found(course, question, found)
    return Draft(question, reply, hits, match)


def finish_reply(draft: Draft) -> Reply:
    """The draft reworded by the configured model, or the draft itself (no database)."""
    if draft.reply.kind == ReplyKind.NOT_FOUND:
        return draft.reply
    return _with_model(draft.reply, draft.question, draft.hits, draft.match)


def compose_reply(course: Course, question: str, *,
                  searchable_course_ids: Iterable[uuid.UUID] | None = None) -> Reply:
    """The tutor's reply to ``question`` about ``course``; see the module docstring."""
    return finish_reply(draft_reply(course, question, searchable_course_ids=searchable_course_ids))


# --- citations --------------------------------------------------------------------------------

def _cited(hits: list[Hit]) -> list[Hit]:
    """The passages to cite, best first, at most MAX_CITED: the best passage of each lesson that
    comes within LESSON_CUTOFF of the best one first (a question is answered by a lesson, and
    the student is better served by the three lessons closest to it than by three sections of
    one that may be the wrong one), then other passages within RELATIVE_CUTOFF."""
    if not hits:
        return []
    best = hits[0].rank
    chosen: list[Hit] = []
    lessons: set[uuid.UUID] = set()
    for hit in hits:
        if len(chosen) < MAX_CITED and hit.lesson_id not in lessons and hit.rank >= best * LESSON_CUTOFF:
            chosen.append(hit)
            lessons.add(hit.lesson_id)
    for hit in hits:
        if len(chosen) < MAX_CITED and hit not in chosen and hit.rank >= best * RELATIVE_CUTOFF:
            chosen.append(hit)
    return sorted(chosen, key=lambda hit: -hit.rank)


def _citation(hit: Hit) -> dict:
    return {"passage_id": str(hit.passage_id), "lesson_id": str(hit.lesson_id), "lesson_title": hit.lesson_title,
            "module_title": hit.module_title, "heading": hit.heading, "anchor": hit.anchor,
            "rank": round(hit.rank, 4)}


def _where(hit: Hit, heading: str | None = None) -> str:
    heading = hit.heading if heading is None else heading
    return f"“{hit.lesson_title}” — {heading}" if heading else f"“{hit.lesson_title}”"


def _from(hit: Hit) -> str:
    """'From “Lesson” — Section:', without the colon after a heading ending in a question mark."""
    where = _where(hit)
    return f"From {where}" + ("" if where[-1] in "?!:." else ":")


# --- answers ----------------------------------------------------------------------------------

def _stems(text: str) -> set[str]:
    words = hints.content_words(hints.normalise(text), stop_words=hints.FUNCTION_WORDS)
    return {word[:_PREFIX] for word in words if len(word) > 1}


def _sentences(body: str) -> list[str]:
    """The prose of a passage cut into sentences (code lines left out), each made to stand on
    its own: a fragment too short to ("Use for.") stays with the sentence before it, a table
    row's cells read "a – b", and a sentence that introduced a code block or a list ends with a
    full stop instead of its colon."""
    sentences: list[str] = []
    for line in body.split("\n"):
        if line.startswith(CODE_INDENT) or not line.strip():
            continue
        merged: list[str] = []
        for sentence in _SENTENCE_END.split(line.strip().replace(" | ", " – ")):
            if merged and len(sentence) < MIN_SENTENCE_CHARS:
                merged[-1] += " " + sentence
            else:
                merged.append(sentence)
        sentences.extend(merged)
    return [sentence[:-1] + "." if sentence.endswith(":") else sentence for sentence in sentences]


def _joined(sentences: list[str]) -> str:
    """Sentences as one paragraph: a list item or table row without a full stop of its own is
    followed by a semicolon, so two of them do not run into one."""
    text = ""
    for sentence in sentences:
        if text:
            text += (" " if text[-1] in ".!?…" else "; ")
        text += sentence
    return text


def _best_sentences(body: str, question_stems: set[str]) -> list[str]:
    """The passage's sentences that share most words with the question, in the passage's
    order, within SENTENCES_PER_PASSAGE and CHARS_PER_PASSAGE; the opening sentence when none
    shares any."""
    sentences = _sentences(body)
    if not sentences:
        return []
    scored = [(len(_stems(sentence) & question_stems), -i, i) for i, sentence in enumerate(sentences)]
    scored.sort(reverse=True)
    chosen: list[int] = []
    size = 0
    for overlap, _, i in scored:
        if overlap == 0 and chosen:
            break
        if len(chosen) >= SENTENCES_PER_PASSAGE or (chosen and size + len(sentences[i]) > CHARS_PER_PASSAGE):
            continue
        chosen.append(i)
        size += len(sentences[i])
    return [_shorten(sentences[i]) for i in sorted(chosen)]


def _shorten(sentence: str, limit: int = CHARS_PER_PASSAGE) -> str:
    if len(sentence) <= limit:
        return sentence
    return sentence[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


def _answer(question: str, hits: list[Hit]) -> Reply:
    question_stems = _stems(question)
    paragraphs = []
    for hit in hits:
        sentences = _best_sentences(hit.body, question_stems)
        if sentences:
            paragraphs.append(f"{_from(hit)}\n" + _joined(sentences))
    return Reply(kind=ReplyKind.ANSWER, body="\n\n".join(paragraphs), citations=[_citation(h) for h in hits],
                 topic_module_id=hits[0].module_id, source=ReplySource.RETRIEVAL)


# --- hints ------------------------------------------------------------------------------------

def _gives_away(text: str, secrets: Sequence[str]) -> bool:
    """Does ``text`` contain one of the secrets (as whole words, case and accents ignored)?"""
    plain = f" {hints.normalise(text)} "
    for secret in secrets:
        needle = hints.normalise(secret)
        if needle and f" {needle} " in plain:
            return True
        if secret.strip() and secret.strip().lower() in text.lower() and len(secret.strip()) >= 4:
            return True
    return False


#: How much the search steered by the quiz question's feedback counts against the question's own
#: words alone (1): the feedback names the idea, the question's words may be incidental.
STEERED_WEIGHT = 2.0


def fuse(*rankings: tuple[list[Hit], float]) -> list[Hit]:
    """Several searches' hits combined: each hit's score divided by the best score of its search
    (so each search counts on one scale), times the search's weight, summed over the searches
    that found it; best first, each hit's ``rank`` its combined score. Ranks alone (reciprocal rank fusion)
    throw away how far apart two passages were in each search, which decides close calls here."""
    scores: dict[uuid.UUID, float] = {}
    first: dict[uuid.UUID, Hit] = {}
    for ranking, weight in rankings:
        best = max((hit.rank for hit in ranking), default=0.0)
        for hit in ranking:
            scores[hit.passage_id] = scores.get(hit.passage_id, 0.0) + weight * (hit.rank / best if best > 0 else 0.0)
            first.setdefault(hit.passage_id, hit)
    order = sorted(first, key=lambda pid: -scores[pid])
    return [replace(first[pid], rank=scores[pid]) for pid in order]


def _hint_search(course_ids: list[uuid.UUID], question: str, match: QuizMatch) -> list[Hit]:
    """The passages to point to for a quiz question, with no relevance floor: the question is
    known to be about the course, so its best passages are the place to look.

    Two searches, combined (``fuse``, the second counting STEERED_WEIGHT times the first): one with the question's content words
    (without the quiz's own wording, "select all that apply"; the prompt's when the question
    has none that match), one with those words and the quiz question's feedback, which names the
    idea the question tests ("``//`` is floor division"). The sections cited first are then
    those that teach that idea, not any that shares a word with the prompt. The feedback only
    steers the search: the hint never quotes it."""
    plain: list[Hit] = []
    for text in (question, match.prompt):
        words = hints.search_words(text)
        plain = retrieval.search(course_ids, words, min_score=0, min_coverage=0, lesson_share=0) if words else []
        if plain:
            break
    steered_words = hints.search_words(f"{question} {match.explanation}") if match.explanation else ""
    steered = retrieval.search(course_ids, steered_words, min_score=0, min_coverage=0, lesson_share=0) if steered_words else []
    return fuse((plain, 1.0), (steered, STEERED_WEIGHT)) if steered else plain


#: An exam item is hinted at when its best passage reaches this share of the relevance floor
#: (``retrieval.MIN_SCORE``, ``MIN_COVERAGE``): its stem is short and its options are noise, so
#: it shares fewer words with the lesson than a question in full; below it, nothing is cited.
EXAM_FLOOR = 0.5


def _exam_relevant(hit: Hit) -> bool:
    return hit.passage_rank >= EXAM_FLOOR * retrieval.MIN_SCORE and hit.coverage >= EXAM_FLOOR * retrieval.MIN_COVERAGE


#: Pieces of code a question may quote whose symbols, not words, say what it is about: an
#: operator of two signs or more ("//", "**", "!=", "+="), an index ("[-1]", "[1:3]"), a method
#: called (".get(", ".append(").
_CODE_FRAGMENT = re.compile(r"\[-?\d*:?-?\d*\]|\.[a-z_]\w*\(|[^\w\s'\"(),.?!\[\]{}:;$%]{2,}")


def code_fragments(text: str) -> list[str]:
    """The code fragments of ``text`` (see _CODE_FRAGMENT), each once, in order."""
    return list(dict.fromkeys(match.group(0) for match in _CODE_FRAGMENT.finditer(text or "")))


def _exam_search(course_ids: list[uuid.UUID], question: str, exam: hints.ExamItem) -> list[Hit]:
    """The passages that teach what an exam item asks: its stem searched (without the quiz's
    own wording), combined (``fuse``) with the whole question (its options too, at half the
    weight: a distractor may name another lesson's idea). When the stem quotes code, the
    passages that show the same operator, index or method come first: the search drops
    symbols, and a question about ``7 // 2`` is about the section that shows ``//``."""
    stem_words = hints.search_words(exam.stem)
    stem = retrieval.search(course_ids, stem_words, min_score=0, min_coverage=0, lesson_share=0,
                            limit=CANDIDATES) if stem_words else []
    found = stem
    if exam.options:
        whole_words = hints.search_words(question)
        whole = retrieval.search(course_ids, whole_words, min_score=0, min_coverage=0, lesson_share=0,
                                 limit=CANDIDATES) if whole_words else []
        found = fuse((stem, 1.0), (whole, 0.5)) if stem else whole
    fragments = code_fragments(exam.stem)
    if not fragments:
        return found
    best = max((hit.rank for hit in found), default=0.0)
    known = {hit.passage_id for hit in found}
    # The passages that show the code, found or not by the words, rank above those that do not.
    extra = [replace(hit, rank=0.0, coverage=0.0) for hit, _shown in retrieval.showing(course_ids, fragments)
             if hit.passage_id not in known]
    shown = [replace(hit, rank=hit.rank + 2 * max(best, 1e-6) * sum(fragment in hit.body for fragment in fragments))
             for hit in [*found, *extra]]
    return sorted(shown, key=lambda hit: -hit.rank)


def _exam_hint(question: str, exam: hints.ExamItem, hits: list[Hit]) -> Reply:
    """A hint for a question phrased as a test item that is not one of the course's quiz
    questions: where the lessons teach the idea, never an answer (no lesson text is quoted, and
    a heading that repeats one of the options is left out)."""
    secrets = exam.options
    lines = ["This looks like a test question, so I won't answer it for you, but I can show you where "
             "the lessons explain the idea behind it."]
    for hit in hits:
        heading = hit.heading if hit.heading and not _gives_away(hit.heading, secrets) else ""
        where = f"“{hit.lesson_title}”, section “{heading}”" if heading else f"“{hit.lesson_title}”"
        lines.append(f"Revisit {where}: it explains the idea this question is about.")
    ideas = _key_ideas(question, QuizMatch(uuid.UUID(int=0), uuid.UUID(int=0), "", None, exam.stem, 0.0, 0.0,
                                           secrets), hits)
    if ideas:
        lines.append("While you read, look for what it says about " + ", ".join(f"“{i}”" for i in ideas) + ".")
    lines.append("Then work it out yourself first, and check your reasoning against the lesson.")
    return Reply(kind=ReplyKind.HINT, body="\n\n".join(lines), citations=[_hint_citation(h, secrets) for h in hits],
                 topic_module_id=hits[0].module_id, source=ReplySource.RETRIEVAL)


def _hint(question: str, match: QuizMatch, hits: list[Hit]) -> Reply:
    secrets = match.secrets
    lines = [f"This looks like a question from the quiz “{match.quiz_title}”, so I won't give the answer "
             "away, but I can show you where to find it."]
    for hit in hits:
        heading = hit.heading if hit.heading and not _gives_away(hit.heading, secrets) else ""
        where = f"“{hit.lesson_title}”, section “{heading}”" if heading else f"“{hit.lesson_title}”"
        if hit.lesson_title and _gives_away(hit.lesson_title, secrets):
            where = f"the lesson of the module “{hit.module_title}” on this topic"
        lines.append(f"Revisit {where}: it explains the idea this question is about.")
    ideas = _key_ideas(question, match, hits)
    if ideas:
        lines.append("While you read, look for what it says about " + ", ".join(f"“{i}”" for i in ideas) + ".")
    if not hits:
        lines.append("Go back over the lessons of the quiz's module before you try it.")
    lines.append("Then try to answer in your own words first, and check your reasoning against the lesson.")
    body = "\n\n".join(lines)
    if _gives_away(body, secrets):  # a quiz title or word that happens to be the answer
        body = ("This looks like one of the course's quiz questions, so I won't give the answer away. "
                "Go back over the lessons of its module, then try it in your own words.")
    topic = match.module_id or (hits[0].module_id if hits else None)
    return Reply(kind=ReplyKind.HINT, body=body, citations=[_hint_citation(h, secrets) for h in hits],
                 topic_module_id=topic, source=ReplySource.RETRIEVAL)


def _hint_citation(hit: Hit, secrets: Sequence[str]) -> dict:
    """A hint's citation: a section whose heading would give the answer away is cited as its
    lesson (no heading, no anchor, which is made of the heading's words)."""
    citation = _citation(hit)
    if _gives_away(hit.heading, secrets):
        citation.update(heading="", anchor="")
    return citation


def _key_ideas(question: str, match: QuizMatch, hits: list[Hit]) -> list[str]:
    """Up to three of the question's content words that the cited passages also use (the ideas
    to look for), none of them part of an answer."""
    passage_stems = set().union(*(_stems(hit.body + " " + hit.heading) for hit in hits)) if hits else set()
    secret_words = {word for secret in match.secrets for word in hints.normalise(secret).split()}
    ideas: list[str] = []
    for word in hints.content_words(hints.normalise(question)):
        if len(word) < 4 or word in secret_words or word.isdigit() or word in ideas:
            continue
        if word[:_PREFIX] in passage_stems:
            ideas.append(word)
        if len(ideas) == 3:
            break
    return ideas


# --- nothing found ----------------------------------------------------------------------------

def _title_score(words: list[str], title: str) -> float:
    """How close the question's closest word is to a word of the title (0-100)."""
    title_words = [word for word in hints.content_words(hints.normalise(title)) if len(word) >= 4]
    return max((fuzz.ratio(a, b) for a in words for b in title_words), default=0.0)


def _not_found(course: Course, question: str, near: list[Hit]) -> Reply:
    """Nothing relevant. Where to look: the lessons of the passages that share some words with
    the question (below the relevance floor), else the lessons and modules whose titles come
    closest (fuzzy), else the course's modules."""
    rows = db.session.execute(
        select(Module.id, Module.title, Module.position, Lesson.title, Lesson.position)
        .join(Lesson, Lesson.module_id == Module.id, isouter=True)
        .where(Module.course_id == course.id)
        .order_by(Module.position, Lesson.position)
    ).all()
    words = [word for word in hints.content_words(hints.normalise(question)) if len(word) >= 4]
    candidates: list[tuple[float, str]] = []
    for _module_id, module_title, _mpos, lesson_title, _lpos in rows:
        if lesson_title:
            candidates.append((_title_score(words, lesson_title), f"the lesson “{lesson_title}” in “{module_title}”"))
        candidates.append((_title_score(words, module_title), f"the module “{module_title}”"))
    candidates.sort(key=lambda c: -c[0])
    seen: list[str] = []
    for hit in near:
        if hit.course_id == course.id:
            label = f"the lesson “{hit.lesson_title}” in “{hit.module_title}”"
            if label not in seen:
                seen.append(label)
        if len(seen) == 2:
            break
    for score, label in candidates if len(seen) < 2 else []:
        if score >= SUGGEST_MIN_SCORE and label not in seen:
            seen.append(label)
        if len(seen) == 2:
            break
    lines = [f"I couldn't find this in the lessons of “{course.title}”, so I won't guess an answer."]
    if seen:
        lines.append("The closest topics I can see are " + " and ".join(seen) + "; they may help.")
    else:
        modules = list(dict.fromkeys(title for _id, title, *_rest in rows))
        if modules:
            lines.append("The course covers: " + "; ".join(f"“{title}”" for title in modules[:8]) + ". "
                         "Its outline on the course page shows every lesson.")
    lines.append("You could try asking with other words, or ask your instructor.")
    return Reply(kind=ReplyKind.NOT_FOUND, body="\n\n".join(lines), citations=[], topic_module_id=None,
                 source=ReplySource.RETRIEVAL)


# --- the model --------------------------------------------------------------------------------

def _with_model(reply: Reply, question: str, hits: list[Hit], match: QuizMatch | None) -> Reply:
    settings = llm.config()
    if not settings.enabled:
        return reply
    if not hits:
        return _replace(reply, fallback_reason="no passages to give the model")
    passages = [llm.Passage(hit.lesson_title, hit.heading, hit.body) for hit in hits]
    result = llm.reword(question, passages, hint=reply.kind == ReplyKind.HINT, settings=settings)
    if result.text is None:
        return _replace(reply, fallback_reason=result.fallback_reason or "the model gave no answer")
    if match is not None and _gives_away(result.text, match.secrets):
        return _replace(reply, fallback_reason="the model's hint gave the answer away")
    return Reply(kind=reply.kind, body=result.text, citations=reply.citations,
                 topic_module_id=reply.topic_module_id, source=ReplySource.MODEL)


def _replace(reply: Reply, *, fallback_reason: str) -> Reply:
    return Reply(kind=reply.kind, body=reply.body, citations=reply.citations,
                 topic_module_id=reply.topic_module_id, source=ReplySource.RETRIEVAL,
                 fallback_reason=fallback_reason[:200])
