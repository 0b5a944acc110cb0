"""Domain errors. The web layer maps each to one HTTP status in one place."""


class DomainError(Exception):
    def __init__(self, message, *, fields=None):
        super().__init__(message)
        self.message = message
        # {field name: [messages]} for errors that concern the caller's input
        self.fields = fields or {}


class NotFound(DomainError):
    """The object does not exist, or the caller may not see it (the two look the same)."""


class Conflict(DomainError):
    """The request is valid but clashes with existing state."""


class Invalid(DomainError):
    """Input that only the domain can judge (it needs other rows) is wrong."""

    def __init__(self, field, message=None):
        # Invalid("trunk", "no such trunk"), or several at once: Invalid({field: message}).
        problems = field if isinstance(field, dict) else {field: message}
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems.items()),
                         fields={f: [m] for f, m in problems.items()})
