"""The base of every domain error: services raise it, views and the API turn it into a 4xx."""

from __future__ import annotations


class DomainError(Exception):
    """A request that breaks a business rule; the message is safe to show to the user.
    Subclasses may set ``http_status`` (the API answers 400 otherwise)."""

    def body(self) -> dict:
        """What an API response says about the error."""
        return {"detail": str(self)}
