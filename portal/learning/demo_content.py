"""The demo courses: three short, complete courses written for the portal, as plain data.

Nothing here touches the database; a loader turns these specs into rows. The shapes follow the
learning tables:

- ``CourseSpec`` -> ``courses``, its ``modules`` -> ``modules`` (position = index + 1), each
  module's ``lessons`` -> ``lessons``.
- ``QuizSpec`` -> ``quizzes``, attached to ``course.modules[module_index]``; its questions ->
  ``quiz_questions`` and their options -> ``question_options``.
- ``AssignmentSpec`` -> ``assignments``, its criteria -> the ``rubric`` JSON (criterion and level
  ids are the loader's to mint).

Text is Markdown in the portal's dialect: ``#`` is a section heading (the renderer demotes it
below the page's own title), fenced code blocks, tables and lists, and no raw HTML.

Short answers: ``accepted_answers`` are literal correct answers, the first being the model
answer shown to students. With ``match_mode="pattern"`` the question also has a ``pattern``, a
Python regular expression that must match the whole (stripped) answer; that pattern is what the
``acceptedAnswers`` column holds for such a question (see ``QuestionSpec.stored_answers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

__all__ = [
    "COURSES",
    "LEVELS",
    "MATCH_MODES",
    "QUESTION_KINDS",
    "AssignmentSpec",
    "CourseSpec",
    "CriterionSpec",
    "LessonSpec",
    "LevelSpec",
    "ModuleSpec",
    "OptionSpec",
    "QuestionSpec",
    "QuizSpec",
    "course_by_slug",
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


def _true_false(correct: bool) -> tuple[OptionSpec, ...]:
    """The two options of a true/false question whose right answer is ``correct``."""
    return (OptionSpec("True", correct), OptionSpec("False", not correct))


# ---------------------------------------------------------------------------------------------
# Personal Finance Foundations
# ---------------------------------------------------------------------------------------------

_FIN_DESCRIPTION = """\
# What you will learn

Money decisions get easier once a handful of ideas are clear. This course explains them in plain
language, with worked numbers you can check on any calculator.

- **Budgeting:** see where your money goes and give every part of your income a job.
- **Saving:** build an emergency fund so a surprise bill does not turn into a crisis.
- **Compound interest:** why starting early matters more than starting big.
- **Debt:** read an interest rate, compare loans and plan a payoff.

# Who it is for

Students and anyone managing their own money for the first time. No background is needed;
basic arithmetic is enough.

# How it works

Two modules of short lessons, a quiz after each module, and one practical assignment: a
one-month budget and savings plan for your own situation (or a made-up one, if you prefer to
keep your finances private). The examples use dollars, but every idea works the same way in any
currency, including the rewards you earn in your portal wallet.
"""

_FIN_BUDGET = """\
# Why budget at all?

A budget is not a punishment. It is a plan that tells your money where to go, instead of
wondering at the end of the month where it went. People who budget do not necessarily earn
more; they make their choices on purpose.

# Step 1: know your take-home income

Start with the money that actually reaches your account after taxes and deductions. If your
income changes from month to month (tutoring, part-time shifts, rewards earned in your wallet),
plan with a *typical low* month, not your best one.

# Step 2: track your spending

For two to four weeks, write down every expense, however small. Then sort each one:

- **Needs:** rent, food, transport, utilities, minimum loan payments.
- **Wants:** eating out, streaming services, clothes beyond the basics.
- **Savings and debt payoff:** money set aside for later, or paid above the minimum on a debt.

# Step 3: pick a simple framework

A popular starting point is the **50/30/20 rule**: 50% of take-home pay for needs, 30% for
wants and 20% for savings and extra debt payments.

## Worked example

Amara takes home $2,400 a month.

| Category | Share | Amount |
|---|---|---|
| Needs | 50% | $1,200 |
| Wants | 30% | $720 |
| Savings and debt | 20% | $480 |

If her rent alone is $1,000, the $1,200 for needs will be tight. That is fine: the rule is a
starting point, not a law. She might run a 60/20/20 split for now and look for savings on
transport or food.

# Step 4: review every month

Compare what you planned with what actually happened. Adjust categories that are always over or
always under. A budget that matches real life is more useful than a perfect one you ignore.

# Key takeaways

1. Budget from your real take-home pay.
2. Track before you plan.
3. Treat saving as a bill you pay to yourself first.
"""

_FIN_EMERGENCY = """\
# What is an emergency fund?

An emergency fund is money kept aside only for genuine surprises: a medical bill, a broken
laptop you need for your studies, a sudden gap in income. Without one, an emergency often ends
up on a credit card or a high-interest loan, and a one-off problem becomes months of repayments.

# How much should you keep?

A common guideline is **three to six months of essential expenses** (needs only, not your full
spending).

- Steady income and nobody depending on you: closer to three months.
- Irregular income, or people relying on you: closer to six months.

**Example:** if your essential costs are $1,500 a month, your target is between $4,500 and
$9,000.

That can feel enormous, so set a **starter goal** first, such as $500 or one month of
essentials, and build from there.

# Where to keep it

The fund should be:

1. **Safe:** not invested in anything that can fall in value just when you need it.
2. **Accessible:** you can reach it within a day or two.
3. **Separate:** in a different account from everyday spending, so it is not spent by accident.

A savings account that pays some interest is usually a good fit.

# Habits that make saving automatic

- **Pay yourself first.** Move savings out on payday, before you spend, instead of saving
  whatever happens to be left.
- **Automate it.** A standing transfer of even a small amount builds the habit.
- **Save windfalls.** Put part of any bonus, gift or reward straight into savings.
- **Refill after use.** Spending the fund on a real emergency is what it is for; rebuilding it
  becomes the next priority.

# Quick check

Saving $100 a month reaches a $1,200 starter fund in 12 months. Raising that to $150 a month
gets there in 8 months. Small increases shorten the timeline more than most people expect.
"""

_FIN_COMPOUND = """\
# Simple and compound interest

**Simple interest** is paid only on the original amount, the *principal*. **Compound interest**
is paid on the principal *and* on the interest already earned, so growth speeds up over time.

# The formula

For interest added once a year:

```text
future value = principal × (1 + rate) ^ years
```

Write the rate as a decimal: 5% is 0.05.

# Worked example

You deposit $1,000 at 5% a year and leave it alone for 10 years.

- **Simple interest:** $1,000 × 0.05 = $50 a year, so after 10 years you have
  $1,000 + $500 = **$1,500**.
- **Compound interest:** $1,000 × 1.05^10 = $1,000 × 1.62889… = **$1,628.89**.

The compound balance grows like this:

| Year | Balance at year end |
|---|---|
| 1 | $1,050.00 |
| 2 | $1,102.50 |
| 5 | $1,276.28 |
| 10 | $1,628.89 |

The extra $128.89 is interest earned on interest. Over 30 years the gap becomes dramatic:
compounding gives $4,321.94, simple interest only $2,500.

# The rule of 72

A quick mental shortcut: divide 72 by the yearly interest rate (in percent) to estimate how many
years it takes for money to double.

- At 6%: 72 ÷ 6 = about **12 years**.
- At 9%: 72 ÷ 9 = about **8 years**.

# Why starting early matters

Time is the most powerful part of the formula. Someone who starts saving ten years earlier often
ends up with more than someone who saves larger amounts later, because the early money has
longer to compound.

# Key takeaways

1. Compound interest earns interest on interest.
2. The rate matters, but time matters even more.
3. The same maths works against you when you owe money, as the next lesson shows.
"""

_FIN_DEBT = """\
# Debt is not automatically bad

Borrowing can help you do something valuable sooner, such as paying for a course or a tool you
need for work. The trouble starts with debt you do not understand, or debt that costs more than
the thing it paid for.

# Reading an interest rate

- **APR (annual percentage rate):** the yearly cost of borrowing, usually including required
  fees. Use it to compare loans.
- **Monthly rate:** cards and many loans charge interest monthly. A 24% APR is 24 ÷ 12 =
  **2% a month**.
- **Effective annual rate:** what you really pay once compounding is included. A 12% APR charged
  monthly works out to 1.01^12 − 1 ≈ **12.68%** a year.

# Example: the minimum payment trap

You owe $1,000 on a card at 24% APR, so 2% a month.

- Interest in the first month: $1,000 × 0.02 = **$20**.
- Pay only $25 a month and just $5 of the first payment reduces the balance. Clearing the debt
  takes 82 months, nearly seven years, and costs about $1,032 in interest: more than the
  original purchase.
- Pay $100 a month instead and the debt is gone in 12 months, with about $127 of interest.

# Questions to ask before you borrow

1. What is the APR, and is it fixed or variable?
2. What are the fees: set-up, late payment, early repayment?
3. What is the total amount I will repay?
4. Could I still afford the payment if my income dropped?

# Two payoff strategies

- **Avalanche:** pay the minimum on every debt, then put all extra money on the debt with the
  **highest interest rate**. This costs the least overall.
- **Snowball:** put extra money on the **smallest balance** first. It costs a little more, but
  quick wins keep many people motivated.

Either strategy beats paying only the minimums. Once a debt is gone, move its payment into your
emergency fund or savings, so the money keeps working for you.
"""

_FIN_ASSIGNMENT = """\
# Your task

Build a realistic plan for one month of your own money, or for a made-up student if you prefer
to keep your finances private. Submit it as text (tables are welcome).

# Include these parts

1. **Income:** your monthly take-home income, and how you chose the figure if it varies.
2. **Spending:** at least eight expense lines, each labelled *need*, *want* or *saving/debt*.
3. **Budget:** a split of your income across those three groups, compared with 50/30/20. Explain
   any difference.
4. **Emergency fund:** your target (three to six months of essentials, with the multiplier you
   chose and why), a starter goal, and how many months it will take at your planned saving rate.
5. **Interest:** take the total you would save in one year at your planned rate, and show what
   it grows to if left untouched for 5 years at 5% a year, compounded yearly. If you carry a
   debt, also show how much interest it costs you each month at its current rate. Show your
   working.

# Tips

- Round to whole dollars; precision matters less than honesty.
- Say what you would cut first if your income fell by 10%.
"""

_FINANCE = CourseSpec(
    slug="personal-finance-foundations",
    title="Personal Finance Foundations",
    summary=(
        "Take control of everyday money: build a budget that fits your real life, set up an "
        "emergency fund, see how compound interest grows savings over time, and understand "
        "what debt really costs before you borrow."
    ),
    description=_FIN_DESCRIPTION,
    category="Finance",
    level="beginner",
    estimated_hours=3,
    modules=(
        ModuleSpec(
            title="Budgeting and Saving",
            summary="Plan where your money goes and build a safety net for surprises.",
            lessons=(
                LessonSpec("Building a Budget That Works", _FIN_BUDGET, 15),
                LessonSpec("Emergency Funds and Saving Habits", _FIN_EMERGENCY, 15),
            ),
        ),
        ModuleSpec(
            title="Interest: Growth and Cost",
            summary="How interest grows your savings, and how it grows your debts.",
            lessons=(
                LessonSpec("How Compound Interest Works", _FIN_COMPOUND, 20),
                LessonSpec("Understanding Debt and Interest Rates", _FIN_DEBT, 20),
            ),
        ),
    ),
    quizzes=(
        QuizSpec(
            title="Budgeting and Saving Check",
            description="Five questions on budgets, needs and wants, and emergency funds.",
            module_index=0,
            time_limit_minutes=10,
            max_attempts=3,
            passing_score=70,
            questions=(
                QuestionSpec(
                    kind="single",
                    prompt=("Under the 50/30/20 rule, how much of a $3,000 monthly take-home pay "
                            "goes to savings and extra debt payments?"),
                    points=2,
                    feedback="20% of $3,000 is $600.",
                    options=(
                        OptionSpec("$300", False, "That is 10%."),
                        OptionSpec("$600", True),
                        OptionSpec("$900", False, "That is 30%, the share for wants."),
                        OptionSpec("$1,500", False, "That is 50%, the share for needs."),
                    ),
                ),
                QuestionSpec(
                    kind="multiple",
                    prompt="Which of these are usually **needs** in a budget? Select all that apply.",
                    points=3,
                    feedback="Needs are the costs you must pay to live and keep your obligations.",
                    options=(
                        OptionSpec("Rent", True),
                        OptionSpec("Groceries", True),
                        OptionSpec("The minimum payment on a loan", True),
                        OptionSpec("A streaming subscription", False, "Pleasant, but a want."),
                        OptionSpec("Concert tickets", False, "A want."),
                    ),
                ),
                QuestionSpec(
                    kind="true_false",
                    prompt=("An emergency fund is best kept in a volatile investment so that it "
                            "grows faster."),
                    points=1,
                    feedback=("An emergency fund must be safe and easy to reach, so it belongs in "
                              "something like a savings account."),
                    options=_true_false(False),
                ),
                QuestionSpec(
                    kind="numeric",
                    prompt=("Your essential expenses are $1,800 a month. How many dollars is an "
                            "emergency fund of six months of essentials?"),
                    points=2,
                    feedback="Six months of $1,800 is 6 × $1,800 = $10,800.",
                    answer=Decimal("10800"),
                    tolerance=Decimal("0"),
                ),
                QuestionSpec(
                    kind="short",
                    prompt=("Which three-word saving habit means moving money into savings on "
                            "payday, before spending anything?"),
                    points=2,
                    feedback="Paying yourself first treats saving as a bill that is paid before any other.",
                    accepted_answers=("pay yourself first", "Pay yourself first."),
                    match_mode="pattern",
                    pattern=r"(?i)pay\s+yourself\s+first[.!]?",
                ),
            ),
        ),
        QuizSpec(
            title="Interest and Debt Check",
            description="Six questions on compound interest, interest rates and paying off debt.",
            module_index=1,
            time_limit_minutes=15,
            max_attempts=3,
            passing_score=70,
            questions=(
                QuestionSpec(
                    kind="numeric",
                    prompt=("You deposit $2,000 at 4% a year, compounded once a year, and add "
                            "nothing more. What is the balance after 3 years, to the nearest cent?"),
                    points=3,
                    feedback="$2,000 × 1.04^3 = $2,000 × 1.124864 = $2,249.73.",
                    answer=Decimal("2249.73"),
                    tolerance=Decimal("0.01"),
                ),
                QuestionSpec(
                    kind="single",
                    prompt=("Using the rule of 72, roughly how long does money take to double at "
                            "8% a year?"),
                    points=2,
                    feedback="72 ÷ 8 = 9, so about 9 years.",
                    options=(
                        OptionSpec("About 6 years", False),
                        OptionSpec("About 8 years", False, "That would need a 9% rate."),
                        OptionSpec("About 9 years", True),
                        OptionSpec("About 12 years", False, "That would need a 6% rate."),
                    ),
                ),
                QuestionSpec(
                    kind="true_false",
                    prompt="A 24% APR charged monthly is 2% interest a month.",
                    points=1,
                    feedback="The monthly rate is the APR divided by 12: 24 ÷ 12 = 2.",
                    options=_true_false(True),
                ),
                QuestionSpec(
                    kind="multiple",
                    prompt="Which statements about compound interest are true? Select all that apply.",
                    points=3,
                    feedback=("Compounding pays interest on earlier interest, rewards time, and "
                              "works the same way on money you owe."),
                    options=(
                        OptionSpec("It pays interest on interest already earned.", True),
                        OptionSpec("Starting earlier gives money more time to grow.", True),
                        OptionSpec("It always gives the same result as simple interest.", False,
                                   "After the first period compound interest pulls ahead."),
                        OptionSpec("It works against you on a debt that charges interest on unpaid interest.",
                                   True),
                    ),
                ),
                QuestionSpec(
                    kind="short",
                    prompt=("Name the debt payoff strategy that puts extra money on the debt with "
                            "the highest interest rate first."),
                    points=2,
                    feedback="The avalanche method costs the least interest overall.",
                    accepted_answers=("avalanche", "avalanche method", "debt avalanche",
                                      "the avalanche method"),
                    match_mode="case_insensitive",
                ),
                QuestionSpec(
                    kind="essay",
                    prompt=("A friend says: *\"I only pay the minimum on my card, it's fine.\"* In a "
                            "short paragraph, explain why this is expensive, using numbers from "
                            "an example, and suggest what they could do instead."),
                    points=5,
                    feedback=("Most of a minimum payment goes to interest, so the balance barely "
                              "falls and the total cost can exceed the original debt."),
                    grading_guide=(
                        "Full marks: explains that interest is charged on the remaining balance, "
                        "gives a numeric example (for instance $1,000 at 2% a month costs $20 in "
                        "the first month, so a $25 payment reduces the balance by only $5), and "
                        "suggests a concrete alternative such as a fixed higher payment or the "
                        "avalanche or snowball method. Deduct 1-2 points for a missing example or "
                        "an arithmetic error; 1 point for a missing alternative."
                    ),
                ),
            ),
        ),
    ),
    assignment=AssignmentSpec(
        title="My One-Month Budget and Savings Plan",
        instructions=_FIN_ASSIGNMENT,
        points=100,
        module_index=1,
        criteria=(
            CriterionSpec(
                title="Income and spending",
                description="Income is realistic and expenses are complete and correctly labelled.",
                levels=(
                    LevelSpec("Excellent", "Clear income figure with reasoning; eight or more "
                              "expenses, all labelled correctly.", 25),
                    LevelSpec("Good", "Income given; most expenses listed and labelled, with "
                              "one or two mistakes.", 18),
                    LevelSpec("Developing", "Income or expenses incomplete, or several "
                              "labels wrong.", 10),
                    LevelSpec("Missing", "No usable income or expense list.", 0),
                ),
            ),
            CriterionSpec(
                title="Budget allocation",
                description="The split is compared with 50/30/20 and differences are explained.",
                levels=(
                    LevelSpec("Excellent", "Split adds up to the income, is compared with "
                              "50/30/20 and every difference is justified.", 25),
                    LevelSpec("Good", "Split adds up and is compared, with little "
                              "explanation.", 18),
                    LevelSpec("Developing", "Split does not add up or is not compared.", 10),
                    LevelSpec("Missing", "No budget split.", 0),
                ),
            ),
            CriterionSpec(
                title="Emergency fund plan",
                description="A sensible target, a starter goal and a timeline.",
                levels=(
                    LevelSpec("Excellent", "Target uses three to six months of essentials with a "
                              "reason; starter goal and correct timeline.", 25),
                    LevelSpec("Good", "Target and timeline present; reasoning thin or the "
                              "timeline slightly off.", 18),
                    LevelSpec("Developing", "Target without a timeline, or based on total "
                              "spending instead of essentials.", 10),
                    LevelSpec("Missing", "No emergency fund plan.", 0),
                ),
            ),
            CriterionSpec(
                title="Interest calculation",
                description="Compound growth or debt interest is calculated correctly, with working.",
                levels=(
                    LevelSpec("Excellent", "Correct calculation with every step shown.", 25),
                    LevelSpec("Good", "Right method with a small arithmetic slip.", 18),
                    LevelSpec("Developing", "Simple interest used instead of compound, or no "
                              "working shown.", 10),
                    LevelSpec("Missing", "No calculation.", 0),
                ),
            ),
        ),
    ),
)


# ---------------------------------------------------------------------------------------------
# Introduction to Python Programming
# ---------------------------------------------------------------------------------------------

_PY_DESCRIPTION = """\
# What you will learn

Python is a friendly first programming language and a serious tool used in science, finance and
the web. In this course you write small programs from the first lesson.

- **Values and variables:** numbers, text and true/false values, and names that refer to them.
- **Control flow:** making decisions with `if` and repeating work with loops.
- **Functions:** packaging logic into reusable, testable pieces.
- **Lists and dictionaries:** the two collections you will use in almost every program.

# What you need

Python 3 installed on your computer, or any online Python editor. No programming experience is
needed. Type the examples yourself rather than copying them: it is the fastest way to learn.

# How it works

Three modules of short lessons with code examples and a small exercise at the end of each. Two
quizzes check your understanding, and the final assignment is a small study-tracker program
that uses everything from the course.
"""

_PY_VALUES = """\
# Values have types

Every piece of data in Python is a **value**, and every value has a **type**:

- `42` is an `int`, a whole number.
- `3.5` is a `float`, a number with a decimal point.
- `"hello"` is a `str`, a piece of text (a *string*).
- `True` and `False` are `bool` values.

# Variables are names for values

A **variable** is a name that refers to a value. You create one with `=`, which means
*assign*, not *equals*:

```python
course = "Python"
lessons_done = 3
lessons_done = lessons_done + 1
print(course, lessons_done)   # Python 4
```

The third line reads the current value, adds 1 and stores the result under the same name.

# Naming rules and habits

- Names may contain letters, digits and underscores, but cannot start with a digit.
- Names are case-sensitive: `score` and `Score` are different variables.
- Prefer descriptive `snake_case` names such as `total_points` over `tp`.

# Numbers and text

```python
price = 12.50
quantity = 3
total = price * quantity    # 37.5
half = 7 / 2                # 3.5, division always gives a float
whole = 7 // 2              # 3, floor division
left_over = 7 % 2           # 1, the remainder

name = "Thandi"
greeting = "Hello, " + name
message = f"{name} owes {total}"   # an f-string: Thandi owes 37.5
```

# Converting between types

`input()` always returns a string, so convert it before doing arithmetic:

```python
age = int(input("Your age: "))
print(age + 1)
```

Mixing types without converting is an error: `"3" + 4` raises a `TypeError`, while
`int("3") + 4` gives `7`.

# Try it

Create variables for your name and the hours you study each week, then print a sentence about
them with an f-string.
"""

_PY_IF = """\
# Comparisons give booleans

Comparison operators produce `True` or `False`:

| Operator | Meaning |
|---|---|
| `==` | equal to |
| `!=` | not equal to |
| `<` and `>` | less than, greater than |
| `<=` and `>=` | less than or equal to, greater than or equal to |

# if, elif and else

```python
score = 72

if score >= 80:
    grade = "distinction"
elif score >= 50:
    grade = "pass"
else:
    grade = "not yet"

print(grade)   # pass
```

Python checks the conditions from top to bottom and runs the block of the **first** one that is
true; the rest are skipped. The lines indented under a line ending in `:` form its block, so
indentation is part of the syntax, not just decoration.

# Combining conditions

Use `and`, `or` and `not` to build bigger conditions:

```python
age = 20
has_ticket = True

if age >= 18 and has_ticket:
    print("Welcome in")
elif not has_ticket:
    print("Please buy a ticket first")
```

- `a and b` is true only when both are true.
- `a or b` is true when at least one is true.
- `not a` flips true and false.

# Truthiness

In a condition, empty values count as false: `0`, `""` (an empty string), `[]` (an empty list)
and `None`. Almost everything else counts as true, so `if name:` is a short way of asking
whether a string is non-empty.

# Common mistakes

- Writing `=` (assignment) instead of `==` (comparison) in a condition.
- Forgetting the colon at the end of an `if`, `elif` or `else` line.
- Mixing tabs and spaces; use four spaces per level.

# Try it

Ask for a temperature with `input()`, convert it to a number and print "cold" below 15,
"mild" from 15 to 25 and "hot" above 25.
"""

_PY_LOOPS = """\
# The for loop

A `for` loop runs its block once for each item in a sequence:

```python
for name in ["Ada", "Grace", "Linus"]:
    print("Welcome,", name)
```

`range()` produces a sequence of numbers, which is handy for counting:

```python
total = 0
for n in range(1, 6):   # 1, 2, 3, 4, 5: the end is excluded
    total = total + n
print(total)            # 15
```

# The while loop

A `while` loop repeats as long as its condition stays true. Use it when you do not know in
advance how many repetitions you need:

```python
balance = 1000
years = 0
while balance < 2000:
    balance = balance * 1.07
    years = years + 1
print(years)   # 11: how long 7% a year takes to double the money
```

Make sure something inside the loop changes the condition, or the loop never ends. If a
program seems stuck, an endless loop is the usual suspect: press Ctrl+C to stop it, then check
which variable was supposed to change.

# break and continue

- `break` leaves the loop immediately.
- `continue` skips the rest of this repetition and moves on to the next one.

```python
for n in range(1, 20):
    if n % 2 == 0:
        continue        # skip even numbers
    if n > 7:
        break           # stop once we pass 7
    print(n)            # prints 1, 3, 5 and 7
```

# Choosing a loop

Any `for` loop could be rewritten as a `while` loop, but the `for` version is usually shorter and
cannot forget to move on to the next item. Pick the one that states your intent:

1. Going through items you already have? Use `for`.
2. Counting a known number of times? Use `for` with `range()`.
3. Repeating until something happens? Use `while`.

# Try it

Write a loop that prints the multiples of 3 from 3 to 30, then change it to add them up and
print the total instead (the answer is 165).
"""

_PY_FUNCTIONS = """\
# Why functions?

A **function** is a named, reusable block of code. Functions let you:

- avoid repeating the same lines in many places;
- give a clear name to a piece of logic;
- test small pieces of a program on their own.

# Defining a function

```python
def greet(name):
    \"\"\"Return a friendly greeting for name.\"\"\"
    return f"Hello, {name}!"
```

- `def` starts the definition, followed by the function's name and its **parameters** in
  parentheses.
- The indented block is the function's **body**.
- The string on the first line of the body is a **docstring** that says what the function does.
- `return` sends a value back to whoever called the function.

# Calling a function

```python
message = greet("Kofi")
print(message)   # Hello, Kofi!
```

The value `"Kofi"` in the call is an **argument**; inside the function it is bound to the
parameter `name`. Defining a function does not run it: the body runs each time the function is
called.

# return and print are different

`print` shows something on the screen; `return` hands a value back so the rest of your program
can use it. A function that ends without a `return` statement returns `None`.

```python
def add(a, b):
    return a + b

def show_sum(a, b):
    print(a + b)

result = add(2, 3)       # result is 5
other = show_sum(2, 3)   # prints 5, but other is None
```

A useful habit: let functions *compute and return*, and do the printing in one place at the
top level of your program.

# Try it

1. Write a function `square(n)` that returns `n * n`, and print `square(7)`.
2. Write `is_even(n)` that returns `True` for even numbers and `False` otherwise.
"""

_PY_PARAMETERS = """\
# Several parameters

```python
def total_cost(price, quantity):
    return price * quantity

total_cost(4.5, 3)                  # 13.5, positional arguments
total_cost(quantity=3, price=4.5)   # 13.5, keyword arguments
```

Keyword arguments name the parameter they fill, which makes calls with many values easier to
read and lets you give them in any order.

# Default values

A parameter can have a default, used when the caller leaves it out:

```python
def compound(principal, rate, years=1):
    return principal * (1 + rate) ** years

compound(1000, 0.05)       # 1050.0
compound(1000, 0.05, 10)   # about 1628.89
```

Parameters with defaults must come after the ones without. Defaults are a good way to make the
common case short while still allowing the unusual one: most callers want one year of interest,
and the few who want ten can say so.

# Scope: where names live

Variables created inside a function are **local**: they exist only while the function runs.

```python
def double(n):
    result = n * 2
    return result

double(4)
print(result)   # NameError: name 'result' is not defined
```

This is a feature, not a nuisance: functions cannot accidentally overwrite each other's
variables. To get a value out of a function, `return` it.

# Returning more than one value

A function can return several values as a *tuple* (a fixed sequence, written with commas), and
the caller unpacks it into separate names in the same order:

```python
def lowest_and_highest(numbers):
    return min(numbers), max(numbers)

low, high = lowest_and_highest([4, 8, 15, 16])
print(low, high)   # 4 16
```

# Good function habits

1. One function, one job.
2. Name functions after what they return or do, such as `average_score` or `send_reminder`.
3. Prefer returning values over printing inside the function.
4. Keep functions short enough to read without scrolling.
"""

_PY_LISTS = """\
# Creating lists

A **list** holds an ordered collection of values in square brackets:

```python
scores = [72, 88, 95, 60]
names = ["Ada", "Grace"]
empty = []
```

# Indexing and slicing

Each item has a position, its **index**. Positions start at **0**, and negative indexes count
from the end, which saves you from working out the length first:

```python
scores[0]     # 72, the first item
scores[-1]    # 60, the last item
scores[1:3]   # [88, 95]: from index 1 up to, but not including, 3
len(scores)   # 4
```

# Changing a list

Lists are **mutable**: you can change them after creating them.

```python
scores.append(81)   # add to the end: [72, 88, 95, 60, 81]
scores[3] = 65      # replace an item: [72, 88, 95, 65, 81]
scores.remove(88)   # remove the first matching value: [72, 95, 65, 81]
scores.sort()       # sort in place: [65, 72, 81, 95]
```

# Looping and summarising

```python
total = 0
for s in scores:
    total += s
average = total / len(scores)   # 78.25

best = max(scores)                        # 95
passed = [s for s in scores if s >= 70]   # [72, 81, 95]
```

The last line is a **list comprehension**, a compact way to build a new list from an existing
one: "each `s` in `scores`, keeping those where `s >= 70`". Built-in functions such as `len`,
`sum`, `min` and `max` work on any list of numbers, so you rarely need to write these loops
yourself once you understand what they do.

# Common mistakes

- `scores[4]` on a four-item list raises `IndexError`: the last index is 3.
- `scores.sort()` changes the list and returns `None`, so `scores = scores.sort()` loses your
  data. Use `sorted(scores)` when you want a new sorted list.

# Try it

Make a list of five daily temperatures. Print the highest and the lowest, then build a new list
of the temperatures above 20 with a list comprehension.
"""

_PY_DICTS = """\
# Key-value pairs

A **dictionary** (`dict`) stores values under **keys**, so you look things up by a label instead
of a position:

```python
student = {
    "name": "Amara",
    "year": 2,
    "courses": ["Python", "Finance"],
}

student["name"]                          # 'Amara'
student["year"] = 3                      # update a value
student["email"] = "amara@example.com"   # add a new key
```

Keys must be unique and unchangeable (strings and numbers are the usual choice); values can be
anything, including lists and other dictionaries. Assigning to a key that already exists
replaces its value rather than adding a second entry, and since Python 3.7 a dictionary
remembers the order in which keys were first added.

# Safe lookups

Asking for a missing key raises `KeyError`. When a key might be absent, check with `in` or use
`.get()`:

```python
if "phone" in student:
    print(student["phone"])

student.get("phone")          # None
student.get("phone", "n/a")   # 'n/a'
```

# Looping over a dictionary

```python
prices = {"coffee": 2.5, "bagel": 3.0, "juice": 4.0}

for item, price in prices.items():
    print(f"{item}: {price}")

total = sum(prices.values())   # 9.5
```

# Counting with a dictionary

Dictionaries are perfect for tallies:

```python
words = ["save", "spend", "save", "invest", "save"]
counts = {}
for w in words:
    counts[w] = counts.get(w, 0) + 1
print(counts)   # {'save': 3, 'spend': 1, 'invest': 1}
```

# List or dictionary?

- Use a **list** when order matters and the items are alike, such as a series of scores.
- Use a **dictionary** when you look items up by a label, such as a student's details or the
  price of each item.
- Combine them freely: a list of dictionaries is a natural way to hold a table of records.

# Try it

Build a dictionary that maps three friends' names to their favourite subject, add a fourth
friend, then print each name and subject on its own line.
"""

_PY_ASSIGNMENT = """\
# Your task

Write a small **study tracker** in Python. Keep each study session as a dictionary, and all
sessions in a list:

```python
sessions = [
    {"subject": "Python", "minutes": 45},
    {"subject": "Finance", "minutes": 30},
    {"subject": "Python", "minutes": 25},
]
```

# Requirements

1. A function `add_session(sessions, subject, minutes)` that appends a new session. It should
   refuse (print a message and add nothing) when `minutes` is not a positive number.
2. A function `minutes_by_subject(sessions)` that **returns** a dictionary of total minutes per
   subject. For the list above: `{"Python": 70, "Finance": 30}`.
3. A function `longest_session(sessions)` that returns the session with the most minutes, or
   `None` for an empty list.
4. A short main part that adds at least five sessions and prints a readable summary, including
   the total hours studied rounded to one decimal place.

# Submit

Paste your code and the output of one run. Add two or three sentences on one thing that was
harder than you expected and how you solved it.

# Tips

- Test each function on its own before combining them.
- Use `dict.get(key, 0)` for the running totals.
"""

_PYTHON = CourseSpec(
    slug="intro-to-python-programming",
    title="Introduction to Python Programming",
    summary=(
        "Write your first real programs in Python: store values in variables, make decisions "
        "and repeat work with control flow, organise code into functions, and handle data with "
        "lists and dictionaries."
    ),
    description=_PY_DESCRIPTION,
    category="Computer Science",
    level="beginner",
    estimated_hours=4,
    modules=(
        ModuleSpec(
            title="First Steps",
            summary="Values, variables, decisions and loops: the building blocks of every program.",
            lessons=(
                LessonSpec("Values and Variables", _PY_VALUES, 20),
                LessonSpec("Making Decisions with if", _PY_IF, 20),
                LessonSpec("Repeating Work with Loops", _PY_LOOPS, 20),
            ),
        ),
        ModuleSpec(
            title="Functions",
            summary="Package logic into named, reusable pieces.",
            lessons=(
                LessonSpec("Defining and Calling Functions", _PY_FUNCTIONS, 20),
                LessonSpec("Parameters, Defaults and Scope", _PY_PARAMETERS, 20),
            ),
        ),
        ModuleSpec(
            title="Lists and Dictionaries",
            summary="Hold many values at once, in order or by name.",
            lessons=(
                LessonSpec("Working with Lists", _PY_LISTS, 20),
                LessonSpec("Dictionaries: Looking Things Up by Key", _PY_DICTS, 20),
            ),
        ),
    ),
    quizzes=(
        QuizSpec(
            title="Python Basics Check",
            description="Five questions on values, variables, conditions and loops.",
            module_index=0,
            time_limit_minutes=10,
            max_attempts=3,
            passing_score=70,
            questions=(
                QuestionSpec(
                    kind="single",
                    prompt="What does `7 // 2` evaluate to in Python?",
                    points=2,
                    feedback="`//` is floor division: it divides and rounds down to a whole number.",
                    options=(
                        OptionSpec("3.5", False, "That is `7 / 2`."),
                        OptionSpec("3", True),
                        OptionSpec("4", False, "Floor division rounds down, not to the nearest."),
                        OptionSpec("1", False, "That is `7 % 2`, the remainder."),
                    ),
                ),
                QuestionSpec(
                    kind="true_false",
                    prompt="In Python, a single `=` compares two values for equality.",
                    points=1,
                    feedback="A single `=` assigns a value; `==` compares.",
                    options=_true_false(False),
                ),
                QuestionSpec(
                    kind="multiple",
                    prompt="Which of these are valid Python variable names? Select all that apply.",
                    points=3,
                    feedback=("Names may use letters, digits and underscores but cannot start with "
                              "a digit or contain a hyphen."),
                    options=(
                        OptionSpec("`total_points`", True),
                        OptionSpec("`_count`", True),
                        OptionSpec("`score2`", True),
                        OptionSpec("`2nd_place`", False, "A name cannot start with a digit."),
                        OptionSpec("`user-name`", False, "A hyphen would be read as subtraction."),
                    ),
                ),
                QuestionSpec(
                    kind="numeric",
                    prompt=("What number does this program print?\n\n"
                            "```python\n"
                            "total = 0\n"
                            "for n in range(1, 5):\n"
                            "    total = total + n * 2\n"
                            "print(total)\n"
                            "```"),
                    points=2,
                    feedback="`range(1, 5)` gives 1, 2, 3 and 4; doubled they sum to 2 + 4 + 6 + 8 = 20.",
                    answer=Decimal("20"),
                    tolerance=Decimal("0"),
                ),
                QuestionSpec(
                    kind="short",
                    prompt="Which keyword leaves a loop immediately? Type just the keyword.",
                    points=2,
                    feedback="`break` ends the loop at once; `continue` only skips to the next repetition.",
                    accepted_answers=("break",),
                    match_mode="exact",
                ),
            ),
        ),
        QuizSpec(
            title="Functions and Collections Check",
            description="Six questions on functions, scope, lists and dictionaries.",
            module_index=2,
            time_limit_minutes=15,
            max_attempts=3,
            passing_score=70,
            questions=(
                QuestionSpec(
                    kind="single",
                    prompt="What does a function return if its body has no `return` statement?",
                    points=2,
                    feedback="Without a `return`, a function returns `None`.",
                    options=(
                        OptionSpec("`None`", True),
                        OptionSpec("`0`", False),
                        OptionSpec("An empty string", False),
                        OptionSpec("It raises an error", False),
                    ),
                ),
                QuestionSpec(
                    kind="short",
                    prompt=("Write an expression that reads the value stored under the key "
                            "`\"name\"` in the dictionary `person`."),
                    points=2,
                    feedback="Square brackets with the key, or `.get()` with the key, both read the value.",
                    accepted_answers=('person["name"]', "person['name']", 'person.get("name")'),
                    match_mode="pattern",
                    pattern=r"""person\s*(?:\[\s*(["'])name\1\s*\]|\.get\(\s*(["'])name\2\s*\))""",
                ),
                QuestionSpec(
                    kind="numeric",
                    prompt=("What number does this program print?\n\n"
                            "```python\n"
                            "scores = [4, 8, 15, 16, 23, 42]\n"
                            "print(len(scores[1:4]))\n"
                            "```"),
                    points=2,
                    feedback="`scores[1:4]` holds the items at indexes 1, 2 and 3: three items.",
                    answer=Decimal("3"),
                    tolerance=Decimal("0"),
                ),
                QuestionSpec(
                    kind="multiple",
                    prompt="Which statements about Python lists are true? Select all that apply.",
                    points=3,
                    feedback=("Lists are mutable, zero-indexed and may mix types; `sort()` sorts "
                              "in place and returns `None`."),
                    options=(
                        OptionSpec("Lists can be changed after they are created.", True),
                        OptionSpec("The first item has index 0.", True),
                        OptionSpec("A list can hold values of different types.", True),
                        OptionSpec("`my_list.sort()` returns a new sorted list.", False,
                                   "It sorts in place and returns `None`; `sorted()` returns a new list."),
                    ),
                ),
                QuestionSpec(
                    kind="true_false",
                    prompt=("A variable created inside a function can still be used outside it "
                            "after the function returns."),
                    points=1,
                    feedback="Variables created inside a function are local to it and vanish when it returns.",
                    options=_true_false(False),
                ),
                QuestionSpec(
                    kind="essay",
                    prompt=("Explain the difference between a list and a dictionary, and describe "
                            "one situation where you would choose each. Include a line of code "
                            "for each."),
                    points=5,
                    feedback="Lists are ordered sequences found by position; dictionaries map keys to values.",
                    grading_guide=(
                        "Full marks: says a list is ordered and accessed by integer position while "
                        "a dictionary maps unique keys to values; gives a fitting situation for "
                        "each (for example a series of scores versus a student's details); "
                        "includes a correct line of code for each. Deduct 1 point per missing "
                        "part, and 1 point for code that would not run."
                    ),
                ),
            ),
        ),
    ),
    assignment=AssignmentSpec(
        title="Mini Project: Study Tracker",
        instructions=_PY_ASSIGNMENT,
        points=100,
        module_index=2,
        criteria=(
            CriterionSpec(
                title="Correctness",
                description="The program runs and each function gives the right results.",
                levels=(
                    LevelSpec("Excellent", "Runs without errors; all three functions are correct, "
                              "including the empty and invalid cases.", 40),
                    LevelSpec("Good", "Runs; one function mishandles an edge case.", 30),
                    LevelSpec("Developing", "Runs only partly, or two or more functions give "
                              "wrong results.", 15),
                    LevelSpec("Missing", "Does not run or is missing.", 0),
                ),
            ),
            CriterionSpec(
                title="Use of functions",
                description="Work is split into functions that take parameters and return values.",
                levels=(
                    LevelSpec("Excellent", "Each function has one job, uses its parameters and "
                              "returns its result.", 25),
                    LevelSpec("Good", "Functions present but some print instead of "
                              "returning, or rely on outside variables.", 18),
                    LevelSpec("Developing", "Most logic sits outside functions.", 10),
                    LevelSpec("Missing", "No functions.", 0),
                ),
            ),
            CriterionSpec(
                title="Lists and dictionaries",
                description="Sessions and totals are held in suitable collections.",
                levels=(
                    LevelSpec("Excellent", "A list of dictionaries for sessions and a dictionary "
                              "of totals, used idiomatically.", 20),
                    LevelSpec("Good", "Suitable collections with some awkward use.", 15),
                    LevelSpec("Developing", "Collections used but poorly suited to the data.", 8),
                    LevelSpec("Missing", "No collections used.", 0),
                ),
            ),
            CriterionSpec(
                title="Readability and reflection",
                description="Clear names, tidy layout and a short honest reflection.",
                levels=(
                    LevelSpec("Excellent", "Descriptive names, docstrings or comments where useful, "
                              "and a thoughtful reflection.", 15),
                    LevelSpec("Good", "Mostly clear; reflection brief.", 10),
                    LevelSpec("Developing", "Hard to follow, or no reflection.", 5),
                    LevelSpec("Missing", "Unreadable and no reflection.", 0),
                ),
            ),
        ),
    ),
)


# ---------------------------------------------------------------------------------------------
# Data Literacy: Reading Charts and Statistics
# ---------------------------------------------------------------------------------------------

_DATA_DESCRIPTION = """\
# What you will learn

Numbers and charts arrive every day in news, reports and social media, and many of them are
built to persuade rather than inform. This course gives you the tools to read them critically.

- **Centre:** mean, median and mode, and when each one misleads.
- **Spread:** range, interquartile range and standard deviation.
- **Relationships:** what correlation does and does not tell you, and how causes are tested.
- **Charts:** the common tricks, and a checklist for reading any chart.

# Who it is for

Learners comfortable with basic arithmetic and percentages who want to reason confidently about
data. It pairs well with the personal finance course.

# How it works

Three modules of short lessons with worked examples, two quizzes, and a final assignment in
which you critique a real published chart and propose a fairer version.
"""

_DATA_CENTRE = """\
# Three kinds of average

When someone says "the average", they may mean one of three different things:

- **Mean:** add up all the values and divide by how many there are.
- **Median:** the middle value once the data are sorted. With an even number of values, it is
  the mean of the two middle ones.
- **Mode:** the value that appears most often.

# Worked example

Study hours logged on six days: 2, 3, 3, 5, 7, 10.

- Mean: (2 + 3 + 3 + 5 + 7 + 10) ÷ 6 = 30 ÷ 6 = **5**
- Median: the two middle values are 3 and 5, so (3 + 5) ÷ 2 = **4**
- Mode: **3**, the only value that appears twice

# When the mean misleads

The mean is pulled towards extreme values, called *outliers*. Five people in a small team earn,
in thousands a year: 30, 32, 35, 38 and 300.

- Mean: 435 ÷ 5 = **87**
- Median: **35**

Four of the five earn far less than the "average salary" of 87 thousand. This is why incomes and
house prices are usually reported as medians.

# Which one to use?

| Situation | Best summary |
|---|---|
| Roughly symmetric data without big outliers | Mean |
| Skewed data or outliers: incomes, prices, waiting times | Median |
| Categories: favourite subject, most common shoe size sold | Mode |

# A rule of thumb about skew

If the mean is much larger than the median, a few very large values are probably pulling it up:
the data are **right-skewed**. If the mean is much smaller than the median, a few very small
values are pulling it down: the data are **left-skewed**.

# Try it

Find the mean, median and mode of 4, 4, 6, 8, 13. Then replace 13 with 130 and see which of the
three changes.
"""

_DATA_SPREAD = """\
# Why the centre is not enough

Two classes both average 70% on a test. In one, every score lies between 65 and 75; in the
other, scores run from 30 to 100. The averages match, but the classes are very different.
**Spread** measures how much values vary.

# Range

Range = maximum − minimum. It is quick to work out but depends entirely on the two most extreme
values, so a single outlier can distort it.

# Interquartile range

Sort the data and cut it into four equal parts. The **first quartile (Q1)** sits a quarter of
the way up and the **third quartile (Q3)** three quarters of the way up. The interquartile range,
IQR = Q3 − Q1, is the spread of the middle half of the data, so extremes cannot distort it. It
is the box in a box plot.

# Standard deviation

The **standard deviation** measures the typical distance of values from the mean.

## Worked example

Data: 2, 4, 4, 4, 5, 5, 7, 9. The mean is 40 ÷ 8 = 5.

1. Subtract the mean from each value: −3, −1, −1, −1, 0, 0, 2, 4.
2. Square each difference: 9, 1, 1, 1, 0, 0, 4, 16.
3. Average the squares: 32 ÷ 8 = 4. This is the *variance*.
4. Take the square root: √4 = **2**.

So values typically sit about 2 away from the mean of 5. When the data are a *sample* from a
larger group, statisticians divide by n − 1 instead of n, which gives about 2.14 here.

# Reading spread in practice

- A small standard deviation means values cluster tightly around the mean.
- For roughly bell-shaped data, about **68%** of values lie within one standard deviation of the
  mean and about **95%** within two.
- Always report spread alongside an average: "average delivery time 3 days" means little if some
  deliveries take three weeks.

# Try it

Find the range of 12, 15, 11, 30, 14. Which single value makes it large, and how much smaller is
the range without it?
"""

_DATA_CORRELATION = """\
# What correlation measures

Correlation describes how two numeric variables move together.

- **Positive:** as one rises, the other tends to rise, like hours studied and test scores.
- **Negative:** as one rises, the other tends to fall, like a car's age and its resale price.
- **None:** no consistent pattern, like shoe size and exam score.

# The correlation coefficient

The most common measure is Pearson's **r**, which runs from **−1 to +1**:

| r | Rough reading |
|---|---|
| +1 | perfect positive straight-line relationship |
| around +0.7 | strong positive |
| around +0.3 | weak positive |
| 0 | no straight-line relationship |
| around −0.7 | strong negative |
| −1 | perfect negative straight-line relationship |

These labels are rough guides; what counts as strong depends on the field.

# Look at the scatter plot first

Always look at the data, not just the number:

1. **r only captures straight-line patterns.** A U-shaped relationship can have r close to 0
   even though the variables are closely related.
2. **Outliers can create or hide a correlation.** One extreme point can drag r up or down.
3. **Combining groups can mislead.** Two groups that each show no trend can show one when pooled,
   and a trend within every group can even reverse in the combined data.

# r squared

Squaring r gives the share of the variation in one variable that a straight line through the
other accounts for. With r = 0.6, r² = 0.36: about 36% of the variation is accounted for and
64% is not.

# Example

A survey of 200 students finds r = 0.45 between nightly hours of sleep and average grade. That
is a moderate positive relationship: students who sleep more tend to have somewhat higher
grades, with plenty of exceptions. It does **not** show that extra sleep causes better grades;
that question is the subject of the next lesson.
"""

_DATA_CAUSATION = """\
# The classic warning

Ice cream sales and drownings rise and fall together. Ice cream does not cause drowning: hot
weather increases both. When two things are correlated there are several possible explanations,
and causation is only one of them.

# Possible explanations for a correlation

1. **A causes B.** More practice improves exam results.
2. **B causes A, reverse causation.** Areas with more police officers may record more crime,
   because high crime leads to more officers being sent there.
3. **A third factor drives both, a confounding variable.** Hot weather drives both ice cream
   sales and swimming, and so drownings.
4. **Coincidence.** Search enough data and some unrelated series will line up by chance.
5. **Selection effects.** The way the data were gathered creates the pattern, as when only
   successful companies are studied to find the secrets of success.

# How causes are established

- **Randomised controlled experiments:** people are randomly assigned to a treatment or a
  control group. Randomisation balances confounders on average, so a clear difference in
  outcomes can be credited to the treatment.
- **Careful observational studies:** when an experiment is impossible or unethical, researchers
  adjust for known confounders, check that the cause comes before the effect, look for a
  dose-response pattern (more exposure, bigger effect) and look for consistent results across
  independent studies.

# Questions to ask of a headline

When you read "X linked to Y":

- Was this an experiment or an observational study?
- What else differs between the groups that could explain the result?
- Could the direction be reversed?
- How large is the effect, and how many people were studied?

# Example

"Students who eat breakfast get better grades." Possible confounders include household income,
sleep habits and daily routine. A fair conclusion is: breakfast eaters tend to score higher, but
this study alone cannot show that breakfast is the reason.
"""

_DATA_MISLEADING = """\
# Truncated axes

Bar charts show values by the **length** of each bar, so their value axis should start at zero.
Suppose monthly sign-ups rose from 1,000 to 1,100, drawn as bars on an axis starting at 900. The
bars are 100 and 200 units tall, so February looks **twice** as big, yet the real growth is
(1,100 − 1,000) ÷ 1,000 = **10%**.

Line charts of change over time may reasonably use an axis that does not start at zero, as long
as the scale is clearly labelled.

# Other common tricks

- **Cherry-picked time windows:** showing only the period that supports a story. A share price
  that "doubled" since its lowest point may still be below where it stood two years ago.
- **Dual axes:** two lines measured on different left and right scales can be made to move
  together or cross wherever the designer likes.
- **Area and 3D distortion:** if an icon is doubled in both height and width to show twice the
  value, its area is four times as large, so it looks four times as big.
- **Cumulative totals:** a running total can only go up, hiding the fact that each month's new
  sales are falling.
- **Missing denominators:** "accidents up 20% in one city" means little if its population grew
  30%. Compare rates, such as accidents per 1,000 people, not raw counts.
- **Uneven intervals:** gaps of one year placed next to gaps of five years on the same axis
  distort the shape of a trend.

# Percent and percentage points

A rise from 40% to 44% is **4 percentage points** but a **10% relative increase**. Headlines
often quote whichever sounds more dramatic. Watch for which one you are being shown.

# Your defence

Before reacting to a chart:

1. Read the axis labels and where each axis starts.
2. Ask what time period was chosen, and why.
3. Turn counts into rates where you can.
4. Describe the change in your own words, with the actual numbers.
"""

_DATA_CHECKLIST = """\
# Start with the words

1. **Title and subtitle:** what claim is the chart making?
2. **Source:** who collected the data, and do they gain from a particular result?
3. **Date and coverage:** when and where were the data collected, and about whom?

# Then the structure

4. **Axes:** what is measured on each, in what units, and where does each axis start?
5. **Scale:** is it linear or logarithmic? On a log scale equal distances mean equal *ratios*,
   so 10 to 100 looks the same as 100 to 1,000.
6. **Chart type:** does it suit the data? A pie chart only works for parts of a single whole
   that add up to 100%.

# Then the data

7. **Counts or rates?** Raw counts favour large groups.
8. **Sample size:** a percentage based on 12 people is far less reliable than one based on
   12,000.
9. **Uncertainty:** are error bars or ranges shown? A difference smaller than the margin of error
   may just be noise.
10. **What is missing?** Years, groups or categories left out can change the story.

# Finally, the conclusion

Write one sentence saying what the chart actually shows and compare it with the headline. The
honest sentence is often more modest.

# Worked example

Headline: "Online course completion soars!" A line chart shows completion rising from 40% to 44%
over one term, on an axis running from 38% to 46%, based on a survey of 150 students.

Applying the checklist:

- The narrow axis makes a 4-point rise fill most of the chart's height.
- With 150 students the margin of error is about ±8 percentage points, twice the size of the
  change.
- A single term is a short window; one good term is not yet a trend.

An honest summary: "Completion rose slightly this term, but the change is within what chance
alone could produce."

# Make it a habit

Run through the checklist quickly every time. After a few charts it takes less than a minute.
"""

_DATA_ASSIGNMENT = """\
# Your task

Find a chart published in the news, a report or on social media, and write a critique of it of
about 400-600 words. Include a link to the chart or describe it precisely enough that someone
could recognise it.

# Include these parts

1. **The claim:** in one or two sentences, what the chart (or its headline) says.
2. **Design review:** go through the chart-reading checklist from this course: axes and their
   starting points, scale, chart type, time window, counts or rates.
3. **Statistical reasoning:** comment on the averages, spread, sample size or correlations
   involved. If the chart implies a cause, name at least one possible confounder or alternative
   explanation.
4. **A fairer version:** describe how you would redraw the chart (type, axes, labels, what data
   to add) so that it shows the data honestly, and write an accurate one-sentence headline.

# Tips

- A chart can be fair. If yours is, say why, and focus on what a careless reader might still
  get wrong.
- Quote real numbers from the chart wherever you can.
"""

_DATA = CourseSpec(
    slug="data-literacy-charts-and-statistics",
    title="Data Literacy: Reading Charts and Statistics",
    summary=(
        "Learn to read numbers and charts critically: choose the right average, measure spread, "
        "tell correlation from causation, and spot the design tricks that make charts "
        "misleading."
    ),
    description=_DATA_DESCRIPTION,
    category="Data",
    level="intermediate",
    estimated_hours=3,
    modules=(
        ModuleSpec(
            title="Describing Data",
            summary="Summarise a set of numbers by its centre and its spread.",
            lessons=(
                LessonSpec("Mean, Median and Mode", _DATA_CENTRE, 15),
                LessonSpec("Measuring Spread", _DATA_SPREAD, 20),
            ),
        ),
        ModuleSpec(
            title="Relationships in Data",
            summary="What correlation tells you, and what it takes to show a cause.",
            lessons=(
                LessonSpec("Correlation", _DATA_CORRELATION, 15),
                LessonSpec("Correlation Is Not Causation", _DATA_CAUSATION, 15),
            ),
        ),
        ModuleSpec(
            title="Reading Charts Critically",
            summary="The common ways charts mislead, and a checklist for any chart.",
            lessons=(
                LessonSpec("How Charts Mislead", _DATA_MISLEADING, 15),
                LessonSpec("A Checklist for Reading Any Chart", _DATA_CHECKLIST, 15),
            ),
        ),
    ),
    quizzes=(
        QuizSpec(
            title="Describing Data Check",
            description="Five questions on averages and spread.",
            module_index=0,
            time_limit_minutes=10,
            max_attempts=3,
            passing_score=70,
            questions=(
                QuestionSpec(
                    kind="numeric",
                    prompt="What is the mean of 4, 8, 15, 16, 23 and 42?",
                    points=2,
                    feedback="The values add up to 108, and 108 ÷ 6 = 18.",
                    answer=Decimal("18"),
                    tolerance=Decimal("0"),
                ),
                QuestionSpec(
                    kind="single",
                    prompt=("Which summary best describes the typical household income in a town "
                            "where a few residents are extremely rich?"),
                    points=2,
                    feedback="The median is not pulled up by a handful of extreme values.",
                    options=(
                        OptionSpec("The mean", False, "A few very high incomes drag the mean upwards."),
                        OptionSpec("The median", True),
                        OptionSpec("The mode", False, "Incomes rarely repeat exactly, so the mode says little."),
                        OptionSpec("The range", False, "The range measures spread, not a typical value."),
                    ),
                ),
                QuestionSpec(
                    kind="multiple",
                    prompt="Which of these are measures of **spread**? Select all that apply.",
                    points=3,
                    feedback="Range, interquartile range and standard deviation measure spread; median and mode measure centre.",
                    options=(
                        OptionSpec("Range", True),
                        OptionSpec("Interquartile range", True),
                        OptionSpec("Standard deviation", True),
                        OptionSpec("Median", False, "The median is a measure of centre."),
                        OptionSpec("Mode", False, "The mode is a measure of centre."),
                    ),
                ),
                QuestionSpec(
                    kind="true_false",
                    prompt=("If the mean of a data set is much larger than its median, the data "
                            "are probably right-skewed."),
                    points=1,
                    feedback="A few very large values pull the mean above the median, a sign of right skew.",
                    options=_true_false(True),
                ),
                QuestionSpec(
                    kind="short",
                    prompt="What is the name of the middle value of a sorted data set?",
                    points=2,
                    feedback="The median splits sorted data into two equal halves.",
                    accepted_answers=("median", "the median"),
                    match_mode="case_insensitive",
                ),
            ),
        ),
        QuizSpec(
            title="Correlation and Charts Check",
            description="Six questions on correlation, causation and misleading charts.",
            module_index=2,
            time_limit_minutes=15,
            max_attempts=3,
            passing_score=70,
            questions=(
                QuestionSpec(
                    kind="single",
                    prompt="Two variables have a correlation coefficient of r = −0.8. What does this tell you?",
                    points=2,
                    feedback="A value near −1 means a strong negative straight-line relationship.",
                    options=(
                        OptionSpec("There is a strong negative relationship.", True),
                        OptionSpec("There is a weak negative relationship.", False),
                        OptionSpec("There is a strong positive relationship.", False,
                                   "The sign shows the direction: negative means one falls as the other rises."),
                        OptionSpec("One variable causes the other to fall.", False,
                                   "Correlation alone says nothing about cause."),
                    ),
                ),
                QuestionSpec(
                    kind="short",
                    prompt=("What do we call a third variable that influences both things being "
                            "compared and can create a misleading correlation between them?"),
                    points=2,
                    feedback="A confounding variable, like hot weather for ice cream sales and drownings.",
                    accepted_answers=("confounding variable", "a confounder", "confounding factor",
                                      "lurking variable"),
                    match_mode="pattern",
                    pattern=(r"(?i)(?:an?\s+)?(?:confounding(?:\s+(?:variable|factor))?|confounder"
                             r"|lurking\s+variable)"),
                ),
                QuestionSpec(
                    kind="numeric",
                    prompt=("A bar chart's axis starts at 900 and shows bars for 1,000 and 1,200. "
                            "By what percentage did the value actually increase? Give a number "
                            "without the % sign."),
                    points=2,
                    feedback="(1,200 − 1,000) ÷ 1,000 = 20%, even though the second bar looks three times as tall.",
                    answer=Decimal("20"),
                    tolerance=Decimal("0.5"),
                ),
                QuestionSpec(
                    kind="true_false",
                    prompt=("Randomly assigning people to a treatment or control group helps "
                            "balance confounding variables between the groups."),
                    points=1,
                    feedback="Randomisation balances confounders on average, which is why experiments can show causes.",
                    options=_true_false(True),
                ),
                QuestionSpec(
                    kind="multiple",
                    prompt="Which of these are warning signs of a misleading chart? Select all that apply.",
                    points=3,
                    feedback=("Truncated bar axes, unexplained dual axes and raw counts across "
                              "groups of very different size all distort comparisons."),
                    options=(
                        OptionSpec("A bar chart whose value axis starts well above zero", True),
                        OptionSpec("Two lines on different left and right scales", True),
                        OptionSpec("Raw counts compared between cities of very different size", True),
                        OptionSpec("A clearly named data source", False,
                                   "Citing the source is good practice."),
                        OptionSpec("Axis labels that include units", False,
                                   "Labelled units help readers."),
                    ),
                ),
                QuestionSpec(
                    kind="essay",
                    prompt=("A news story reports: *\"People who drink coffee live longer.\"* "
                            "Give two explanations other than coffee causing longer life, and "
                            "describe a study that could test whether coffee is the cause."),
                    points=5,
                    feedback=("Confounders and reverse causation can explain the link; only a "
                              "well-designed study can isolate coffee's effect."),
                    grading_guide=(
                        "Full marks: two distinct alternatives, such as a confounder (income, "
                        "employment, overall health), reverse causation (people who are already "
                        "unwell may stop drinking coffee) or selection effects; and a study "
                        "design that assigns coffee at random or, failing that, an observational "
                        "design that adjusts for named confounders. 1 point per alternative, up to "
                        "3 points for the study design."
                    ),
                ),
            ),
        ),
    ),
    assignment=AssignmentSpec(
        title="Chart Critique",
        instructions=_DATA_ASSIGNMENT,
        points=100,
        module_index=2,
        criteria=(
            CriterionSpec(
                title="Understanding the claim",
                description="The chart's message is stated accurately and concisely.",
                levels=(
                    LevelSpec("Excellent", "Claim stated precisely, with the key numbers.", 20),
                    LevelSpec("Good", "Claim stated, slightly vague.", 14),
                    LevelSpec("Developing", "Claim misread or only partly stated.", 7),
                    LevelSpec("Missing", "No statement of the claim.", 0),
                ),
            ),
            CriterionSpec(
                title="Design review",
                description="The chart's design is checked systematically.",
                levels=(
                    LevelSpec("Excellent", "Axes, scale, chart type, time window and counts versus "
                              "rates are all checked, with specific observations.", 30),
                    LevelSpec("Good", "Most checklist points covered with some detail.", 22),
                    LevelSpec("Developing", "Only one or two points, or generic comments.", 10),
                    LevelSpec("Missing", "No design review.", 0),
                ),
            ),
            CriterionSpec(
                title="Statistical reasoning",
                description="Averages, spread, sample size and causal claims are reasoned about correctly.",
                levels=(
                    LevelSpec("Excellent", "Accurate use of course ideas, including a named "
                              "confounder or alternative explanation where relevant.", 30),
                    LevelSpec("Good", "Mostly accurate, with one gap or small error.", 22),
                    LevelSpec("Developing", "Ideas mentioned but misapplied.", 10),
                    LevelSpec("Missing", "No statistical reasoning.", 0),
                ),
            ),
            CriterionSpec(
                title="A fairer version",
                description="A concrete redesign and an accurate headline.",
                levels=(
                    LevelSpec("Excellent", "Specific redesign that fixes the problems found, and "
                              "an honest, precise headline.", 20),
                    LevelSpec("Good", "Sensible redesign; headline slightly overstated.", 14),
                    LevelSpec("Developing", "Vague redesign or misleading headline.", 7),
                    LevelSpec("Missing", "No redesign.", 0),
                ),
            ),
        ),
    ),
)


COURSES: list[CourseSpec] = [_FINANCE, _PYTHON, _DATA]


def course_by_slug(slug: str) -> CourseSpec:
    """The demo course with this slug; ``KeyError`` when there is none."""
    for course in COURSES:
        if course.slug == slug:
            return course
    raise KeyError(slug)
