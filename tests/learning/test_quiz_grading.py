"""The pure grading functions, kind by kind, edges included."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from portal.learning.assessment import grading
from portal.learning.assessment.grading import (
    grade,
    grade_multiple,
    grade_numeric,
    grade_short,
    grade_single,
    pattern_problem,
    percent_of,
    to_decimal,
)

D = Decimal


class TestSingle:
    def test_the_correct_option_earns_all_points(self):
        assert grade_single(["a"], ["a"], 2) == grading.Grade(D("2.00"), True)

    @pytest.mark.parametrize("selected", [[], ["b"], ["a", "b"], ["zzz"]])
    def test_anything_else_earns_nothing(self, selected):
        assert grade_single(["a"], selected, 2) == grading.Grade(D("0.00"), False)

    def test_ids_compare_as_strings(self):
        import uuid

        option = uuid.uuid4()
        assert grade_single([option], [str(option)], 1).correct

    def test_no_correct_option_is_never_right(self):
        assert grade_single([], [], 1) == grading.Grade(D("0.00"), False)


class TestMultiple:
    CORRECT = ["a", "b", "c"]  # "d" and "e" are wrong

    @pytest.mark.parametrize(("selected", "points", "correct"), [
        (["a", "b", "c"], "3.00", True),
        (["a", "b"], "2.00", False),
        (["a"], "1.00", False),
        (["a", "b", "c", "d"], "2.00", False),  # 3 right - 1 wrong
        (["a", "d"], "0.00", False),  # 1 - 1
        (["a", "d", "e"], "0.00", False),  # never below zero
        (["d", "e"], "0.00", False),
        ([], "0.00", False),
        (["a", "b", "c", "d", "e"], "1.00", False),  # ticking everything is not a strategy
    ])
    def test_partial_credit(self, selected, points, correct):
        assert grade_multiple(self.CORRECT, selected, 3) == grading.Grade(D(points), correct)

    def test_shares_are_rounded_to_cents(self):
        assert grade_multiple(self.CORRECT, ["a"], 1).points == D("0.33")
        assert grade_multiple(self.CORRECT, ["a", "b"], 1).points == D("0.67")

    def test_duplicates_count_once(self):
        assert grade_multiple(["a", "b"], ["a", "a"], 2).points == D("1.00")

    def test_no_correct_option_earns_nothing(self):
        assert grade_multiple([], ["a"], 2) == grading.Grade(D("0.00"), False)


class TestShort:
    def test_exact_match_ignores_only_surrounding_spaces(self):
        assert grade_short("  Paris ", ["Paris"], "exact", 1).correct
        assert not grade_short("paris", ["Paris"], "exact", 1).correct
        assert not grade_short("Par is", ["Paris"], "exact", 1).correct

    def test_case_insensitive(self):
        assert grade_short("ADA lovelace", ["Ada Lovelace"], "case_insensitive", 2) == grading.Grade(D("2.00"), True)
        assert grade_short("straße", ["STRASSE"], "case_insensitive", 1).correct  # casefold
        assert not grade_short("Ada", ["Ada Lovelace"], "case_insensitive", 1).correct

    def test_any_accepted_answer_will_do(self):
        assert grade_short("colour", ["color", "colour"], "exact", 1).correct

    def test_pattern_must_match_the_whole_answer(self):
        assert grade_short("colour", [r"colou?r"], "pattern", 1).correct
        assert grade_short("color", [r"colou?r"], "pattern", 1).correct
        assert not grade_short("colors", [r"colou?r"], "pattern", 1).correct
        assert not grade_short("my colour", [r"colou?r"], "pattern", 1).correct

    def test_pattern_runs_only_on_answers_up_to_the_cap(self):
        at_cap = "a" * grading.MAX_MATCHED_LENGTH
        assert grade_short(at_cap, [r"a+"], "pattern", 1).correct
        assert not grade_short(at_cap + "a", [r"a+"], "pattern", 1).correct
        assert grade_short(at_cap + "a", [at_cap + "a"], "exact", 1).correct  # the cap is for patterns only

    def test_a_refused_pattern_never_matches(self):
        assert not grade_short("aaaa", [r"(a+)+"], "pattern", 1).correct
        assert not grade_short("x", ["("], "pattern", 1).correct

    @pytest.mark.parametrize("answer", [None, "", "   "])
    def test_blank_is_wrong_even_against_a_pattern_that_accepts_it(self, answer):
        assert not grade_short(answer, [r".*"], "pattern", 1).correct
        assert not grade_short(answer, [""], "exact", 1).correct


class TestNumeric:
    @pytest.mark.parametrize(("answer", "right"), [
        ("3.14", True), ("3.13", True), ("3.15", True),  # the edges count
        ("3.129999", False), ("3.150001", False), ("3", False),
        ("3,14", True),  # a decimal comma
        (" 3.14 ", True), (D("3.14"), True),
        ("", False), (None, False), ("pi", False), ("NaN", False), ("Infinity", False),
    ])
    def test_tolerance(self, answer, right):
        assert grade_numeric(answer, D("3.14"), D("0.01"), 2) == grading.Grade(D("2.00") if right else D("0.00"), right)

    def test_no_tolerance_means_exact(self):
        assert grade_numeric("42", D(42), None, 1).correct
        assert grade_numeric("42.000", D(42), D(0), 1).correct
        assert not grade_numeric("42.001", D(42), D(0), 1).correct

    def test_negative_numbers(self):
        assert grade_numeric("-2.5", D("-2.4"), D("0.1"), 1).correct
        assert not grade_numeric("2.4", D("-2.4"), D("0.1"), 1).correct


class TestPatterns:
    @pytest.mark.parametrize("pattern", [r"colou?r", r"\d{3}-\d{4}", r"(yes|no)", r"[A-Z][a-z]+", r"(ab)+", r"a+b*"])
    def test_ordinary_patterns_pass(self, pattern):
        assert pattern_problem(pattern) is None

    @pytest.mark.parametrize("pattern", [r"(a+)+", r"(a*)*", r"(\w+\s?)*", r"(a|aa+){2,}", r"(x{1,3})+"])
    def test_nested_repetition_is_refused(self, pattern):
        assert "repeats a group" in pattern_problem(pattern)

    def test_invalid_and_overlong_and_empty(self):
        assert "not a valid regular expression" in pattern_problem("(unclosed")
        assert "at most 200" in pattern_problem("a" * 201)
        assert pattern_problem("a" * 200) is None
        assert "empty" in pattern_problem("")

    def test_matching_stays_fast_on_hostile_input(self):
        """The worst accepted shape on the longest answer matched finishes at once."""
        started = time.perf_counter()
        grade_short("a" * 10_000 + "!", [r"a*a*a*a*b"], "pattern", 1)
        assert time.perf_counter() - started < 2  # a generous bound, not a benchmark


class TestDispatch:
    def test_each_kind(self):
        assert grade("single", 1, correct_option_ids=["a"], selected_option_ids=["a"]).correct
        assert grade("true_false", 1, correct_option_ids=["t"], selected_option_ids=["f"]).points == 0
        assert grade("multiple", 2, correct_option_ids=["a", "b"], selected_option_ids=["a"]).points == D("1.00")
        assert grade("short", 1, text="x", accepted_answers=["X"], match="case_insensitive").correct
        assert grade("numeric", 1, number="1", numeric_answer=D(1), numeric_tolerance=D(0)).correct
        assert grade("essay", 5, text="Long answer") is None

    def test_percent(self):
        assert percent_of(D("7.5"), D(10)) == D("75.00")
        assert percent_of(D(1), D(3)) == D("33.33")
        assert percent_of(D(0), D(0)) == D("0.00")
        assert percent_of(D(10), D(10)) == D("100.00")

    def test_to_decimal(self):
        assert to_decimal("1e3") == D(1000)
        assert to_decimal("-0.5") == D("-0.5")
        assert to_decimal("1.2.3") is None
        assert to_decimal("inf") is None
