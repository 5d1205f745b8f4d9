"""Domain errors raised by services and importers; views and the API turn them into 4xx."""

from pathlib import Path


class DomainError(Exception):
    """A request that breaks a business rule; the message is safe to show to the user."""


class ImmutableError(DomainError):
    """A published principle set (or another frozen record) cannot be changed."""


class ImportFileError(DomainError):
    """A malformed record: the whole import is refused and nothing is written."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")
