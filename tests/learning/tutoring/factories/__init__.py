"""Rows for the tutoring tests: ``chat`` courses with lessons to ask about, students in them and
recorded questions; ``engine`` the demo courses and courses made of given lessons with their
passages; ``paths`` courses with topics, quizzes and progress for learning paths."""
