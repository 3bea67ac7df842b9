"""Milestones, the rewards students earn for them, and withdrawals (spec service 9, Student Earnings)."""
