"""Demo data for the learning area: the courses of ``demo_content`` (written as Markdown and TOML
files under ``demo_courses/``) with their quizzes and assignments, taught by the demo faculty
member, and students at varied progress (lessons done, submissions waiting to be graded).

Idempotent: a course whose slug exists is left as it is.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert, select

from portal.accounts.models import Faculty, Role, User, UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.learning import demo_content
from portal.learning.assessment import gradebook
from portal.learning.assessment.models import (
    Answer,
    AttemptStatus,
    Gradebook,
    GradebookStatus,
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizAttempt,
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
    EnrollmentStatus,
    Lesson,
    Module,
    Progress,
)
from portal.learning.lms.models import (
    Assignment,
    CourseManagement,
    Grade,
    ManagementRole,
    Submission,
    SubmissionStatus,
)

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
    _index_for_tutor()
    _insights_and_paths(students)
    return len(created)


def _insights_and_paths(students: list[User]) -> None:
    """The demo students' quiz attempts, insights and learning paths: every run, so a database
    seeded before paths existed gets them too (each part is idempotent)."""
    from portal.learning.tutoring.demo import seed_insights_and_paths

    if students:
        seed_insights_and_paths(students, [spec.slug for spec in demo_content.COURSES])


def _index_for_tutor() -> None:
    """(Re)build the tutor's passages of the demo courses: every run, so a database seeded before
    the tutor existed gets them too (rebuilding replaces, so seeding stays idempotent)."""
    from portal.learning.tutoring.passages import reindex_course

    slugs = [spec.slug for spec in demo_content.COURSES]
    for course in db.session.scalars(select(Course).where(Course.slug.in_(slugs))).all():
        reindex_course(course)


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


# ---------------------------------------------------------------------------------- at scale
#
# ``flask seed-demo --scale N`` with a large N: a catalog of about a thousand courses (titles and
# summaries made from word lists, so that searching means something) and one large course with
# hundreds of students, each with grades, submissions and graded quiz attempts. Rows are written
# with multi-row INSERTs in batches; random choices come from generators seeded per row, so a
# second run makes the same slugs and adds nothing.

LARGE_COURSE_SLUG = "statistics-at-scale"
CATALOG_SLUG_PREFIX = "c"
BATCH = 1000

#: (subject, category).
SUBJECTS = [
    ("Linear Algebra", "Mathematics"), ("Calculus", "Mathematics"), ("Probability", "Mathematics"),
    ("Number Theory", "Mathematics"), ("Statistics", "Data"), ("Data Visualisation", "Data"),
    ("Machine Learning", "Data"), ("Data Engineering", "Data"), ("Web Development", "Computer Science"),
    ("Databases", "Computer Science"), ("Cybersecurity", "Computer Science"), ("Operating Systems", "Computer Science"),
    ("Cloud Computing", "Computer Science"), ("Accounting", "Finance"), ("Corporate Finance", "Finance"),
    ("Personal Investing", "Finance"), ("Marketing", "Business"), ("Project Management", "Business"),
    ("Entrepreneurship", "Business"), ("Economics", "Business"), ("Renaissance Art", "Arts"),
    ("Music Theory", "Arts"), ("Photography", "Arts"), ("Graphic Design", "Arts"),
    ("Creative Writing", "Languages"), ("Spanish", "Languages"), ("isiZulu", "Languages"),
    ("Swahili", "Languages"), ("Organic Chemistry", "Science"), ("Astronomy", "Science"),
    ("Ecology", "Science"), ("Genetics", "Science"), ("World History", "Humanities"),
    ("African History", "Humanities"), ("Philosophy", "Humanities"), ("Psychology", "Humanities"),
    ("Public Health", "Health"), ("Nutrition", "Health"), ("First Aid", "Health"),
    ("Sustainable Agriculture", "Environment"), ("Climate Science", "Environment"), ("Renewable Energy", "Environment"),
]
PREFIXES = ["Introduction to", "Foundations of", "Practical", "Applied", "Advanced", "Modern", "Essentials of",
            "Hands-on", "Principles of", "Topics in", "A Short Course in", "Understanding"]
SUFFIXES = ["", "", "for Beginners", "for Professionals", "for Managers", "in Practice", "with Python",
            "for Teachers", "Workshop", "Bootcamp", "through Case Studies", "in Everyday Life"]
OPENINGS = ["Learn the core ideas of", "Build real projects in", "Get to grips with", "Master the tools of",
            "Take your first steps in", "Deepen your knowledge of", "Explore", "Apply"]
KEYWORDS = ["regression", "visualisation", "budgeting", "ethics", "teamwork", "spreadsheets", "case studies",
            "fieldwork", "experiments", "storytelling", "negotiation", "research methods", "sampling",
            "algorithms", "security", "design thinking", "leadership", "communication", "modelling",
            "forecasting", "pronunciation", "grammar", "composition", "colour", "lighting", "soil", "energy",
            "networks", "privacy", "probability", "proofs", "history", "policy", "community", "nutrition",
            "wellbeing", "markets", "pricing", "sustainability", "automation"]
INSTRUCTORS = ["Thandiwe Mokoena", "Kwame Asante", "Amara Okafor", "Lindiwe Dlamini", "Tariq Hassan",
               "Nomvula Khumalo", "Samuel Mensah", "Zanele Ndlovu"]
LEVELS = list(CourseLevel)
STATEMENTS = [
    ("The mean is always larger than the median.", False),
    ("A standard deviation cannot be negative.", True),
    ("Correlation on its own proves causation.", False),
    ("A larger random sample usually gives a more precise estimate.", True),
    ("A p-value is the probability that the null hypothesis is true.", False),
    ("The median is less affected by outliers than the mean.", True),
    ("A histogram shows the distribution of a numeric variable.", True),
    ("Two independent events can never happen together.", False),
]


@dataclass
class ScaleCounts:
    """What one run of ``seed_learning_scale`` created."""

    instructors: int = 0
    catalog_courses: int = 0
    large_course: bool = False
    enrolments: int = 0
    submissions: int = 0
    grades: int = 0
    attempts: int = 0


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _insert(model, rows: list[dict]) -> None:
    for first in range(0, len(rows), BATCH):
        db.session.execute(insert(model), rows[first:first + BATCH])


def _stamped(row: dict, at: datetime) -> dict:
    row.setdefault("id", uuid.uuid4())
    row.setdefault("created_at", at)
    row.setdefault("updated_at", at)
    return row


def _catalog_instructors(password_hash: str, counts: ScaleCounts) -> list[uuid.UUID]:
    """The catalog's instructors (faculty accounts ``catalog-faculty-N@azora.example``)."""
    emails = [f"catalog-faculty-{n + 1}@azora.example" for n in range(len(INSTRUCTORS))]
    have = dict(db.session.execute(select(User.email, User.id).where(User.email.in_(emails))).all())
    now = utcnow()
    users, faculty = [], []
    for email, name in zip(emails, INSTRUCTORS, strict=True):
        if email in have:
            continue
        uid = uuid.uuid4()
        have[email] = uid
        users.append(_stamped({"id": uid, "email": email, "full_name": name, "password_hash": password_hash,
                               "role": Role.FACULTY, "status": UserStatus.ACTIVE, "email_verified_at": now,
                               "password_changed_at": now}, now))
        faculty.append(_stamped({"user_id": uid, "department": "Open Learning", "title": "Lecturer"}, now))
    if users:
        _insert(User, users)
        _insert(Faculty, faculty)
    counts.instructors = len(users)
    return [have[email] for email in emails]


def catalog_spec(n: int) -> dict:
    """The ``n``-th generated catalog course (the same every run)."""
    rng = random.Random(f"catalog-{n}")
    subject, category = rng.choice(SUBJECTS)
    title = " ".join(part for part in (rng.choice(PREFIXES), subject, rng.choice(SUFFIXES)) if part)
    words = rng.sample(KEYWORDS, 4)
    summary = f"{rng.choice(OPENINGS)} {subject.lower()}: {words[0]}, {words[1]} and {words[2]}."
    description = (f"## About this course\n\n{summary} Every week brings a short reading, a worked example "
                   f"about {words[3]} and a practice task.\n\n## You will\n\n"
                   + "".join(f"- practise {word}\n" for word in words))
    slug = f"{CATALOG_SLUG_PREFIX}{n:04d}-{_slugify(title)}"[:80].rstrip("-")
    return {"n": n, "slug": slug, "title": title, "summary": summary, "description": description, "category": category,
            "level": LEVELS[n % len(LEVELS)], "estimated_hours": rng.randint(2, 60),
            "days_ago": rng.randint(1, 700), "minutes": rng.randint(10, 90)}


def _seed_catalog(count: int, instructors: list[uuid.UUID], counts: ScaleCounts, progress) -> None:
    specs = [catalog_spec(n) for n in range(1, count + 1)]
    existing = set(db.session.scalars(select(Course.slug).where(Course.slug.in_([s["slug"] for s in specs]))))
    missing = [s for s in specs if s["slug"] not in existing]
    if progress is not None and count - len(missing):
        progress.update(count - len(missing))
    now = utcnow()
    for first in range(0, len(missing), BATCH):
        courses, managers, modules, lessons = [], [], [], []
        for spec in missing[first:first + BATCH]:
            teacher = instructors[spec["n"] % len(instructors)] if instructors else None
            published = now - timedelta(days=spec["days_ago"])
            course = _stamped({
                "slug": spec["slug"], "title": spec["title"], "summary": spec["summary"],
                "description": spec["description"], "category": spec["category"], "level": spec["level"],
                "status": CourseStatus.PUBLISHED, "estimated_hours": spec["estimated_hours"],
                "published_at": published, "instructor_id": teacher, "requires_all_lessons": True,
                "requires_quizzes_passed": False, "requires_assignments_submitted": False,
            }, published)
            courses.append(course)
            if teacher is not None:
                managers.append(_stamped({"course_id": course["id"], "user_id": teacher,
                                          "role": ManagementRole.OWNER}, published))
            module = _stamped({"course_id": course["id"], "position": 1, "title": "Getting started",
                               "summary": f"The first steps in {spec['title'].lower()}.",
                               "requires_previous": False}, published)
            modules.append(module)
            lessons.append(_stamped({
                "module_id": module["id"], "course_id": course["id"], "position": 1,
                "title": f"Welcome to {spec['title']}"[:160],
                "body": f"# Welcome\n\n{spec['summary']}\n\nStart with the reading list, then try the first task.",
                "estimated_minutes": spec["minutes"]}, published))
        _insert(Course, courses)
        _insert(CourseManagement, managers)
        _insert(Module, modules)
        _insert(Lesson, lessons)
        db.session.flush()
        counts.catalog_courses += len(courses)
        if progress is not None:
            progress.update(len(courses))


def _cents(value) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"))


def _seed_large_course(teacher: User, students: list[uuid.UUID], assignments: int, quizzes: int,
                       questions: int, counts: ScaleCounts, progress) -> None:
    """One published course with every student enrolled, ``assignments`` graded assignments and
    ``quizzes`` quizzes with graded attempts: a full gradebook."""
    if db.session.scalar(select(Course.id).where(Course.slug == LARGE_COURSE_SLUG)) is not None:
        if progress is not None:
            progress.update(len(students))
        return
    now = utcnow()
    start = now - timedelta(days=3 * (assignments + 2))
    course = _stamped({
        "slug": LARGE_COURSE_SLUG, "title": "Statistics at Scale",
        "summary": "Descriptive statistics, sampling and inference, practised on real data sets every week.",
        "description": "## About this course\n\nA large course: weekly problem sets and quizzes on statistics, "
                       "from describing data to testing hypotheses.",
        "category": "Data", "level": CourseLevel.INTERMEDIATE, "status": CourseStatus.PUBLISHED,
        "estimated_hours": 90, "published_at": start, "instructor_id": teacher.id,
        "requires_all_lessons": True, "requires_quizzes_passed": True, "requires_assignments_submitted": True,
    }, start)
    _insert(Course, [course])
    course_id = course["id"]
    _insert(CourseManagement, [_stamped({"course_id": course_id, "user_id": teacher.id,
                                         "role": ManagementRole.OWNER}, start)])
    module_titles = ["Describing data", "Sampling", "Inference"]
    modules = [_stamped({"course_id": course_id, "position": m + 1, "title": title, "summary": "",
                         "requires_previous": False}, start) for m, title in enumerate(module_titles)]
    _insert(Module, modules)
    lessons = [_stamped({"module_id": module["id"], "course_id": course_id, "position": p + 1,
                         "title": f"{module['title']}: part {p + 1}",
                         "body": f"# {module['title']}, part {p + 1}\n\nRead, then work through the examples.",
                         "estimated_minutes": 30}, start)
               for module in modules for p in range(2)]
    _insert(Lesson, lessons)

    assignment_rows = []
    for i in range(assignments):
        due = now - timedelta(days=3 * (assignments - i))
        assignment_rows.append(_stamped({
            "course_id": course_id, "module_id": modules[i * len(modules) // max(assignments, 1)]["id"],
            "title": f"Problem set {i + 1:02d}", "instructions": "Answer every question; show your working.",
            "points": Decimal(10 if i % 2 == 0 else 20), "due_at": due, "cutoff_at": due + timedelta(days=2),
            "late_penalty_percent_per_day": Decimal(10), "late_penalty_floor_percent": Decimal(50),
            "allow_text": True, "allow_files": False, "allowed_extensions": [], "rubric": [], "extensions": {},
            "published": True}, start))
    _insert(Assignment, assignment_rows)

    quiz_rows, question_rows, option_rows = [], [], []
    layouts: dict[uuid.UUID, tuple[list[dict], dict]] = {}
    for i in range(quizzes):
        quiz = _stamped({"course_id": course_id, "module_id": modules[i * len(modules) // max(quizzes, 1)]["id"],
                         "title": f"Quiz {i + 1:02d}", "description": "True or false: one point each.",
                         "max_attempts": 3, "passing_percent": Decimal(60), "published": True}, start)
        quiz_rows.append(quiz)
        quiz_questions = []
        for q in range(questions):
            prompt, truth = STATEMENTS[(i + q) % len(STATEMENTS)]
            question = _stamped({"quiz_id": quiz["id"], "position": q + 1, "kind": QuestionKind.TRUE_FALSE,
                                 "prompt": prompt, "points": Decimal(1), "feedback": "", "accepted_answers": []},
                                start)
            options = [_stamped({"question_id": question["id"], "position": k + 1, "text": text,
                                 "is_correct": value == truth, "feedback": ""}, start)
                       for k, (text, value) in enumerate((("True", True), ("False", False)))]
            question_rows.append(question)
            option_rows.extend(options)
            quiz_questions.append({"id": question["id"], "options": [str(o["id"]) for o in options],
                                   "right": next(o["id"] for o in options if o["is_correct"]),
                                   "wrong": next(o["id"] for o in options if not o["is_correct"])})
        layout = {"questions": [str(q["id"]) for q in quiz_questions],
                  "options": {str(q["id"]): q["options"] for q in quiz_questions}}
        layouts[quiz["id"]] = (quiz_questions, layout)
    _insert(Quiz, quiz_rows)
    _insert(QuizQuestion, question_rows)
    _insert(QuestionOption, option_rows)
    db.session.flush()

    scheme = gradebook.Scheme.from_course({})
    items = ([gradebook.Item(gradebook.ASSIGNMENTS, a["id"], a["title"], a["points"]) for a in assignment_rows]
             + [gradebook.Item(gradebook.QUIZZES, q["id"], q["title"], None) for q in quiz_rows])
    step = 100
    for first in range(0, len(students), step):
        enrolments, progress_rows, submissions, grades, attempts, answers, books = [], [], [], [], [], [], []
        for user_id in students[first:first + step]:
            rng = random.Random(f"{LARGE_COURSE_SLUG}-{user_id}")
            done = rng.randint(0, len(lessons))
            for index, lesson in enumerate(lessons[:done]):
                moment = start + (now - start) * (index + rng.random()) / (len(lessons) + 1)
                progress_rows.append(_stamped({"user_id": user_id, "lesson_id": lesson["id"], "course_id": course_id,
                                               "first_viewed_at": moment,
                                               "completed_at": moment + timedelta(minutes=25)}, moment))
            enrolments.append(_stamped({
                "course_id": course_id, "user_id": user_id, "status": EnrollmentStatus.ACTIVE,
                "progress_percent": round(100 * done / len(lessons)),
                "last_lesson_id": lessons[min(done, len(lessons) - 1)]["id"],
                "last_activity_at": now - timedelta(days=rng.randint(0, 20))}, start))
            scores: dict[str, Decimal] = {}
            for assignment in assignment_rows:
                roll = rng.random()
                if roll >= 0.94:
                    continue  # never handed in
                late = rng.random() < 0.05
                submitted = assignment["due_at"] + (timedelta(hours=20) if late else -timedelta(hours=rng.randint(1, 72)))
                released = roll < 0.88
                submission = _stamped({
                    "assignment_id": assignment["id"], "user_id": user_id,
                    "status": SubmissionStatus.RELEASED if released else SubmissionStatus.SUBMITTED,
                    "text_answer": "My answers and working are below.", "submitted_at": submitted,
                    "version": 1, "days_late": 1 if late else 0}, submitted)
                submissions.append(submission)
                if not released:
                    continue
                raw = _cents(assignment["points"] * Decimal(rng.randint(45, 100)) / 100)
                penalty = _cents(raw * assignment["late_penalty_percent_per_day"] / 100) if late else Decimal(0)
                grades.append(_stamped({
                    "submission_id": submission["id"], "assignment_id": assignment["id"], "user_id": user_id,
                    "grader_id": teacher.id, "rubric_levels": {}, "raw_score": raw, "penalty": penalty,
                    "score": raw - penalty, "feedback": "Good work; see the worked solutions.",
                    "released_at": min(now, submitted + timedelta(days=3))}, submitted))
                scores[str(assignment["id"])] = raw - penalty
            percents: dict[str, Decimal] = {}
            for quiz in quiz_rows:
                if rng.random() >= 0.9:
                    continue
                quiz_questions, layout = layouts[quiz["id"]]
                best = None
                for number in range(1, rng.choice((1, 1, 1, 2)) + 1):
                    right = rng.randint(len(quiz_questions) // 3, len(quiz_questions))
                    began = start + timedelta(days=rng.randint(0, 3 * assignments), minutes=number * 90)
                    percent = _cents(Decimal(100 * right) / len(quiz_questions)) if quiz_questions else Decimal(0)
                    attempt = _stamped({
                        "quiz_id": quiz["id"], "user_id": user_id, "number": number, "status": AttemptStatus.GRADED,
                        "started_at": began, "submitted_at": began + timedelta(minutes=12), "layout": layout,
                        "score": Decimal(right), "max_score": Decimal(len(quiz_questions)), "percent": percent,
                        "passed": percent >= quiz["passing_percent"]}, began)
                    attempts.append(attempt)
                    for q, question in enumerate(quiz_questions):
                        correct = q < right
                        answers.append(_stamped({
                            "attempt_id": attempt["id"], "question_id": question["id"],
                            "selected_option_ids": [str(question["right"] if correct else question["wrong"])],
                            "saved_at": began + timedelta(minutes=q + 1), "points_awarded": Decimal(int(correct)),
                            "is_correct": correct}, began))
                    best = percent if best is None else max(best, percent)
                if best is not None:
                    percents[str(quiz["id"])] = best
            result = gradebook.compute(scheme, items, scores, percents)
            status = (GradebookStatus.IN_PROGRESS if result.percent is None else
                      GradebookStatus.PASSING if scheme.passing(result.percent) else GradebookStatus.FAILING)
            books.append(_stamped({"course_id": course_id, "user_id": user_id, "percent": result.percent,
                                   "letter": result.letter, "status": status}, now))
        _insert(Enrollment, enrolments)
        _insert(Progress, progress_rows)
        _insert(Submission, submissions)
        _insert(Grade, grades)
        _insert(QuizAttempt, attempts)
        _insert(Answer, answers)
        _insert(Gradebook, books)
        db.session.flush()
        counts.enrolments += len(enrolments)
        counts.submissions += len(submissions)
        counts.grades += len(grades)
        counts.attempts += len(attempts)
        if progress is not None:
            progress.update(len(enrolments))
    counts.large_course = True


def seed_learning_scale(teacher: User, students: list[uuid.UUID], password_hash: str, *, catalog: int = 1000,
                        assignments: int = 20, quizzes: int = 10, questions: int = 5,
                        progress=None) -> ScaleCounts:
    """The catalog of ``catalog`` generated courses (taught by the catalog instructors, whose
    accounts take ``password_hash``) and the large course owned by ``teacher`` with ``students``
    enrolled. Creates what is missing; ``progress.update(n)`` is called as courses and students
    are done (``catalog + len(students)`` in all)."""
    counts = ScaleCounts()
    instructors = _catalog_instructors(password_hash, counts)
    _seed_catalog(catalog, instructors, counts, progress)
    _seed_large_course(teacher, students, assignments, quizzes, questions, counts, progress)
    return counts
