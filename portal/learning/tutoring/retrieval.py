"""Finding the lesson passages that answer a question: PostgreSQL full-text search.

``search(course_ids, question)`` is one SQL statement. For each course searched it turns the
question into a query in the course's language (stemming, stop words), matches the passages'
``search`` vectors through their GIN index and ranks what matched.

Why an OR query: ``websearch_to_tsquery`` and ``plainto_tsquery`` AND every word together, and
a question put in a student's own words ("why would my loop never stop?") rarely shares every
word with the lesson that answers it, so a strict AND finds nothing. The question's words are
joined with ``or`` instead (``websearch_to_tsquery`` drops stop words and stems each word), and
ranking sorts out which passage matches best.

The score of a passage is ``ts_rank_cd`` (cover density over the weighted vector: a word in the
heading counts more than one in the body; normalised to 0..1) times its *coverage*: the share
of the question's terms the passage contains, each term weighted by how rare it is among the
course's passages (inverse document frequency, computed in the same statement through the GIN
index). The ranking functions know nothing of rarity: a word found in every passage of a
course, such as "loop" in a lesson on loops, would count as much as the one word that tells the
passages apart. A term the course never uses weighs as much as its rarest term: it cannot tell
passages apart, and students' own phrasing is full of such words, but it still counts in the
question's total, so a question mostly about something the course does not teach ("how do
mortgages work?") covers little of itself in any passage. A passage whose score is under
``MIN_SCORE``, or whose coverage is under ``MIN_COVERAGE``, is not relevant and is not
returned: the tutor then says it found nothing rather than quoting noise.

A question is answered by a lesson more than by one of its sections: each passage also carries
its *lesson coverage*, the same rarity-weighted share of the question's terms found in any of its
lesson's matching sections or in the lesson's title. The score mixes it in (``LESSON_SHARE``),
and a passage is also relevant when its lesson covers the question well (``LESSON_MIN_SCORE``,
``LESSON_MIN_COVERAGE``, stricter floors than the passage's own).

Only the courses passed in are searched (the caller passes the student's enrolled courses), and
only published ones.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Float, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from portal.db import db
from portal.learning.tutoring import expansion

__all__ = ["LESSON_MIN_COVERAGE", "LESSON_MIN_SCORE", "LESSON_SHARE", "MAX_QUESTION_WORDS", "MIN_COVERAGE", "MIN_SCORE", "Hit", "or_query_text", "relevant", "search",
           "showing"]

#: Below this score a passage is not relevant to the question. Calibrated on the tuning set of
#: tests/eval/data/tutor_tune.toml (on-topic, off-topic) with the older questions of
#: tests/learning/tutoring/test_engine_quality.py, the highest recall of on-topic questions that
#: keeps every off-topic question of the tuning set unanswered.
MIN_SCORE = 0.19
#: Below this share of the question's (rarity-weighted) terms a passage is not relevant.
MIN_COVERAGE = 0.22
#: The share of a passage's score that is its lesson's (``lesson_coverage``: the question's terms
#: found in any section of the lesson or its title). A question is answered by a lesson, whose
#: sections together share more of a student's words than any one section does: the passages
#: are ranked with their lesson's coverage mixed in, and a passage whose lesson covers the
#: question well is relevant even when the passage alone is under the floor, at the stricter
#: LESSON_MIN_SCORE and LESSON_MIN_COVERAGE. Chosen on the old tuning set of tests/eval/data and
#: the off-topic questions of tests/learning/tutoring/test_engine_quality.py (the share and
#: floors that cite the right lesson most often while answering no more off-topic questions),
#: then checked on the old test set.
LESSON_SHARE = 0.75
LESSON_MIN_SCORE = 0.31
LESSON_MIN_COVERAGE = 0.4
#: ts_rank_cd weights for the vector's D, C, B, A parts (heading A, body B).
WEIGHTS = [0.1, 0.2, 0.4, 1.0]
#: ts_rank_cd normalisation: 32 scales the rank to 0..1 (rank / (rank + 1)).
NORMALIZATION = 32

#: Words of the question used at most (a pasted essay does not make a huge query).
MAX_QUESTION_WORDS = 40

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    passage_id: uuid.UUID
    lesson_id: uuid.UUID
    lesson_title: str
    module_id: uuid.UUID
    module_title: str
    heading: str
    anchor: str
    #: A short plain-text excerpt of the passage around the words that matched.
    snippet: str
    #: Relevance score, higher is better; comparable between hits of one search.
    rank: float
    #: The passage's whole text (what answers are composed from).
    body: str = ""
    course_id: uuid.UUID | None = None
    #: Share (0-1) of the question's rarity-weighted terms found in the passage.
    coverage: float = 0.0
    #: The same share found anywhere in the passage's lesson (its matching sections and title).
    lesson_coverage: float = 0.0
    #: The passage's score on its own (``rank`` with LESSON_SHARE 0).
    passage_rank: float = 0.0


def question_words(question: str) -> list[str]:
    """The question's words (letters, digits, underscore), at most MAX_QUESTION_WORDS."""
    return _WORD.findall(question or "")[:MAX_QUESTION_WORDS]


def or_query_text(question: str) -> str:
    """The question's words joined with ``or``, in the syntax of ``websearch_to_tsquery``.

    Only word characters survive, so nothing the student types can be an operator (a leading
    ``-`` for NOT, quotes for phrases)."""
    # "or" typed by the student would be read as the operator: it is a stop word anyway.
    return " or ".join(word for word in question_words(question) if word.lower() != "or")


# The statement. Parameters: :ids (course ids), :q (the OR query text of the question's words),
# :q_expanded (the same with the related words, for English courses), :groups, :words, :term_weights
# (the expanded terms, ``expansion.expand``: one group per question word), :weights, :norm,
# :min_score, :min_coverage, :limit.
#
# - ``queries``: one tsquery per published course searched, in that course's language (with the
#   related words when it is English), and the course's passage count.
# - ``terms``: the lexemes of each term in that language (stemmed, stop words gone), each with
#   the number of the course's passages that contain it (one GIN index probe per term; chr(39) is
#   a quote, chr(92) a backslash, escaped to make the lexeme a tsquery literal as it is, without
#   normalising it again). Related words only for English courses (the word list is English).
# - ``groups``: per question word that has a lexeme, its document frequency: the passages with
#   the word itself, or when none has it, those with its most specific related word.
# - ``idf``: BM25's inverse document frequency of each group (a word in no passage as one in one).
# - ``matched``: passages of those courses matching the OR query (GIN index).
# - ``scored``: ts_rank_cd, and coverage = sum over the groups of idf times 1 when the passage has
#   the word itself, the related words' weight when it has only one of those, over the sum of idf.
_SEARCH = text("""
WITH queries AS (
    SELECT c.id AS course_id, CAST(c.language AS regconfig) AS cfg,
           websearch_to_tsquery(CAST(c.language AS regconfig),
                                CASE WHEN c.language = 'english' THEN :q_expanded ELSE :q END) AS query,
           c.language = 'english' AS expands,
           (SELECT count(*) FROM lesson_passages n WHERE n."courseId" = c.id) AS n
    FROM courses c
    WHERE c.id = ANY(:ids) AND c.status = 'published'
),
input AS (
    SELECT * FROM unnest(CAST(:groups AS integer[]), CAST(:words AS text[]), CAST(:term_weights AS real[]))
        AS t(grp, word, weight)
),
terms AS (
    SELECT q.course_id, q.n, l.grp, l.term, max(l.weight) AS weight,
           (SELECT count(*) FROM lesson_passages d
            WHERE d."courseId" = q.course_id
              AND d.search @@ CAST(chr(39) || replace(replace(l.term, chr(92), repeat(chr(92), 2)),
                                                      chr(39), repeat(chr(39), 2)) || chr(39) AS tsquery)
           ) AS df
    FROM queries q
    CROSS JOIN LATERAL (
        SELECT i.grp, i.weight, unnest(tsvector_to_array(to_tsvector(q.cfg, i.word))) AS term
        FROM input i WHERE i.weight >= 1 OR q.expands
    ) l
    GROUP BY q.course_id, q.n, l.grp, l.term
),
groups AS (
    SELECT course_id, grp, max(n) AS n,
           coalesce(max(df) FILTER (WHERE weight >= 1 AND df > 0), min(df) FILTER (WHERE df > 0), 0) AS df
    FROM terms
    GROUP BY course_id, grp
    HAVING bool_or(weight >= 1)
),
idf AS (
    SELECT course_id, grp, ln(1 + (n - greatest(df, 1) + 0.5) / (greatest(df, 1) + 0.5)) AS w FROM groups
),
matched AS (
    SELECT p.id, p."courseId" AS course_id, p."lessonId" AS lesson_id, p.search, q.query, q.cfg
    FROM queries q
    JOIN lesson_passages p ON p."courseId" = q.course_id AND p.search @@ q.query
    WHERE numnode(q.query) > 0
),
lesson_groups AS (
    SELECT m.lesson_id, m.course_id, t.grp, max(t.weight) AS credit
    FROM matched m
    JOIN lessons l ON l.id = m.lesson_id
    CROSS JOIN LATERAL unnest(m.search || to_tsvector(m.cfg, l.title)) u
    JOIN terms t ON t.course_id = m.course_id AND t.term = u.lexeme
    GROUP BY m.lesson_id, m.course_id, t.grp
),
lesson_cov AS (
    SELECT g.lesson_id,
           sum(i.w * g.credit) / nullif((SELECT sum(i2.w) FROM idf i2 WHERE i2.course_id = g.course_id), 0) AS cov
    FROM lesson_groups g JOIN idf i ON i.course_id = g.course_id AND i.grp = g.grp
    GROUP BY g.lesson_id, g.course_id
),
scored AS (
    SELECT m.id,
           ts_rank_cd(CAST(:weights AS real[]), m.search, m.query, CAST(:norm AS integer)) AS rank_cd,
           coalesce((SELECT sum(i.w * g.credit) FROM (
                        SELECT t.grp, max(t.weight) AS credit FROM unnest(m.search) u
                        JOIN terms t ON t.course_id = m.course_id AND t.term = u.lexeme
                        GROUP BY t.grp) g
                     JOIN idf i ON i.course_id = m.course_id AND i.grp = g.grp)
                    / nullif((SELECT sum(i.w) FROM idf i WHERE i.course_id = m.course_id), 0), 0) AS coverage,
           coalesce((SELECT lc.cov FROM lesson_cov lc WHERE lc.lesson_id = m.lesson_id), 0) AS lesson_coverage
    FROM matched m
),
top AS (
    SELECT s.*, s.rank_cd * ((1 - :lesson_share) * s.coverage + :lesson_share * s.lesson_coverage) AS score
    FROM scored s
),
kept AS (
    SELECT * FROM top
    WHERE (rank_cd * coverage >= :min_score AND coverage >= :min_coverage)
       OR (score >= :lesson_min_score AND lesson_coverage >= :lesson_min_coverage)
    ORDER BY score DESC, id
    LIMIT :limit
)
SELECT p.id AS passage_id, p."lessonId" AS lesson_id, l.title AS lesson_title,
       p."moduleId" AS module_id, md.title AS module_title, p.heading, p.anchor, p.body,
       p."courseId" AS course_id, kept.score AS rank, kept.coverage, kept.lesson_coverage,
       kept.rank_cd * kept.coverage AS passage_rank,
       ts_headline(p.language, p.body, q.query,
                   'StartSel="", StopSel="", MaxWords=40, MinWords=18, MaxFragments=2, '
                   'FragmentDelimiter=" … "') AS snippet
FROM kept
JOIN lesson_passages p ON p.id = kept.id
JOIN queries q ON q.course_id = p."courseId"
JOIN lessons l ON l.id = p."lessonId"
JOIN modules md ON md.id = p."moduleId"
ORDER BY kept.score DESC, p.id
""").bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))), bindparam("weights", type_=ARRAY(Float)))


def relevant(hit: Hit) -> bool:
    """Is the hit above the relevance floor (what ``search`` returns by default): the passage on
    its own above MIN_SCORE and MIN_COVERAGE, or with its lesson above LESSON_MIN_SCORE and
    LESSON_MIN_COVERAGE?"""
    return (hit.passage_rank >= MIN_SCORE and hit.coverage >= MIN_COVERAGE) or \
        (hit.rank >= LESSON_MIN_SCORE and hit.lesson_coverage >= LESSON_MIN_COVERAGE)


def search(course_ids: Iterable[uuid.UUID], question: str, *, limit: int = 5,
           min_score: float | None = None, min_coverage: float | None = None,
           lesson_share: float = LESSON_SHARE) -> list[Hit]:
    """The passages of ``course_ids`` (published courses only) that best answer ``question``,
    best first, at most ``limit``; an empty list when nothing is relevant. One SQL statement.
    ``lesson_share`` 0 ranks the sections alone (a hint points to the section that teaches an
    idea, not to the lesson that shares most words)."""
    ids = list(dict.fromkeys(course_ids))
    query_text = or_query_text(question)
    if not ids or not query_text or limit < 1:
        return []
    terms = expansion.expand(question_words(question))
    related = " or ".join(dict.fromkeys(t.word for t in terms if t.weight < 1 and t.word != "or"))
    rows = db.session.execute(_SEARCH, {
        "ids": ids,
        "q": query_text,
        "q_expanded": f"{query_text} or {related}" if related else query_text,
        "groups": [t.group for t in terms],
        "words": [t.word for t in terms],
        "term_weights": [t.weight for t in terms],
        "weights": WEIGHTS,
        "norm": NORMALIZATION,
        "limit": limit,
        "min_score": MIN_SCORE if min_score is None else min_score,
        "min_coverage": MIN_COVERAGE if min_coverage is None else min_coverage,
        "lesson_share": lesson_share,
        "lesson_min_score": LESSON_MIN_SCORE if min_score is None else min_score,
        "lesson_min_coverage": LESSON_MIN_COVERAGE if min_coverage is None else min_coverage,
    }).mappings()
    return [Hit(passage_id=row["passage_id"], lesson_id=row["lesson_id"], lesson_title=row["lesson_title"],
                module_id=row["module_id"], module_title=row["module_title"], heading=row["heading"],
                anchor=row["anchor"], snippet=_clean(row["snippet"]), rank=float(row["rank"]),
                body=row["body"], course_id=row["course_id"], coverage=float(row["coverage"]),
                lesson_coverage=float(row["lesson_coverage"]), passage_rank=float(row["passage_rank"]))
            for row in rows]


def _clean(snippet: str | None) -> str:
    return re.sub(r"\s+", " ", snippet or "").strip()


_SHOWING = text("""
SELECT p.id AS passage_id, p."lessonId" AS lesson_id, l.title AS lesson_title, p."moduleId" AS module_id,
       md.title AS module_title, p.heading, p.anchor, p.body, p."courseId" AS course_id,
       (SELECT count(*) FROM unnest(CAST(:patterns AS text[])) f(pattern) WHERE p.body LIKE f.pattern) AS shown
FROM lesson_passages p
JOIN courses c ON c.id = p."courseId" AND c.status = 'published'
JOIN lessons l ON l.id = p."lessonId"
JOIN modules md ON md.id = p."moduleId"
WHERE p."courseId" = ANY(:ids) AND p.body LIKE ANY(CAST(:patterns AS text[]))
ORDER BY shown DESC, p."lessonId", p.position
LIMIT :limit
""").bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))))


def showing(course_ids: Iterable[uuid.UUID], fragments: list[str], *, limit: int = 5) -> list[tuple[Hit, int]]:
    """The passages of ``course_ids`` (published courses only) whose text shows one of the code
    ``fragments`` as written ("//", ".get("), with how many of them each shows, most first. One
    SQL statement; none for no fragments."""
    ids = list(dict.fromkeys(course_ids))
    # LIKE's escape character is the backslash.
    patterns = ["%" + fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                for fragment in fragments if fragment]
    if not ids or not patterns:
        return []
    rows = db.session.execute(_SHOWING, {"ids": ids, "patterns": patterns, "limit": limit}).mappings()
    return [(Hit(passage_id=row["passage_id"], lesson_id=row["lesson_id"], lesson_title=row["lesson_title"],
                 module_id=row["module_id"], module_title=row["module_title"], heading=row["heading"],
                 anchor=row["anchor"], snippet="", rank=0.0, body=row["body"], course_id=row["course_id"]),
             int(row["shown"])) for row in rows]
