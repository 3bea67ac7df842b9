"""Retrieval quality over the demo courses: questions a student would ask, in their own words,
each with the lesson that answers it. The right lesson must be among the top three passages'
lessons for at least 80% of them. Run with ``-s`` to see the figures."""

from __future__ import annotations

from portal.learning.tutoring import retrieval
from tests.learning.tutoring.factories.engine import seed_demo_courses

FINANCE = "personal-finance-foundations"
PYTHON = "intro-to-python-programming"
DATA = "data-literacy-charts-and-statistics"

# (course, question, the lesson that answers it)
QUESTIONS: list[tuple[str, str, str]] = [
    (FINANCE, "why should I even bother making a budget?", "Building a Budget That Works"),
    (FINANCE, "how do I split my pay between the things I need, fun stuff and saving?", "Building a Budget That Works"),
    (FINANCE, "my income is different every month, which month should I plan around?",
     "Building a Budget That Works"),
    (FINANCE, "how many months of expenses should I keep saved for emergencies?", "Emergency Funds and Saving Habits"),
    (FINANCE, "where should I keep my emergency savings so it stays safe?", "Emergency Funds and Saving Habits"),
    (FINANCE, "how can I make saving happen automatically every payday?", "Emergency Funds and Saving Habits"),
    (FINANCE, "what's the difference between simple and compound interest?", "How Compound Interest Works"),
    (FINANCE, "how long until my money doubles if I get 6 percent?", "How Compound Interest Works"),
    (FINANCE, "does it matter if I start saving young rather than later on?", "How Compound Interest Works"),
    (FINANCE, "what does APR mean on a credit card?", "Understanding Debt and Interest Rates"),
    (FINANCE, "is it bad to pay just the minimum on my card each month?", "Understanding Debt and Interest Rates"),
    (FINANCE, "should I pay off the loan with the biggest rate first or the smallest one?",
     "Understanding Debt and Interest Rates"),
    (PYTHON, "what types of data does python have for numbers and text?", "Values and Variables"),
    (PYTHON, "why do I get a TypeError when I add a number to a string?", "Values and Variables"),
    (PYTHON, "can a variable name begin with a number?", "Values and Variables"),
    (PYTHON, "how does python decide which branch of elif runs?", "Making Decisions with if"),
    (PYTHON, "which values count as false in an if statement?", "Making Decisions with if"),
    (PYTHON, "how do I check that two conditions are both true at once?", "Making Decisions with if"),
    (PYTHON, "my program runs forever and never stops, what is wrong with my loop?", "Repeating Work with Loops"),
    (PYTHON, "how do I skip one round of a loop and go on to the next?", "Repeating Work with Loops"),
    (PYTHON, "when should I use while instead of for?", "Repeating Work with Loops"),
    (PYTHON, "what's the point of writing functions?", "Defining and Calling Functions"),
    (PYTHON, "why does my function give back None instead of the number it prints?",
     "Defining and Calling Functions"),
    (PYTHON, "can I give a parameter a default so callers can leave it out?", "Parameters, Defaults and Scope"),
    (PYTHON, "why can't I use a variable from inside my function outside of it?", "Parameters, Defaults and Scope"),
    (PYTHON, "how do I get the last item of a list?", "Working with Lists"),
    (PYTHON, "how do I put a new item on the end of my list?", "Working with Lists"),
    (PYTHON, "what happens if I ask a dictionary for a key that isn't in it?", "Dictionaries: Looking Things Up by Key"),
    (PYTHON, "how can I count how many times each word shows up?", "Dictionaries: Looking Things Up by Key"),
    (DATA, "when is the median better to use than the mean?", "Mean, Median and Mode"),
    (DATA, "what does it mean if the mean is a lot bigger than the median?", "Mean, Median and Mode"),
    (DATA, "how do I work out the standard deviation?", "Measuring Spread"),
    (DATA, "what does the box in a box plot show?", "Measuring Spread"),
    (DATA, "how strong is the relationship when r is around 0.7?", "Correlation"),
    (DATA, "if two things always go up together, does one cause the other?", "Correlation Is Not Causation"),
    (DATA, "what is a confounder?", "Correlation Is Not Causation"),
    (DATA, "why should a bar chart start at zero?", "How Charts Mislead"),
    (DATA, "what's the difference between percent and percentage points?", "How Charts Mislead"),
    (DATA, "what should I look at first when I see a chart?", "A Checklist for Reading Any Chart"),
    (DATA, "can I trust a survey of only a few people?", "A Checklist for Reading Any Chart"),
]

# Questions the demo courses do not answer: the tutor should find nothing for most of them (a
# few share a word with a lesson by chance: "what time is it?").
OFF_TOPIC: list[tuple[str, str]] = [(PYTHON, q) for q in (
    "how do I use python to build a website?", "what is the capital of France?", "how do I cook rice?",
    "who won the football world cup?", "how do I install django?", "what is a class in object oriented programming?",
    "how do I read a file line by line?", "what is recursion?", "how do threads work?", "what's the weather today",
    "can you write my essay for me", "what is a neural network", "how do I connect to a database",
    "how do I make a website look nice with css?", "what is git and how do I commit?",
)] + [(FINANCE, q) for q in (
    "should I buy bitcoin?", "how do I file my taxes?", "what is a stock market index fund?", "how do mortgages work?",
    "who is the president?", "how do I get a job?", "how does health insurance work?", "what is inflation?",
)] + [(DATA, q) for q in (
    "how do I make a chart in excel?", "what is a p-value?", "how do I train a machine learning model?",
    "what is bayes theorem?", "what time is it?", "how do I write a good essay?", "what is a t-test?",
)]


def _hit_rate(courses, *, across_all: bool) -> tuple[float, list[str]]:
    all_ids = [course.id for course in courses.values()]
    hits, misses = 0, []
    for slug, question, lesson in QUESTIONS:
        ids = all_ids if across_all else [courses[slug].id]
        top = [hit.lesson_title for hit in retrieval.search(ids, question, limit=3)]
        if lesson in top:
            hits += 1
        else:
            misses.append(f"{question!r}: expected {lesson!r}, got {top}")
    return hits / len(QUESTIONS), misses


def test_the_question_set_is_big_and_covers_every_demo_lesson():
    from portal.learning import demo_content

    assert len(QUESTIONS) >= 25
    lessons = {lesson.title for course in demo_content.COURSES for module in course.modules
               for lesson in module.lessons}
    assert {lesson for _, _, lesson in QUESTIONS} == lessons


def test_the_right_lesson_is_in_the_top_three_for_at_least_80_percent(app):
    courses = seed_demo_courses()
    rate, misses = _hit_rate(courses, across_all=False)
    rate_all, misses_all = _hit_rate(courses, across_all=True)
    print(f"\ntutor retrieval: hit rate at 3 = {rate:.1%} ({len(QUESTIONS) - len(misses)}/{len(QUESTIONS)}) "
          f"searching the question's course; {rate_all:.1%} searching all three demo courses")
    for miss in misses:
        print("  miss:", miss)
    for miss in misses_all:
        print("  miss (all courses):", miss)
    assert rate >= 0.8, misses
    assert rate_all >= 0.8, misses_all


def test_most_off_topic_questions_find_nothing(app):
    courses = seed_demo_courses()
    found = [(question, [hit.lesson_title for hit in retrieval.search([courses[slug].id], question)])
             for slug, question in OFF_TOPIC]
    wrongly = [(question, lessons) for question, lessons in found if lessons]
    rate = 1 - len(wrongly) / len(OFF_TOPIC)
    print(f"\ntutor retrieval: {rate:.1%} of {len(OFF_TOPIC)} off-topic questions find nothing")
    for question, lessons in wrongly:
        print("  found something for:", repr(question), lessons)
    assert rate >= 0.8, wrongly
