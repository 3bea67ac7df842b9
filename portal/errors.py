"""Domain errors: rules broken by a request, each with a message the user may read.

Services raise these; one error handler in the app factory turns them into a 4xx page or an
htmx fragment. Anything else that escapes is a bug and a 500.
"""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    #: The form field the message belongs next to, when there is one.
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class NotFound(DomainError):
    status_code = 404


class Forbidden(DomainError):
    status_code = 403


class Conflict(DomainError):
    status_code = 409


class Throttled(DomainError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
