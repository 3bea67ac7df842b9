"""How well the portal's two matching engines do on labelled sets: the course tutor's retrieval
and AML name screening (issue 18). HTTP-free; used by ``flask eval matching`` and by the tests
in ``tests/eval``.

The sets are TOML files in one folder (``tests/eval/data`` in the repository): ``tutor_<set>.toml``
holds ``[[question]]`` tables (``course``: a demo course's slug, ``kind``: ``on_topic``,
``off_topic`` or ``quiz_like``, ``question``, ``lesson``: the exact title of the lesson that
answers it, ``""`` when off-topic) and ``names_<set>.toml`` holds ``[[pair]]`` tables (``query``,
``listed``, ``match``: whether they are one person, ``kind``: free text). ``<set>`` is ``tune``
(the engines may be tuned on it), ``dev`` (a former test set whose misses were studied: tuned on
since) or ``test`` (held out, written blind, never tuned on; each round of work gets a new one).

The figures:

- tutor, on-topic: the share whose reply cites the expected lesson (the reply cites at most three
  sections, the best first);
- tutor, off-topic: the share answered "not found";
- tutor, quiz-like: the share answered with a hint whose first citation (the section it sends the
  student to first) is in the expected lesson;
- screening: precision and recall of ``name_similarity >= threshold`` (the configured
  ``AML_MATCH_THRESHOLD`` unless another is given).

The tutor is asked exactly as a student's question is (``answers.draft_reply``, without the
optional language model), searching only the question's course.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

__all__ = ["GOAL", "eval_group", "NameFigures", "TutorFigures", "load", "name_figures", "set_names", "tutor_figures"]

#: Every figure must reach this on every set (issue 18).
GOAL = 0.95

TUTOR_KINDS = ("on_topic", "off_topic", "quiz_like")


@dataclass
class Ratio:
    hits: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 1.0

    def add(self, ok: bool, miss: str) -> None:
        self.total += 1
        if ok:
            self.hits += 1
        else:
            self.misses.append(miss)

    def __str__(self) -> str:
        return f"{self.rate:.3f} ({self.hits}/{self.total})"


@dataclass
class TutorFigures:
    on_topic: Ratio = field(default_factory=Ratio)
    off_topic: Ratio = field(default_factory=Ratio)
    quiz_like: Ratio = field(default_factory=Ratio)

    def lines(self, name: str) -> list[str]:
        return [f"tutor [{name}]: right lesson cited (top 3) {self.on_topic}; "
                f"off-topic answered not found {self.off_topic}; quiz-like hinted at the lesson {self.quiz_like}"]

    def misses(self) -> list[str]:
        return [*self.on_topic.misses, *self.off_topic.misses, *self.quiz_like.misses]

    def meets(self, goal: float = GOAL) -> bool:
        return all(ratio.rate >= goal for ratio in (self.on_topic, self.off_topic, self.quiz_like))


@dataclass
class NameFigures:
    threshold: float
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        should = self.true_positives + self.false_negatives
        return self.true_positives / should if should else 1.0

    def lines(self, name: str) -> list[str]:
        pairs = self.true_positives + self.false_positives + self.false_negatives + self.true_negatives
        return [f"screening [{name}] at threshold {self.threshold:g} on {pairs} pairs: precision {self.precision:.3f} "
                f"({self.true_positives}/{self.true_positives + self.false_positives}), recall {self.recall:.3f} "
                f"({self.true_positives}/{self.true_positives + self.false_negatives})"]

    def misses(self) -> list[str]:
        return list(self.wrong)

    def meets(self, goal: float = GOAL) -> bool:
        return self.precision >= goal and self.recall >= goal


class EvaluationSetError(ValueError):
    """A set file that does not have the expected shape (the message names the file)."""


def set_names(folder: Path, engine: str) -> list[str]:
    """The sets present for ``engine`` (``tutor`` or ``names``): ``tune``, ``dev``, ``test``, in
    that order, then any other, from the files ``<engine>_<set>.toml``."""
    found = sorted(path.stem.split("_", 1)[1] for path in folder.glob(f"{engine}_*.toml"))
    order = {"tune": 0, "dev": 1, "test": 2}
    return sorted(found, key=lambda name: (order.get(name, 2), name))


def load(folder: Path, engine: str, name: str) -> list[dict]:
    """The rows of one set, checked."""
    path = folder / f"{engine}_{name}.toml"
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    table, keys = ("question", {"course", "kind", "question", "lesson"}) if engine == "tutor" else \
        ("pair", {"query", "listed", "match", "kind"})
    rows = data.get(table)
    if not isinstance(rows, list) or not rows:
        raise EvaluationSetError(f"{path.name}: no [[{table}]] tables")
    for i, row in enumerate(rows, start=1):
        missing = keys - set(row)
        if missing:
            raise EvaluationSetError(f"{path.name}: [[{table}]] number {i} lacks {', '.join(sorted(missing))}")
        if engine == "tutor" and row["kind"] not in TUTOR_KINDS:
            raise EvaluationSetError(f"{path.name}: [[{table}]] number {i} has an unknown kind {row['kind']!r}")
        if engine == "names" and not isinstance(row["match"], bool):
            raise EvaluationSetError(f"{path.name}: [[{table}]] number {i}: match must be true or false")
    return rows


def tutor_figures(rows: list[dict], courses: dict) -> TutorFigures:
    """Ask the tutor every question of the set; ``courses`` maps the demo courses' slugs to their
    rows (seeded, with their passages)."""
    from portal.learning.tutoring import answers
    from portal.learning.tutoring.models import ReplyKind

    figures = TutorFigures()
    for row in rows:
        course = courses.get(row["course"])
        if course is None:
            raise EvaluationSetError(f"no demo course {row['course']!r}")
        reply = answers.draft_reply(course, row["question"]).reply
        cited = list(dict.fromkeys(citation["lesson_title"] for citation in reply.citations))
        seen = f"{row['question']!r}: expected {row['lesson'] or 'not found'!r}, got {reply.kind.value} {cited}"
        if row["kind"] == "on_topic":
            figures.on_topic.add(row["lesson"] in cited, "on-topic " + seen)
        elif row["kind"] == "off_topic":
            figures.off_topic.add(reply.kind == ReplyKind.NOT_FOUND, "off-topic " + seen)
        else:
            figures.quiz_like.add(reply.kind == ReplyKind.HINT and cited[:1] == [row["lesson"]], "quiz-like " + seen)
    return figures


def name_figures(rows: list[dict], threshold: float) -> NameFigures:
    """Score every pair of the set with the screening's name similarity."""
    from portal.compliance.aml.matching import name_similarity

    figures = NameFigures(threshold=threshold)
    for row in rows:
        score = name_similarity(row["query"], row["listed"])
        hit = score >= threshold
        if hit and row["match"]:
            figures.true_positives += 1
        elif hit:
            figures.false_positives += 1
            figures.wrong.append(f"false hit {score:6.2f}: {row['query']!r} / {row['listed']!r} ({row['kind']})")
        elif row["match"]:
            figures.false_negatives += 1
            figures.wrong.append(f"missed    {score:6.2f}: {row['query']!r} / {row['listed']!r} ({row['kind']})")
        else:
            figures.true_negatives += 1
    return figures


# --------------------------------------------------------------------------------- the command

def _default_folder() -> Path:
    return Path(__file__).resolve().parent.parent / "tests" / "eval" / "data"


def report(folder: Path, which: str | None, courses: dict | None, threshold: float,
           *, show_misses: bool = False) -> tuple[list[str], bool]:
    """The figures of every set present (or only ``which``) as printable lines, and whether all
    of them meet the goal. ``courses`` None leaves the tutor out."""
    lines: list[str] = []
    ok = True
    for engine in ("tutor", "names"):
        if engine == "tutor" and courses is None:
            continue
        for name in set_names(folder, engine):
            if which and name != which:
                continue
            rows = load(folder, engine, name)
            figures = tutor_figures(rows, courses) if engine == "tutor" else name_figures(rows, threshold)
            lines += figures.lines(name)
            if show_misses:
                lines += ["  " + miss for miss in figures.misses()]
            ok = ok and figures.meets()
    return lines, ok


@click.group("eval", help="Measure the portal's matching engines on labelled sets.")
def eval_group():
    pass


@eval_group.command("matching", help="The tutor's and AML screening's figures on the tuning and test sets.")
@click.option("--set", "which", type=click.Choice(["tune", "dev", "test"]), default=None,
              help="Only this set (default: every set present).")
@click.option("--data", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The folder of the set files (default: tests/eval/data).")
@click.option("--misses", is_flag=True, help="List every question and pair the engines got wrong.")
@with_appcontext
def matching_command(which: str | None, folder: Path | None, misses: bool):
    from sqlalchemy import inspect, select

    from portal.db import as_cli_actor, db
    from portal.learning import demo_content
    from portal.learning.education.models import Course

    folder = folder or _default_folder()
    if not folder.is_dir():
        raise click.ClickException(f"No folder {folder}.")

    def run() -> tuple[list[str], bool]:
        slugs = [spec.slug for spec in demo_content.COURSES]
        migrated = inspect(db.session.connection()).has_table("lesson_passages")
        courses = {c.slug: c for c in db.session.scalars(select(Course).where(Course.slug.in_(slugs)))} \
            if migrated else {}
        if len(courses) < len(slugs):
            click.echo("The demo courses are not in this database (flask seed-demo): the tutor is left out.")
            courses = None
        return report(folder, which, courses, float(current_app.config["AML_MATCH_THRESHOLD"]), show_misses=misses)

    try:
        lines, ok = as_cli_actor(run)()
    except (EvaluationSetError, tomllib.TOMLDecodeError) as error:
        raise click.ClickException(str(error)) from None
    if not lines:
        raise click.ClickException(f"No set files in {folder}.")
    for line in lines:
        click.echo(line)
    shown = "every figure" if any(line.startswith("tutor") for line in lines) else "every screening figure"
    click.echo(f"goal ({shown} at least {GOAL}): {'met' if ok else 'NOT met'}")
