"""Domain errors raised by services and importers; views and the API turn them into 4xx."""

from pathlib import Path

from common.errors import DomainError


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

    def body(self) -> dict:
        return {**super().body(), "line": self.line}


class UploadTooLargeError(DomainError):
    """An uploaded file is larger than ``UPLOAD_MAX_BYTES``."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload larger than {limit} bytes (UPLOAD_MAX_BYTES)")


# ---- assignment engine (workspace)


class NotYourAssignmentError(DomainError):
    """The assignment (or judgment) belongs to another annotator."""

    http_status = 403


class LeaseExpiredError(DomainError):
    """The lease ran out and the task was handed to, and filled by, other annotators."""

    http_status = 409


class AlreadySubmittedError(DomainError):
    """The assignment was already submitted (with another idempotency key) or skipped."""

    http_status = 409


class IdempotencyConflictError(DomainError):
    """The idempotency key was already used for a different assignment or annotator."""

    http_status = 409


class ProjectInactiveError(DomainError):
    """The project was deactivated: its live leases take no more submissions."""

    http_status = 409


class EditWindowClosedError(DomainError):
    """A judgment can only be edited within its project's edit window."""

    http_status = 409


# ---- project membership


class NotAMemberError(DomainError):
    """The user holds no active membership of the project (or one whose role does not allow
    this): to them the project does not exist."""

    http_status = 404


class ProjectRoleError(DomainError):
    """A member whose role in the project does not allow this (a viewer leasing a task)."""

    http_status = 403


class CapReachedError(DomainError):
    """The member reached a cap of the membership (judgments in all, or today)."""

    http_status = 409


class InvitationGoneError(DomainError):
    """The invitation link expired, was revoked or was used up."""

    http_status = 410
