"""Typed errors of the runtime: facts that a front end turns into one line and a hint.

An error carries what a front end needs: ``kind`` (a stable name that each front end
maps to its own hint: a shell command on a developer's machine, a setting in a
container), the ``service`` and ``revision`` concerned, and a short ``cause``.
``str(error)`` is the fact, prefixed once by the service; it never names a command
of a particular front end.
"""

from pathlib import Path


class SharedDbError(Exception):
    """Base class of every error the libraries raise on purpose."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        service: str | None = None,
        revision: str | None = None,
        cause: str | None = None,
        path: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        self.service = service
        self.revision = revision
        self.cause = cause
        self.path = path

    def __str__(self) -> str:
        return f"{self.service}: {self.message}" if self.service else self.message


class UnknownServiceError(SharedDbError):
    """A service name that has no migration history."""

    kind = "unknown_service"


class ConfigurationError(SharedDbError):
    """A setting is missing or unusable (kinds: ``no_database_url``, ``invalid_database_url``)."""

    kind = "configuration"


class DatabaseError(SharedDbError):
    """The database could not be reached or refused a request
    (kinds: ``database_unreachable``, ``database_error``)."""

    kind = "database_error"


class MigrationError(SharedDbError):
    """A migration could not run, or the history is unusable."""

    kind = "migration_failed"
