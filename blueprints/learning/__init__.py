"""Learning for people: the catalog and lessons (students), course authoring (faculty),
quizzes, assignments and grading, the gradebook, and certificates anyone can verify.

One blueprint, a module per part: ``catalog`` (browse, enrol, study), ``manage`` (authoring and
co-instructors), ``quizzes``, ``assignments`` (submissions, grading, gradebook) and
``certificates``.
"""

from flask import Blueprint

bp = Blueprint("learning", __name__, url_prefix="/learning")

from blueprints.learning import (  # noqa: E402,F401
    assignments,
    catalog,
    certificates,
    course_analytics,
    manage,
    paths,
    quizzes,
    tutor,
)
