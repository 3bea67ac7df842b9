"""Demo data for the learning area: the three courses of ``demo_content`` with their quizzes and
assignments, taught by the demo faculty member, and students at varied progress (lessons done,
submissions waiting to be graded).

Idempotent: a course whose slug exists is left as it is.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.learning import demo_content
from portal.learning.assessment.models import (
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizQuestion,
    ShortAnswerMatch,
)
from portal.learning.education.models import (
    Achievement,
    AchievementKind,
    Course,
    CourseLevel,
    CourseStatus,
    Enrollment,
    Lesson,
    Module,
    Progress,
)
from portal.learning.lms.models import Assignment, CourseManagement, ManagementRole, Submission

#: How far each demo student has got: (student index, course index, lessons completed,
#: submitted the assignment). Lessons are counted in course order.
JOURNEYS = [
    (0, 0, 2, False),
    (1, 0, 4, True),
    (1, 1, 3, False),
    (2, 1, 7, True),
    (3, 2, 1, False),
    (4, 2, 6, True),
    (5, 0, 0, False),
]


def _rubric(spec: demo_content.AssignmentSpec) -> list[dict]:
    return [
        {
            "id": uuid.uuid4().hex[:12],
            "title": criterion.title,
            "description": criterion.description,
            "levels": [{"id": uuid.uuid4().hex[:12], "title": level.title, "description": level.description,
                        "points": level.points} for level in criterion.levels],
        }
        for criterion in spec.criteria
    ]


def _question(quiz: Quiz, position: int, spec: demo_content.QuestionSpec) -> QuizQuestion:
    question = QuizQuestion(
        quiz_id=quiz.id, position=position, kind=QuestionKind(spec.kind), prompt=spec.prompt,
        points=Decimal(spec.points),
        # Essays keep their grading guide where graders read it; other kinds their explanation.
        feedback=spec.grading_guide if spec.kind == "essay" else spec.feedback,
        accepted_answers=list(spec.stored_answers), match=ShortAnswerMatch(spec.match_mode) if spec.match_mode else None,
        numeric_answer=spec.answer, numeric_tolerance=spec.tolerance,
    )
    db.session.add(question)
    db.session.flush()
    for index, option in enumerate(spec.options, start=1):
        db.session.add(QuestionOption(question_id=question.id, position=index, text=option.text,
                                      is_correct=option.is_correct, feedback=option.feedback))
    return question


def _course(spec: demo_content.CourseSpec, teacher: User) -> tuple[Course, list[Lesson], Assignment]:
    now = utcnow()
    course = Course(
        slug=spec.slug, title=spec.title, summary=spec.summary, description=spec.description,
        category=spec.category, level=CourseLevel(spec.level), status=CourseStatus.PUBLISHED,
        estimated_hours=spec.estimated_hours, published_at=now, instructor_id=teacher.id,
        requires_all_lessons=True, requires_quizzes_passed=True, requires_assignments_submitted=True,
    )
    db.session.add(course)
    db.session.flush()
    db.session.add(CourseManagement(course_id=course.id, user_id=teacher.id, role=ManagementRole.OWNER))
    modules, lessons = [], []
    for m_index, module_spec in enumerate(spec.modules, start=1):
        module = Module(course_id=course.id, position=m_index, title=module_spec.title, summary=module_spec.summary,
                        requires_previous=m_index == len(spec.modules) and m_index > 1)
        db.session.add(module)
        db.session.flush()
        modules.append(module)
        for l_index, lesson_spec in enumerate(module_spec.lessons, start=1):
            lesson = Lesson(module_id=module.id, course_id=course.id, position=l_index, title=lesson_spec.title,
                            body=lesson_spec.body, estimated_minutes=lesson_spec.estimated_minutes)
            db.session.add(lesson)
            lessons.append(lesson)
    for quiz_spec in spec.quizzes:
        quiz = Quiz(course_id=course.id, module_id=modules[quiz_spec.module_index].id, title=quiz_spec.title,
                    description=quiz_spec.description, time_limit_minutes=quiz_spec.time_limit_minutes,
                    max_attempts=quiz_spec.max_attempts, passing_percent=Decimal(quiz_spec.passing_score),
                    published=True)
        db.session.add(quiz)
        db.session.flush()
        for position, question_spec in enumerate(quiz_spec.questions, start=1):
            _question(quiz, position, question_spec)
    a_spec = spec.assignment
    assignment = Assignment(
        course_id=course.id, module_id=modules[a_spec.module_index].id, title=a_spec.title,
        instructions=a_spec.instructions, points=Decimal(a_spec.points), due_at=now + timedelta(days=7),
        cutoff_at=now + timedelta(days=10), late_penalty_percent_per_day=Decimal(10),
        late_penalty_floor_percent=Decimal(50), allow_text=True, allow_files=True,
        allowed_extensions=["pdf", "txt", "md"], rubric=_rubric(a_spec), published=True,
    )
    db.session.add(assignment)
    db.session.flush()
    return course, lessons, assignment


def _journey(student: User, course: Course, lessons: list[Lesson], assignment: Assignment, done: int,
             submitted: bool) -> None:
    now = utcnow()
    start = now - timedelta(days=len(lessons) + 2)
    enrollment = Enrollment(course_id=course.id, user_id=student.id,
                            progress_percent=round(100 * done / len(lessons)) if lessons else 0,
                            last_lesson_id=lessons[min(done, len(lessons) - 1)].id if lessons else None,
                            last_activity_at=start + timedelta(days=done))
    db.session.add(enrollment)
    for index, lesson in enumerate(lessons[:done]):
        moment = start + timedelta(days=index)
        db.session.add(Progress(user_id=student.id, lesson_id=lesson.id, course_id=course.id,
                                first_viewed_at=moment, completed_at=moment + timedelta(minutes=20)))
    if submitted:
        db.session.add(Submission(
            assignment_id=assignment.id, user_id=student.id, submitted_at=now - timedelta(hours=5),
            text_answer=f"{student.full_name}'s submission for \u201c{assignment.title}\u201d.\n\n"
                        "I followed the instructions step by step; my notes and results are below.",
        ))


def seed_learning(teacher: User, students: list[User]) -> int:
    """Create what is missing; returns how many courses were created."""
    existing = set(db.session.scalars(select(Course.slug)))
    created = []
    for spec in demo_content.COURSES:
        if spec.slug in existing:
            continue
        created.append(_course(spec, teacher))
    if created and students:
        for student_index, course_index, done, submitted in JOURNEYS:
            if student_index < len(students) and course_index < len(created):
                course, lessons, assignment = created[course_index]
                _journey(students[student_index], course, lessons, assignment, done, submitted)
        _first_lesson_achievements(students)
    db.session.flush()
    return len(created)


def _first_lesson_achievements(students: list[User]) -> None:
    """The "first lesson" achievement for each demo student who has completed one."""
    done = db.session.execute(
        select(Progress.user_id, Progress.completed_at)
        .where(Progress.user_id.in_([s.id for s in students]), Progress.completed_at.is_not(None))
        .order_by(Progress.completed_at)
    ).all()
    first: dict[uuid.UUID, object] = {}
    for user_id, moment in done:
        first.setdefault(user_id, moment)
    for user_id, moment in first.items():
        db.session.add(Achievement(user_id=user_id, kind=AchievementKind.FIRST_LESSON, course_id=None,
                                   title="First lesson completed", earned_at=moment))
