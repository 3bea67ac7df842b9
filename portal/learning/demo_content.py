"""The demo courses: three short, complete courses written for the portal, kept as data files
under ``demo_courses/`` and read into frozen specs here.

Nothing here touches the database; the loader (``portal.learning.demo``) turns these specs into
rows. The shapes follow the learning tables:

- ``CourseSpec`` -> ``courses``, its ``modules`` -> ``modules`` (position = index + 1), each
  module's ``lessons`` -> ``lessons``.
- ``QuizSpec`` -> ``quizzes``, attached to ``course.modules[module_index]``; its questions ->
  ``quiz_questions`` and their options -> ``question_options``.
- ``AssignmentSpec`` -> ``assignments``, its criteria -> the ``rubric`` JSON (criterion and level
  ids are the loader's to mint).

The files. ``demo_courses/courses.toml`` lists the courses in the order they are seeded; each is
the folder named by its slug, holding:

- ``course.md``: TOML front matter between ``+++`` lines (``title``, ``summary``, ``category``,
  ``level``, ``estimated_hours``, and one ``[[module]]`` table per module with its ``title``,
  ``summary`` and ``lessons``, the file names of its lessons in order), then the course
  description.
- ``lessons/<name>.md``: front matter with ``title`` and ``estimated_minutes``, then the lesson.
  Every file there belongs to exactly one module.
- ``quizzes.toml``: one ``[[quiz]]`` per quiz (``title``, ``description``, ``module``,
  ``time_limit_minutes``, ``max_attempts``, ``passing_score``) with its ``[[quiz.question]]``
  tables. A question has ``kind``, ``points``, ``prompt`` and ``feedback``; then by kind:
  ``options`` (``{ text, correct, feedback? }``) for single and multiple choice, ``answer``
  (true or false) for true/false, ``accepted_answers``, ``match_mode`` and, in pattern mode,
  ``pattern`` for short answers, ``answer`` and ``tolerance`` as decimal strings for numeric
  ones, ``grading_guide`` for essays.
- ``assignment.md``: front matter with ``title``, ``points``, ``module`` and one ``[[criterion]]``
  per rubric criterion (``title``, ``description``, ``levels``: ``{ title, points,
  description }``, best first), then the instructions.

``module`` counts from 1, as the course page numbers modules. Unknown or missing keys are errors
(``DemoContentError`` names the file), so a misspelt key cannot be silently dropped.

Text is Markdown in the portal's dialect: ``#`` is a section heading (the renderer demotes it
below the page's own title), fenced code blocks, tables and lists, and no raw HTML.

Short answers: ``accepted_answers`` are literal correct answers, the first being the model
answer shown to students. With ``match_mode="pattern"`` the question also has a ``pattern``, a
Python regular expression that must match the whole (stripped) answer; that pattern is what the
``acceptedAnswers`` column holds for such a question (see ``QuestionSpec.stored_answers``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Literal

__all__ = [
    "COURSES",
    "LEVELS",
    "MATCH_MODES",
    "QUESTION_KINDS",
    "AssignmentSpec",
    "CourseSpec",
    "CriterionSpec",
    "DemoContentError",
    "LessonSpec",
    "LevelSpec",
    "ModuleSpec",
    "OptionSpec",
    "QuestionSpec",
    "QuizSpec",
    "course_by_slug",
    "load_courses",
]

CourseLevel = Literal["beginner", "intermediate", "advanced"]
QuestionKind = Literal["single", "multiple", "true_false", "short", "numeric", "essay"]
MatchMode = Literal["exact", "case_insensitive", "pattern"]

LEVELS: tuple[str, ...] = ("beginner", "intermediate", "advanced")
QUESTION_KINDS: tuple[str, ...] = ("single", "multiple", "true_false", "short", "numeric", "essay")
MATCH_MODES: tuple[str, ...] = ("exact", "case_insensitive", "pattern")


@dataclass(frozen=True)
class LessonSpec:
    title: str
    #: Markdown.
    body: str
    estimated_minutes: int


@dataclass(frozen=True)
class ModuleSpec:
    title: str
    summary: str
    lessons: tuple[LessonSpec, ...]


@dataclass(frozen=True)
class OptionSpec:
    text: str
    is_correct: bool
    feedback: str = ""


@dataclass(frozen=True)
class QuestionSpec:
    kind: QuestionKind
    #: Markdown.
    prompt: str
    points: int
    #: One sentence shown after the attempt, explaining the answer.
    feedback: str
    #: single, multiple and true_false only.
    options: tuple[OptionSpec, ...] = ()
    #: short only: literal correct answers, the first being the model answer.
    accepted_answers: tuple[str, ...] = ()
    match_mode: MatchMode | None = None
    #: short with match_mode "pattern": a regular expression for the whole answer.
    pattern: str | None = None
    #: numeric only.
    answer: Decimal | None = None
    tolerance: Decimal | None = None
    #: essay only: what a grader looks for.
    grading_guide: str = ""

    @property
    def stored_answers(self) -> tuple[str, ...]:
        """What the ``acceptedAnswers`` column holds: the pattern in pattern mode, else the
        literal answers."""
        if self.match_mode == "pattern" and self.pattern is not None:
            return (self.pattern,)
        return self.accepted_answers


@dataclass(frozen=True)
class QuizSpec:
    title: str
    description: str
    #: Index into the course's modules.
    module_index: int
    time_limit_minutes: int
    max_attempts: int
    #: Percent of the maximum score needed to pass.
    passing_score: int
    questions: tuple[QuestionSpec, ...]


@dataclass(frozen=True)
class LevelSpec:
    title: str
    description: str
    points: int


@dataclass(frozen=True)
class CriterionSpec:
    title: str
    description: str
    #: Best level first; the best level's points are the criterion's share of the assignment.
    levels: tuple[LevelSpec, ...]


@dataclass(frozen=True)
class AssignmentSpec:
    title: str
    #: Markdown.
    instructions: str
    points: int
    #: Index into the course's modules.
    module_index: int
    criteria: tuple[CriterionSpec, ...]


@dataclass(frozen=True)
class CourseSpec:
    slug: str
    title: str
    summary: str
    #: Markdown.
    description: str
    category: str
    level: CourseLevel
    estimated_hours: int
    modules: tuple[ModuleSpec, ...]
    quizzes: tuple[QuizSpec, ...]
    assignment: AssignmentSpec


# ---------------------------------------------------------------------------------------------
# Reading the files
# ---------------------------------------------------------------------------------------------

#: The demo courses' folder inside the package (shipped as package data, see pyproject.toml).
DATA = resources.files(__package__) / "demo_courses"
FRONT_MATTER = "+++"


class DemoContentError(ValueError):
    """A demo course file that does not say what the loader needs."""


def _read(path: Traversable) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DemoContentError(f"{path}: no such file") from None


def _toml(text: str, where: Traversable) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DemoContentError(f"{where}: {exc}") from None


def _front_matter(path: Traversable) -> tuple[dict[str, Any], str]:
    """A Markdown file's TOML front matter (between ``+++`` lines) and the Markdown after it."""
    text = _read(path)
    opening = FRONT_MATTER + "\n"
    closing = "\n" + FRONT_MATTER + "\n"
    end = text.find(closing, len(opening) - 1)
    if not text.startswith(opening) or end < 0:
        raise DemoContentError(f"{path}: the file must start with TOML front matter between {FRONT_MATTER} lines")
    return _toml(text[len(opening):end + 1], path), text[end + len(closing):].lstrip("\n")


def _fields(table: dict[str, Any], where: Traversable, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``table``'s values, refusing a missing required key or a key the format does not have."""
    missing = [key for key in required if key not in table]
    unknown = sorted(set(table) - set(required) - set(optional))
    if missing or unknown:
        name = f" ({table['title']})" if isinstance(table.get("title"), str) else ""
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else [])
        raise DemoContentError(f"{where}{name}: {'; '.join(problems)}")
    return table


def _decimal(value: Any, where: Traversable, key: str) -> Decimal:
    """A decimal written as a string ("2249.73"): a TOML float would not keep it exact."""
    try:
        if isinstance(value, str):
            return Decimal(value)
    except InvalidOperation:
        pass
    raise DemoContentError(f"{where}: {key} must be a decimal number in quotes, like \"12.5\"")


def _module_index(value: Any, course: dict[str, Any], where: Traversable) -> int:
    if not isinstance(value, int) or not 1 <= value <= len(course["module"]):
        raise DemoContentError(f"{where}: module must be 1 to {len(course['module'])}, not {value!r}")
    return value - 1


def _question(table: dict[str, Any], where: Traversable) -> QuestionSpec:
    kind = table.get("kind")
    by_kind: dict[Any, tuple[str, ...]] = {
        "single": ("options",), "multiple": ("options",), "true_false": ("answer",),
        "short": ("accepted_answers", "match_mode"), "numeric": ("answer", "tolerance"), "essay": ("grading_guide",),
    }
    if kind not in by_kind:
        raise DemoContentError(f"{where}: kind must be one of {', '.join(QUESTION_KINDS)}, not {kind!r}")
    optional = ("pattern",) if table.get("match_mode") == "pattern" else ()
    q = _fields(table, where, ("kind", "points", "prompt", "feedback", *by_kind[kind]), optional)
    common = {"kind": kind, "prompt": q["prompt"], "points": q["points"], "feedback": q["feedback"]}
    if kind in ("single", "multiple"):
        options = tuple(OptionSpec(o["text"], o["correct"], o.get("feedback", ""))
                        for o in (_fields(o, where, ("text", "correct"), ("feedback",)) for o in q["options"]))
        return QuestionSpec(**common, options=options)
    if kind == "true_false":
        if not isinstance(q["answer"], bool):
            raise DemoContentError(f"{where}: a true/false question's answer is true or false")
        return QuestionSpec(**common, options=(OptionSpec("True", q["answer"]), OptionSpec("False", not q["answer"])))
    if kind == "short":
        return QuestionSpec(**common, accepted_answers=tuple(q["accepted_answers"]), match_mode=q["match_mode"],
                            pattern=q.get("pattern"))
    if kind == "numeric":
        return QuestionSpec(**common, answer=_decimal(q["answer"], where, "answer"),
                            tolerance=_decimal(q["tolerance"], where, "tolerance"))
    return QuestionSpec(**common, grading_guide=q["grading_guide"])


def _quizzes(folder: Traversable, course: dict[str, Any]) -> tuple[QuizSpec, ...]:
    where = folder / "quizzes.toml"
    data = _fields(_toml(_read(where), where), where, (), ("quiz",))
    quizzes = []
    for table in data.get("quiz", []):
        quiz = _fields(table, where, ("title", "description", "module", "time_limit_minutes", "max_attempts",
                                      "passing_score", "question"))
        quizzes.append(QuizSpec(
            title=quiz["title"], description=quiz["description"],
            module_index=_module_index(quiz["module"], course, where),
            time_limit_minutes=quiz["time_limit_minutes"], max_attempts=quiz["max_attempts"],
            passing_score=quiz["passing_score"],
            questions=tuple(_question(question, where) for question in quiz["question"]),
        ))
    return tuple(quizzes)


def _assignment(folder: Traversable, course: dict[str, Any]) -> AssignmentSpec:
    where = folder / "assignment.md"
    meta, instructions = _front_matter(where)
    meta = _fields(meta, where, ("title", "points", "module", "criterion"))
    criteria = []
    for table in meta["criterion"]:
        criterion = _fields(table, where, ("title", "description", "levels"))
        levels = tuple(LevelSpec(level["title"], level["description"], level["points"])
                       for level in (_fields(lv, where, ("title", "points", "description"))
                                     for lv in criterion["levels"]))
        criteria.append(CriterionSpec(criterion["title"], criterion["description"], levels))
    return AssignmentSpec(title=meta["title"], instructions=instructions, points=meta["points"],
                          module_index=_module_index(meta["module"], course, where), criteria=tuple(criteria))


def _modules(folder: Traversable, course: dict[str, Any], where: Traversable) -> tuple[ModuleSpec, ...]:
    lessons = folder / "lessons"
    listed = [name for table in course["module"] for name in table.get("lessons", [])]
    on_disk = sorted(entry.name for entry in lessons.iterdir() if entry.is_file()) if lessons.is_dir() else []
    unlisted = sorted(set(on_disk) - set(listed))
    twice = sorted({name for name in listed if listed.count(name) > 1})
    if unlisted or twice:
        raise DemoContentError(f"{where}: every lesson file belongs to one module "
                               f"(not in any: {', '.join(unlisted) or 'none'}; "
                               f"in more than one: {', '.join(twice) or 'none'})")
    modules = []
    for table in course["module"]:
        module = _fields(table, where, ("title", "summary", "lessons"))
        specs = []
        for name in module["lessons"]:
            meta, body = _front_matter(lessons / name)
            meta = _fields(meta, lessons / name, ("title", "estimated_minutes"))
            specs.append(LessonSpec(meta["title"], body, meta["estimated_minutes"]))
        modules.append(ModuleSpec(module["title"], module["summary"], tuple(specs)))
    return tuple(modules)


def _course(folder: Traversable, slug: str) -> CourseSpec:
    where = folder / "course.md"
    meta, description = _front_matter(where)
    course = _fields(meta, where, ("title", "summary", "category", "level", "estimated_hours", "module"))
    if course["level"] not in LEVELS:
        raise DemoContentError(f"{where}: level must be one of {', '.join(LEVELS)}, not {course['level']!r}")
    return CourseSpec(
        slug=slug, title=course["title"], summary=course["summary"], description=description,
        category=course["category"], level=course["level"], estimated_hours=course["estimated_hours"],
        modules=_modules(folder, course, where), quizzes=_quizzes(folder, course),
        assignment=_assignment(folder, course),
    )


def load_courses(data: Traversable = DATA) -> list[CourseSpec]:
    """The courses listed in ``data/courses.toml``, in its order, each read from its folder."""
    where = data / "courses.toml"
    index = _fields(_toml(_read(where), where), where, ("courses",))
    folders = sorted(entry.name for entry in data.iterdir() if entry.is_dir() and not entry.name.startswith(("_", ".")))
    if sorted(index["courses"]) != folders:
        raise DemoContentError(f"{where}: courses must list each course folder once "
                               f"(listed: {', '.join(index['courses'])}; folders: {', '.join(folders)})")
    return [_course(data / slug, slug) for slug in index["courses"]]


COURSES: list[CourseSpec] = load_courses()


def course_by_slug(slug: str) -> CourseSpec:
    """The demo course with this slug; ``KeyError`` when there is none."""
    for course in COURSES:
        if course.slug == slug:
            return course
    raise KeyError(slug)
