"""Suspicious-activity cases (spec service 5): opening a case from an alert or a confirmed
screening hit and the officers' work on it (``services``), its timeline and the queues and
dashboard (``queries``), and the suspicious activity report (``reports``). Served by
``blueprints/compliance/cases.py``."""
