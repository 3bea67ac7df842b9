"""Personal learning paths: a student's route through one course, weakest topics first.

A path is generated from the student's topic mastery (``insights.topic_stats``) and where they
stand in the course:

1. For each weak topic, lowest mastery first: review up to ``REVIEWS_PER_TOPIC`` of its lessons
   the student has completed (``REVIEW_LESSON``, introductory), then retry its quizzes taken and
   not passed that can still be attempted (``RETRY_QUIZ``).
2. Then the next unfinished module, in course order (one with work the student can still do,
   not locked behind the previous one, and not all of it on the path already): its lessons not completed (``STUDY_LESSON``, core), its
   quizzes not taken (``TAKE_QUIZ``) or not passed (``RETRY_QUIZ``), its assignments not
   submitted and still open (``SUBMIT_ASSIGNMENT``, challenge). Once every module is finished,
   the course-wide quizzes and assignments (those outside any module) come instead.

At most ``MAX_STEPS`` steps: a path is what to do next, not the whole course. A quiz is *hard*
(a challenge rather than core work) when it takes ``HARD_PASSING_PERCENT`` or more to pass, or
allows a single attempt: either raises the stakes of trying unprepared.

Steps complete themselves (``complete_steps``) from the learning events: a lesson completed, a
quiz submitted (taking it), passed or bettered (retrying it; passing a topic's quiz also ends its
reviews), an assignment submitted. A review can also be marked done by the student
(``mark_reviewed``): rereading a lesson leaves no other trace. When every step is done the
path is completed. ``steps_done`` is counted in SQL under the path row's lock, so two events at
the same moment never count one step twice nor lose one.

Regenerating marks the active path ``replaced`` and builds a new one; generation is serialised
per student and course (an advisory lock), so a double click leaves exactly one active path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import DateTime, and_, case, cast, exists, func, or_, select, text, update

from portal.db import base, db
from portal.errors import Forbidden, NotFound
from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
from portal.learning.education.models import (
    Course,
    CourseStatus,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Module,
    Progress,
)
from portal.learning.lms.models import Assignment, Submission
from portal.learning.tutoring.insights import TopicStats, topic_stats
from portal.learning.tutoring.models import (
    Difficulty,
    LearningPath,
    PathStatus,
    PathStep,
    StepKind,
    StepStatus,
)

#: The longest path: enough for a week or two of study, short enough to read at a glance.
MAX_STEPS = 12
#: Lessons to review per weak topic: its first completed ones, the topic's foundations.
REVIEWS_PER_TOPIC = 3
#: A quiz that takes this much or more to pass is a challenge.
HARD_PASSING_PERCENT = Decimal(80)
REASON_LIMIT = 300


def _clip(text_: str, limit: int = 80) -> str:
    return text_ if len(text_) <= limit else text_[: limit - 1] + "\u2026"


def _pct(value: Decimal | None) -> str:
    return "0" if value is None else str(int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP)))


# ---------------------------------------------------------------------------------- the course as the student stands


@dataclass
class LessonState:
    id: uuid.UUID
    title: str
    completed: bool


@dataclass
class QuizState:
    id: uuid.UUID
    title: str
    module_id: uuid.UUID | None
    passing_percent: Decimal
    max_attempts: int | None
    opens_at: datetime | None
    closes_at: datetime | None
    attempts: int
    taken: bool  #: a submitted or graded attempt exists
    passed: bool
    best_percent: Decimal | None
    in_progress: bool

    @property
    def hard(self) -> bool:
        return self.passing_percent >= HARD_PASSING_PERCENT or self.max_attempts == 1

    def can_attempt(self, now: datetime) -> bool:
        """A new attempt could start now (or the open one be continued)."""
        if self.opens_at is not None and now < self.opens_at:
            return False
        if self.closes_at is not None and now >= self.closes_at:
            return False
        return self.in_progress or self.max_attempts is None or self.attempts < self.max_attempts


@dataclass
class AssignmentState:
    id: uuid.UUID
    title: str
    module_id: uuid.UUID | None
    due_at: datetime | None
    cutoff_at: datetime | None  #: this student's last moment to submit
    submitted: bool

    def open(self, now: datetime) -> bool:
        return self.cutoff_at is None or now <= self.cutoff_at


@dataclass
class ModuleState:
    id: uuid.UUID
    title: str
    position: int
    requires_previous: bool
    lessons: list[LessonState] = field(default_factory=list)
    quizzes: list[QuizState] = field(default_factory=list)
    assignments: list[AssignmentState] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """As the course outline says: lessons done and quizzes passed (what unlocks the next)."""
        return all(lesson.completed for lesson in self.lessons) and all(quiz.passed for quiz in self.quizzes)

    def has_work(self, now: datetime) -> bool:
        return (any(not lesson.completed for lesson in self.lessons)
                or any(not quiz.passed and quiz.can_attempt(now) for quiz in self.quizzes)
                or any(not a.submitted and a.open(now) for a in self.assignments))


def _course_state(user_id: uuid.UUID, course_id: uuid.UUID) -> tuple[list[ModuleState], ModuleState]:
    """The course's modules with the student's standing (three statements: lessons with
    progress, published quizzes with the student's attempts, published assignments with their
    submission). Returns the modules in order and a pseudo-module of course-wide work."""
    modules: dict[uuid.UUID, ModuleState] = {}
    ordered: list[ModuleState] = []
    for row in db.session.execute(
        select(Module.id, Module.title, Module.position, Module.requires_previous,
               Lesson.id.label("lesson_id"), Lesson.title.label("lesson_title"),
               Progress.completed_at)
        .outerjoin(Lesson, Lesson.module_id == Module.id)
        .outerjoin(Progress, and_(Progress.lesson_id == Lesson.id, Progress.user_id == user_id))
        .where(Module.course_id == course_id)
        .order_by(Module.position, Lesson.position)
    ):
        module = modules.get(row.id)
        if module is None:
            module = modules[row.id] = ModuleState(row.id, row.title, row.position, row.requires_previous)
            ordered.append(module)
        if row.lesson_id is not None:
            module.lessons.append(LessonState(row.lesson_id, row.lesson_title, row.completed_at is not None))
    course_wide = ModuleState(uuid.UUID(int=0), "Course-wide work", len(ordered) + 1, False)

    def home(module_id: uuid.UUID | None) -> ModuleState:
        return modules.get(module_id, course_wide) if module_id is not None else course_wide

    counted = QuizAttempt.status.in_((AttemptStatus.SUBMITTED, AttemptStatus.GRADED))
    mine = and_(QuizAttempt.quiz_id == Quiz.id, QuizAttempt.user_id == user_id)
    for row in db.session.execute(
        select(Quiz.id, Quiz.title, Quiz.module_id, Quiz.passing_percent, Quiz.max_attempts, Quiz.opens_at,
               Quiz.closes_at,
               select(func.count()).where(mine).scalar_subquery().label("attempts"),
               exists().where(mine, counted).label("taken"),
               exists().where(mine, QuizAttempt.passed.is_(True)).label("passed"),
               select(func.max(QuizAttempt.percent)).where(mine, QuizAttempt.status == AttemptStatus.GRADED)
               .scalar_subquery().label("best"),
               exists().where(mine, QuizAttempt.status == AttemptStatus.IN_PROGRESS).label("in_progress"))
        .where(Quiz.course_id == course_id, Quiz.published.is_(True))
        .order_by(Quiz.created_at, Quiz.id)
    ):
        home(row.module_id).quizzes.append(QuizState(
            row.id, row.title, row.module_id, row.passing_percent, row.max_attempts, row.opens_at, row.closes_at,
            row.attempts, row.taken, row.passed, row.best, row.in_progress))

    extension = cast(Assignment.extensions[str(user_id)].astext, DateTime(timezone=True))
    for row in db.session.execute(
        select(Assignment.id, Assignment.title, Assignment.module_id,
               func.coalesce(extension, Assignment.due_at).label("due"),
               func.coalesce(extension, Assignment.cutoff_at, Assignment.due_at).label("cutoff"),
               exists().where(Submission.assignment_id == Assignment.id, Submission.user_id == user_id)
               .label("submitted"))
        .where(Assignment.course_id == course_id, Assignment.published.is_(True))
        .order_by(Assignment.due_at.asc().nulls_last(), Assignment.title, Assignment.id)
    ):
        home(row.module_id).assignments.append(
            AssignmentState(row.id, row.title, row.module_id, row.due, row.cutoff, row.submitted))
    return ordered, course_wide


# ---------------------------------------------------------------------------------- planning


@dataclass
class PlannedStep:
    kind: StepKind
    difficulty: Difficulty
    module_id: uuid.UUID | None
    reason: str
    lesson_id: uuid.UUID | None = None
    quiz_id: uuid.UUID | None = None
    assignment_id: uuid.UUID | None = None

    @property
    def target(self) -> tuple[str, uuid.UUID | None]:
        if self.lesson_id:
            return "lesson", self.lesson_id
        if self.quiz_id:
            return "quiz", self.quiz_id
        return "assignment", self.assignment_id


def _evidence(topic: TopicStats) -> str:
    parts = []
    if topic.answers:
        parts.append(f"{topic.correct} of {topic.answers} quiz answers correct")
    if topic.graded_assignments:
        parts.append(f"{topic.assignment_earned.normalize():f} of {topic.assignment_possible.normalize():f} "
                     "assignment points")
    return ", ".join(parts)


def _quiz_difficulty(quiz: QuizState) -> Difficulty:
    return Difficulty.CHALLENGE if quiz.hard else Difficulty.CORE


def _retry_reason(quiz: QuizState, module_title: str | None) -> str:
    best = f"Your best score here is {_pct(quiz.best_percent)}%" if quiz.best_percent is not None \
        else "Your attempt is not graded yet"
    after = f" Try again after reviewing \u201c{_clip(module_title)}\u201d." if module_title else " Try again."
    return f"{best}; {_pct(quiz.passing_percent)}% passes.{after}"


def plan(topics: list[TopicStats], modules: list[ModuleState], course_wide: ModuleState,
         now: datetime) -> list[PlannedStep]:
    """The steps of a new path, in order (see the module's docstring)."""
    steps: list[PlannedStep] = []
    planned: set[tuple[str, uuid.UUID | None]] = set()
    by_id = {module.id: module for module in modules}

    def add(step: PlannedStep) -> None:
        if len(steps) < MAX_STEPS and step.target not in planned:
            step.reason = step.reason[:REASON_LIMIT]
            steps.append(step)
            planned.add(step.target)

    weak = sorted((t for t in topics if t.weak), key=lambda t: (t.mastery, t.position))
    for rank, topic in enumerate(weak):
        module = by_id.get(topic.module_id)
        if module is None:
            continue
        which = "your weakest topic" if rank == 0 else "one of your weaker topics"
        review = (f"\u201c{_clip(module.title)}\u201d is {which} ({_evidence(topic)}; mastery "
                  f"{_pct(topic.mastery)}%). Read this lesson again.")
        for lesson in [lesson for lesson in module.lessons if lesson.completed][:REVIEWS_PER_TOPIC]:
            add(PlannedStep(StepKind.REVIEW_LESSON, Difficulty.INTRODUCTORY, module.id, review, lesson_id=lesson.id))
        for quiz in module.quizzes:
            if quiz.taken and not quiz.passed and quiz.can_attempt(now):
                add(PlannedStep(StepKind.RETRY_QUIZ, _quiz_difficulty(quiz), module.id,
                                _retry_reason(quiz, module.title), quiz_id=quiz.id))

    # The next unfinished module: the first one, in course order, that is open and has work
    # not already on the path (a weak topic's retry may be all its remaining work).
    candidates: list[ModuleState] = []
    previous: ModuleState | None = None
    for module in modules:
        locked = module.requires_previous and previous is not None and not previous.passed
        previous = module
        if not locked and module.has_work(now):
            candidates.append(module)
    if course_wide.has_work(now):
        candidates.append(course_wide)
    for module in candidates:
        work = _module_work(module, None if module is course_wide else module.id, now)
        if any(step.target not in planned for step in work):
            for step in work:
                add(step)
            break
    return steps


def _module_work(module: ModuleState, module_id: uuid.UUID | None, now: datetime) -> list[PlannedStep]:
    """A module's remaining work: lessons to study, quizzes to take or retry, assignments."""
    where = f"in \u201c{_clip(module.title)}\u201d" if module_id else "for the whole course"
    work = [PlannedStep(StepKind.STUDY_LESSON, Difficulty.CORE, module_id,
                        f"Next {where}: you have not completed this lesson yet.", lesson_id=lesson.id)
            for lesson in module.lessons if not lesson.completed]
    for quiz in module.quizzes:
        if quiz.passed or not quiz.can_attempt(now):
            continue
        if quiz.taken:
            work.append(PlannedStep(StepKind.RETRY_QUIZ, _quiz_difficulty(quiz), module_id,
                                    _retry_reason(quiz, None), quiz_id=quiz.id))
            continue
        hard = ""
        if quiz.hard:
            hard = " A challenge: " + ("it allows one attempt." if quiz.max_attempts == 1
                                       else f"{_pct(quiz.passing_percent)}% is needed to pass.")
        work.append(PlannedStep(StepKind.TAKE_QUIZ, _quiz_difficulty(quiz), module_id,
                                f"Check what you learned {where}; {_pct(quiz.passing_percent)}% passes.{hard}",
                                quiz_id=quiz.id))
    for assignment in module.assignments:
        if assignment.submitted or not assignment.open(now):
            continue
        due = f", due {assignment.due_at:%d %b %Y}" if assignment.due_at else ""
        work.append(PlannedStep(StepKind.SUBMIT_ASSIGNMENT, Difficulty.CHALLENGE, module_id,
                                f"Put what you learned {where} to work{due}.", assignment_id=assignment.id))
    return work


# ---------------------------------------------------------------------------------- generating


def _lock(user_id: uuid.UUID, course_id: uuid.UUID) -> None:
    db.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                       {"key": f"learning-path:{user_id}:{course_id}"})


def _enrolment(user_id: uuid.UUID, course_id: uuid.UUID):
    """(course grading, enrolment status) in one statement; NotFound for a student not enrolled."""
    row = db.session.execute(
        select(Course.grading, Enrollment.status)
        .join(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == user_id))
        .where(Course.id == course_id)
    ).first()
    if row is None or row.status == EnrollmentStatus.LEFT:
        raise NotFound("You are not enrolled in that course.")
    return row


def _build(user_id: uuid.UUID, course_id: uuid.UUID, grading: dict | None, now: datetime) -> LearningPath:
    topics = topic_stats(user_id, course_id, grading)
    modules, course_wide = _course_state(user_id, course_id)
    planned = plan(topics, modules, course_wide, now)
    empty = not planned
    path = LearningPath(user_id=user_id, course_id=course_id, generated_at=now, steps_done=0,
                        steps_total=len(planned),
                        status=PathStatus.COMPLETED if empty else PathStatus.ACTIVE,
                        completed_at=now if empty else None)
    db.session.add(path)
    db.session.flush()
    if planned:
        db.session.add_all([
            PathStep(path_id=path.id, user_id=user_id, position=position, kind=step.kind,
                     difficulty=step.difficulty, module_id=step.module_id, lesson_id=step.lesson_id,
                     quiz_id=step.quiz_id, assignment_id=step.assignment_id, reason=step.reason,
                     status=StepStatus.PENDING)
            for position, step in enumerate(planned, start=1)])
        db.session.flush()
    return path


def generate_path(user_id: uuid.UUID, course_id: uuid.UUID, *, now: datetime | None = None) -> LearningPath:
    """Replace the student's active path for the course (if any) with a new one. A path with
    nothing to do is stored as completed at once ("all caught up")."""
    now = now or base.utcnow()
    _lock(user_id, course_id)
    row = _enrolment(user_id, course_id)
    db.session.execute(
        update(LearningPath)
        .where(LearningPath.user_id == user_id, LearningPath.course_id == course_id,
               LearningPath.status == PathStatus.ACTIVE)
        .values(status=PathStatus.REPLACED, updated_at=now)
        .execution_options(synchronize_session=False))
    return _build(user_id, course_id, row.grading, now)


def current_path(user_id: uuid.UUID, course_id: uuid.UUID) -> LearningPath | None:
    """The active path, else the latest one (completed or replaced); one statement."""
    return db.session.scalar(
        select(LearningPath)
        .where(LearningPath.user_id == user_id, LearningPath.course_id == course_id)
        .order_by((LearningPath.status == PathStatus.ACTIVE).desc(), LearningPath.generated_at.desc(),
                  LearningPath.id)
        .limit(1)
        .execution_options(populate_existing=True))


def ensure_path(user_id: uuid.UUID, course_id: uuid.UUID, *, now: datetime | None = None) -> tuple[LearningPath, bool]:
    """The student's current path, generated on the first visit; (path, created). Two first
    visits at once make one path: the second waits for the first's lock and finds its path."""
    path = current_path(user_id, course_id)
    if path is not None:
        return path, False
    now = now or base.utcnow()
    _lock(user_id, course_id)
    path = current_path(user_id, course_id)
    if path is not None:
        return path, False
    row = _enrolment(user_id, course_id)
    return _build(user_id, course_id, row.grading, now), True


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class StepView:
    step: PathStep
    module_title: str | None
    target_title: str

    @property
    def done(self) -> bool:
        return self.step.status == StepStatus.DONE


def steps_of(path: LearningPath) -> list[StepView]:
    """The path's steps in order with the titles of what they point at: one statement."""
    rows = db.session.execute(
        select(PathStep, Module.title, Lesson.title, Quiz.title, Assignment.title)
        .outerjoin(Module, Module.id == PathStep.module_id)
        .outerjoin(Lesson, Lesson.id == PathStep.lesson_id)
        .outerjoin(Quiz, Quiz.id == PathStep.quiz_id)
        .outerjoin(Assignment, Assignment.id == PathStep.assignment_id)
        .where(PathStep.path_id == path.id)
        .order_by(PathStep.position)
        # Steps may have been completed by a statement earlier in this unit of work.
        .execution_options(populate_existing=True)
    ).all()
    return [StepView(step, module_title, lesson_title or quiz_title or assignment_title or "")
            for step, module_title, lesson_title, quiz_title, assignment_title in rows]


# ---------------------------------------------------------------------------------- completing


def improved_on_earlier(attempt: QuizAttempt) -> bool:
    """A graded attempt that scored better than every earlier graded attempt at the quiz (the
    first graded attempt counts as better than nothing)."""
    if attempt.status != AttemptStatus.GRADED or attempt.percent is None:
        return False
    earlier = db.session.scalar(
        select(func.max(QuizAttempt.percent))
        .where(QuizAttempt.quiz_id == attempt.quiz_id, QuizAttempt.user_id == attempt.user_id,
               QuizAttempt.number < attempt.number, QuizAttempt.status == AttemptStatus.GRADED))
    return earlier is None or attempt.percent > earlier


def complete_steps(user_id: uuid.UUID, *, lesson_id: uuid.UUID | None = None, quiz_id: uuid.UUID | None = None,
                   quiz_module_id: uuid.UUID | None = None, submitted: bool = False, passed: bool = False,
                   improved: bool = False, assignment_id: uuid.UUID | None = None,
                   review_step_id: uuid.UUID | None = None, now: datetime | None = None) -> int:
    """Mark the student's pending steps on their active paths that this work finishes as done,
    count them on their paths and complete the paths whose steps are all done. One statement;
    returns how many steps it marked.

    - ``lesson_id``: that lesson was completed (studying or reviewing it is done);
    - ``quiz_id`` with ``submitted``: an attempt was handed in (taking the quiz is done); with
      ``passed`` or ``improved`` (better than every earlier attempt): retrying it is done too;
      ``passed`` also ends the reviews of the quiz's module (``quiz_module_id``);
    - ``assignment_id``: work was submitted;
    - ``review_step_id``: the student marked that review step as read.

    The steps are updated first and their paths after, each path row locked by its UPDATE: an
    event on the same path at the same moment waits, then adds its own steps to the count the
    first one committed (a step already done is not matched again)."""
    now = now or base.utcnow()
    matches = []
    if lesson_id is not None:
        matches.append(and_(PathStep.kind.in_((StepKind.REVIEW_LESSON, StepKind.STUDY_LESSON)),
                            PathStep.lesson_id == lesson_id))
    if quiz_id is not None:
        kinds = []
        if submitted or passed:
            kinds.append(StepKind.TAKE_QUIZ)
        if passed or improved:
            kinds.append(StepKind.RETRY_QUIZ)
        if kinds:
            matches.append(and_(PathStep.kind.in_(kinds), PathStep.quiz_id == quiz_id))
        if passed and quiz_module_id is not None:
            matches.append(and_(PathStep.kind == StepKind.REVIEW_LESSON, PathStep.module_id == quiz_module_id))
    if assignment_id is not None:
        matches.append(and_(PathStep.kind == StepKind.SUBMIT_ASSIGNMENT, PathStep.assignment_id == assignment_id))
    if review_step_id is not None:
        matches.append(and_(PathStep.kind == StepKind.REVIEW_LESSON, PathStep.id == review_step_id))
    if not matches:
        return 0
    active = select(LearningPath.id).where(LearningPath.user_id == user_id, LearningPath.status == PathStatus.ACTIVE)
    done = (
        update(PathStep)
        .where(PathStep.user_id == user_id, PathStep.status == StepStatus.PENDING, PathStep.path_id.in_(active),
               or_(*matches))
        .values(status=StepStatus.DONE, completed_at=now, updated_at=now)
        .returning(PathStep.path_id)
        .cte("done_steps")
    )
    counts = select(done.c.path_id, func.count().label("n")).group_by(done.c.path_id).subquery("counts")
    new_done = LearningPath.steps_done + counts.c.n
    finished = and_(LearningPath.status == PathStatus.ACTIVE, new_done >= LearningPath.steps_total)
    rows = db.session.execute(
        update(LearningPath)
        .where(LearningPath.id == counts.c.path_id)
        .values(steps_done=new_done,
                status=case((finished, PathStatus.COMPLETED), else_=LearningPath.status),
                completed_at=case((finished, now), else_=LearningPath.completed_at),
                updated_at=now)
        .returning(counts.c.n)
        .execution_options(synchronize_session=False)
    ).all()
    return sum(row.n for row in rows)


def mark_reviewed(user_id: uuid.UUID, course_id: uuid.UUID, step_id: uuid.UUID) -> LearningPath:
    """The student says they have read a review step's lesson again. Only their own pending
    review steps on their active path of this course; anything else is NotFound."""
    found = db.session.scalar(
        select(PathStep.id).join(LearningPath, LearningPath.id == PathStep.path_id)
        .where(PathStep.id == step_id, PathStep.user_id == user_id, LearningPath.user_id == user_id,
               LearningPath.course_id == course_id, PathStep.kind == StepKind.REVIEW_LESSON))
    if found is None:
        raise NotFound("That step is not a review on your path.")
    complete_steps(user_id, review_step_id=step_id)
    return current_path(user_id, course_id)


def student_course(user_id: uuid.UUID, slug: str) -> Course:
    """The published course of ``slug`` that the student is enrolled in (active or completed).
    NotFound when there is no such course, Forbidden when the student is not enrolled."""
    row = db.session.execute(
        select(Course, Enrollment.status)
        .outerjoin(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == user_id))
        .where(Course.slug == slug[:80])
    ).first()
    if row is None or row[0].status != CourseStatus.PUBLISHED:
        raise NotFound("There is no such course in the catalog.")
    if row[1] is None or row[1] == EnrollmentStatus.LEFT:
        raise Forbidden(f"Enrol in \u201c{row[0].title}\u201d to get your learning path.")
    return row[0]
