"""The matching engines on the labelled sets of issue 18 (tests/eval/data): every set present,
tuning and held-out alike, must reach the goal on every figure. Run with ``-s`` to see them."""

from __future__ import annotations

from collections import Counter

import pytest

from portal import evaluation
from portal.learning import demo_content
from tests.eval.harness import DATA, rows, sets
from tests.learning.tutoring.factories.engine import seed_demo_courses

LESSONS = {spec.slug: {lesson.title for module in spec.modules for lesson in module.lessons}
           for spec in demo_content.COURSES}


def test_the_tuning_sets_are_there_and_big_enough():
    assert "tune" in sets("tutor") and "tune" in sets("names")
    for name in sets("tutor"):
        kinds = Counter(row["kind"] for row in rows("tutor", name))
        assert sum(kinds.values()) >= 60 and kinds["off_topic"] >= 10 and kinds["quiz_like"] >= 6, (name, kinds)
    for name in sets("names"):
        labels = Counter(row["match"] for row in rows("names", name))
        assert labels[True] >= 50 and labels[False] >= 50, (name, labels)


@pytest.mark.parametrize("name", sets("tutor"))
def test_every_question_names_a_demo_course_and_one_of_its_lessons(name):
    for row in rows("tutor", name):
        assert row["course"] in LESSONS, row
        if row["kind"] == "off_topic":
            assert row["lesson"] == "", row
        else:
            assert row["lesson"] in LESSONS[row["course"]], row


def _tutor(name: str) -> evaluation.TutorFigures:
    figures = evaluation.tutor_figures(rows("tutor", name), seed_demo_courses())
    print("\n" + "\n".join(figures.lines(name)))
    for miss in figures.misses():
        print("  " + miss)
    return figures


#: Goals a set shows are not met yet (issue 18), by (figure, set): ``test`` is the second round's
#: blind held-out set, ``dev`` the first round's (studied since). Strict: the day one holds, its test fails and the entry must go. The misses are
#: printed with ``-s``; they are not to be tuned on (a new held-out set measures the next round).
KNOWN_GAPS = {
    ("quiz_like", "dev"): "issue 18: every quiz-like question is hinted at, but the first section cited teaches "
                          "the quizzed idea for 11/14 (a default parameter in quoted code, options naming "
                          "other lessons' ideas)",
    ("quiz_like", "test"): "issue 18: held-out (second round) quiz-like questions hinted at the teaching lesson "
                           "13/17 (0.765)",
    ("screening", "test"): "issue 18: held-out (second round) screening precision 0.962 (100/104), recall 0.826 "
                           "(100/121) at the threshold",
}


def _sets(family: str, figure: str) -> list:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[figure, name]))
            if (figure, name) in KNOWN_GAPS else name for name in sets(family)]


@pytest.mark.parametrize("name", _sets("tutor", "off_topic"))
def test_tutor_rejects_off_topic_questions(app, name):
    figures = _tutor(name)
    assert figures.off_topic.rate >= evaluation.GOAL, figures.off_topic.misses


@pytest.mark.parametrize("name", _sets("tutor", "quiz_like"))
def test_tutor_hints_at_quiz_like_questions(app, name):
    figures = _tutor(name)
    assert figures.quiz_like.rate >= evaluation.GOAL, figures.quiz_like.misses


# Known gap (issue 18): lexical retrieval with WordNet expansion, passages ranked with their
# lesson's coverage and citing up to three lessons, cites the right lesson for 0.803 (49/61) of
# the tuning set's on-topic questions, 0.713 (57/80) of the dev set's and 0.701 (61/87) of the
# second round's blind test set's, short of the goal. Without the relevance floor the right
# lesson is among the first three for about 0.9 of the first two: the floor that keeps off-topic questions unanswered also rejects questions that share no
# word or WordNet relation with the lesson ("rainy day pot" for an emergency fund).
# Strict: the day the goal holds, this fails and the mark must go.
@pytest.mark.xfail(strict=True, reason="issue 18: on-topic questions in a student's own words, below 0.95")
@pytest.mark.parametrize("name", sets("tutor"))
def test_tutor_cites_the_right_lesson_for_on_topic_questions(app, name):
    figures = evaluation.tutor_figures([row for row in rows("tutor", name) if row["kind"] == "on_topic"],
                                       seed_demo_courses())
    assert figures.on_topic.rate >= evaluation.GOAL, figures.on_topic.misses


@pytest.mark.parametrize("name", _sets("names", "screening"))
def test_screening_meets_the_goal_at_the_configured_threshold(app, name):
    figures = evaluation.name_figures(rows("names", name), float(app.config["AML_MATCH_THRESHOLD"]))
    print("\n" + "\n".join(figures.lines(name)))
    for miss in figures.misses():
        print("  " + miss)
    assert figures.precision >= evaluation.GOAL, figures.wrong
    assert figures.recall >= evaluation.GOAL, figures.wrong


def test_the_figures_count_what_they_say(app):
    """A pair scored under the threshold is a miss when it should match, a true negative when
    not; one above it a hit or a false hit."""
    figures = evaluation.name_figures([
        {"query": "Sergei Ivanov", "listed": "Sergei Ivanov", "match": True, "kind": "same"},
        {"query": "Sergei Ivanov", "listed": "Sergei Ivanov", "match": False, "kind": "mislabelled"},
        {"query": "Sergei Ivanov", "listed": "Maria Lopez", "match": True, "kind": "mislabelled"},
        {"query": "Sergei Ivanov", "listed": "Maria Lopez", "match": False, "kind": "different"},
    ], 85)
    assert (figures.true_positives, figures.false_positives, figures.false_negatives, figures.true_negatives) == \
        (1, 1, 1, 1)
    assert figures.precision == 0.5 and figures.recall == 0.5 and not figures.meets()


def test_a_set_file_of_the_wrong_shape_is_refused(tmp_path):
    (tmp_path / "names_test.toml").write_text('[[pair]]\nquery = "A"\nlisted = "B"\nkind = "x"\n')
    with pytest.raises(evaluation.EvaluationSetError, match="lacks match"):
        evaluation.load(tmp_path, "names", "test")
    (tmp_path / "tutor_test.toml").write_text('[[question]]\ncourse = "c"\nkind = "nearby"\nquestion = "q"\nlesson = ""\n')
    with pytest.raises(evaluation.EvaluationSetError, match="unknown kind"):
        evaluation.load(tmp_path, "tutor", "test")


def test_the_test_sets_are_read_when_present(tmp_path):
    (tmp_path / "names_tune.toml").write_text((DATA / "names_tune.toml").read_text())
    (tmp_path / "names_test.toml").write_text('[[pair]]\nquery = "A"\nlisted = "B"\nmatch = false\nkind = "x"\n')
    assert evaluation.set_names(tmp_path, "names") == ["tune", "test"]
    (tmp_path / "names_dev.toml").write_text('[[pair]]\nquery = "C"\nlisted = "D"\nmatch = false\nkind = "x"\n')
    assert evaluation.set_names(tmp_path, "names") == ["tune", "dev", "test"]  # a former test set, between


def test_the_command_prints_the_screening_figures(app, tmp_path):
    (tmp_path / "names_test.toml").write_text(
        '[[pair]]\nquery = "Сергей Иванов"\nlisted = "Sergei Ivanov"\nmatch = true\nkind = "cyrillic"\n\n'
        '[[pair]]\nquery = "Maria Garcia"\nlisted = "Mario Garcia"\nmatch = false\nkind = "gendered"\n')
    result = app.test_cli_runner().invoke(args=["eval", "matching", "--set", "test", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "screening [test] at threshold 85 on 2 pairs: precision 1.000 (1/1), recall 1.000 (1/1)" in result.output


def test_the_command_prints_the_tutor_figures_when_the_demo_courses_are_there(app, tmp_path):
    seed_demo_courses()
    (tmp_path / "tutor_test.toml").write_text(
        '[[question]]\ncourse = "intro-to-python-programming"\nkind = "on_topic"\n'
        'question = "I sorted my list and now it is None, what happened?"\nlesson = "Working with Lists"\n\n'
        '[[question]]\ncourse = "intro-to-python-programming"\nkind = "off_topic"\n'
        'question = "who wrote romeo and juliet?"\nlesson = ""\n')
    result = app.test_cli_runner().invoke(args=["eval", "matching", "--set", "test", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert ("tutor [test]: right lesson cited (top 3) 1.000 (1/1); off-topic answered not found 1.000 (1/1); "
            "quiz-like hinted at the lesson 1.000 (0/0)") in result.output


def test_the_command_names_a_bad_set_file_instead_of_failing(app, tmp_path):
    (tmp_path / "names_test.toml").write_text('[[pair]]\nquery = "A"\nlisted = "B"\nkind = "x"\n')
    result = app.test_cli_runner().invoke(args=["eval", "matching", "--data", str(tmp_path)])
    assert result.exit_code == 1 and "names_test.toml: [[pair]] number 1 lacks match" in result.output
