"""Courses, their modules and lessons, enrolments, lesson progress and achievements
(spec service 10, Azora Education)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import TimestampedModel
from portal.db.types import string_enum

#: Text-search configurations a course may be written in (PostgreSQL's built-in snowball
#: stemmers; ``simple`` only folds case, for languages without one).
COURSE_LANGUAGES: dict[str, str] = {
    "english": "English", "french": "French", "german": "German", "spanish": "Spanish",
    "portuguese": "Portuguese", "italian": "Italian", "dutch": "Dutch", "simple": "Other",
}


class CourseLevel(enum.StrEnum):
    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


class CourseStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


#: Allowed course status changes, in one place.
COURSE_TRANSITIONS: dict[CourseStatus, frozenset[CourseStatus]] = {
    CourseStatus.DRAFT: frozenset({CourseStatus.PUBLISHED, CourseStatus.ARCHIVED}),
    CourseStatus.PUBLISHED: frozenset({CourseStatus.DRAFT, CourseStatus.ARCHIVED}),
    CourseStatus.ARCHIVED: frozenset({CourseStatus.DRAFT}),
}


class Course(TimestampedModel):
    __tablename__ = "courses"

    #: URL name, unique: ``/learning/courses/<slug>``.
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    title: Mapped[str] = mapped_column(String(160))
    summary: Mapped[str] = mapped_column(String(500), default="")
    #: Markdown, rendered and sanitised for display.
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(60), index=True)
    level: Mapped[CourseLevel] = mapped_column(string_enum(CourseLevel, "level"), index=True)
    status: Mapped[CourseStatus] = mapped_column(string_enum(CourseStatus, "status"), default=CourseStatus.DRAFT,
                                                 index=True)
    estimated_hours: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The instructor shown in the catalog (also an ``owner`` in course_managements).
    instructor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    # Completion rules: what a student must do for the course to count as completed.
    requires_all_lessons: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    requires_quizzes_passed: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    requires_assignments_submitted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: How the gradebook weighs items: ``{"weights": {"assignments": 60, "quizzes": 40},
    #: "drop_lowest": {"quizzes": 0}, "letters": [["A", 90], ["B", 80], ...]}`` (empty: defaults).
    grading: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    #: The language the lessons are written in: the text-search configuration (stemming, stop
    #: words) the tutor searches them with; one of ``COURSE_LANGUAGES``.
    language: Mapped[str] = mapped_column(String(20), default="english", server_default="english")
    #: Full-text search over title, summary, category and description (weights A to D).
    #: The price of enrolling, in ``price_currency``; NULL or 0: free (the default). Set through
    #: ``portal.money.payments.services.set_course_price``, which checks the currency and scale.
    price: Mapped[Decimal | None] = mapped_column(Numeric(38, 18))
    price_currency: Mapped[str | None] = mapped_column(String(8))
    search: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(summary, '')), 'B') || "
            "setweight(to_tsvector('english', coalesce(category, '')), 'C') || "
            "setweight(to_tsvector('english', coalesce(description, '')), 'D')",
            persisted=True,
        ),
        deferred=True,
    )

    __table_args__ = (
        Index("ix_courses_search", "search", postgresql_using="gin"),
        CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name="slug_format"),
        CheckConstraint("language IN (" + ", ".join(f"'{name}'" for name in COURSE_LANGUAGES) + ")",
                        name="language_known"),
        CheckConstraint("\"estimatedHours\" IS NULL OR \"estimatedHours\" BETWEEN 1 AND 1000", name="hours_range"),
        CheckConstraint("(price IS NULL) = (\"priceCurrency\" IS NULL)", name="price_has_currency"),
        CheckConstraint("price IS NULL OR price >= 0", name="price_not_negative"),
        CheckConstraint("\"priceCurrency\" IS NULL OR \"priceCurrency\" ~ '^[A-Z]{3,8}$'", name="price_currency_code"),
    )

    @property
    def is_paid(self) -> bool:
        return self.price is not None and self.price > 0


class Module(TimestampedModel):
    __tablename__ = "modules"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    #: Order inside the course, from 1.
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(160))
    summary: Mapped[str] = mapped_column(String(500), default="")
    #: The module opens only when the previous one is passed (its lessons done, quizzes passed).
    requires_previous: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    __table_args__ = (
        UniqueConstraint("course_id", "position", deferrable=True, initially="DEFERRED"),
        CheckConstraint("position >= 1", name="position_positive"),
    )


class Lesson(TimestampedModel):
    __tablename__ = "lessons"

    module_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"), index=True)
    #: The module's course, kept here so course-wide progress needs no join.
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    #: Order inside the module, from 1.
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(160))
    #: Markdown, rendered and sanitised for display.
    body: Mapped[str] = mapped_column(Text, default="")
    estimated_minutes: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("module_id", "position", deferrable=True, initially="DEFERRED"),
        CheckConstraint("position >= 1", name="position_positive"),
        CheckConstraint("\"estimatedMinutes\" IS NULL OR \"estimatedMinutes\" BETWEEN 1 AND 600",
                        name="minutes_range"),
    )


class EnrollmentStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    LEFT = "left"


ENROLLMENT_TRANSITIONS: dict[EnrollmentStatus, frozenset[EnrollmentStatus]] = {
    EnrollmentStatus.ACTIVE: frozenset({EnrollmentStatus.COMPLETED, EnrollmentStatus.LEFT}),
    EnrollmentStatus.COMPLETED: frozenset(),
    EnrollmentStatus.LEFT: frozenset({EnrollmentStatus.ACTIVE}),
}


class Enrollment(TimestampedModel):
    __tablename__ = "enrollments"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[EnrollmentStatus] = mapped_column(string_enum(EnrollmentStatus, "status"),
                                                     default=EnrollmentStatus.ACTIVE, index=True)
    #: Lessons completed out of the course's lessons, 0 to 100, kept current by the services.
    progress_percent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Where "continue where you left off" goes.
    last_lesson_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"),
                                                            index=True)
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    course: Mapped[Course] = relationship(lazy="raise")

    __table_args__ = (
        UniqueConstraint("course_id", "user_id"),
        CheckConstraint("\"progressPercent\" BETWEEN 0 AND 100", name="progress_range"),
        CheckConstraint("status <> 'completed' OR \"completedAt\" IS NOT NULL", name="completed_has_time"),
        Index("ix_enrollments_userId_lastActivityAt", "user_id", "last_activity_at"),
    )


class Progress(TimestampedModel):
    """One row per lesson a student has opened; ``completedAt`` once they mark it complete."""

    __tablename__ = "progress"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    lesson_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    first_viewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("user_id", "lesson_id"),
        Index("ix_progress_userId_courseId", "user_id", "course_id"),
    )


class AchievementKind(enum.StrEnum):
    FIRST_LESSON = "first_lesson"
    COURSE_COMPLETED = "course_completed"
    PERFECT_QUIZ = "perfect_quiz"
    STREAK_7 = "streak_7"


class Achievement(TimestampedModel):
    __tablename__ = "achievements"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[AchievementKind] = mapped_column(string_enum(AchievementKind, "kind", 30))
    #: The course it was earned in, for per-course achievements; NULL for the portal-wide ones.
    course_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(160))
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Each achievement once per user (and course): NULL course ids count as equal.
        UniqueConstraint("user_id", "kind", "course_id", postgresql_nulls_not_distinct=True),
    )
