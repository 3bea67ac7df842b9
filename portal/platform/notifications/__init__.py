"""Notifications (spec 15): messages to one user, with a bell and a page."""
