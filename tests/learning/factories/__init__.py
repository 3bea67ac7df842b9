"""Rows for the learning tests, one module per feature: each builds the course its tests need
(``catalog`` published courses with modules and lessons, ``manage`` courses with staff for the
editor, ``assign`` courses with assignments, grades and quiz attempts, ``quiz`` questions of
every kind, ``certificates`` completed courses)."""
