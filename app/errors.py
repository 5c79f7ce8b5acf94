"""Domain errors that views map to form errors, API errors or CLI messages."""


class DomainError(Exception):
    """A refused operation; `code` is a SPEC error code, `field` the input it is about."""

    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(DomainError):
    code = "invalid_request"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"
