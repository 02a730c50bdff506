"""Typed errors of the shared db layer.

Every message says what happened, why, and what to type next; front ends print
``str(error)`` as one line and exit non-zero.
"""


class SharedDbError(Exception):
    """Base class of every error the library raises on purpose."""


class UnknownServiceError(SharedDbError):
    """A service name that has no migration history."""


class PostgresError(SharedDbError):
    """Postgres could not be found, started, reached or prepared."""


class MigrationError(SharedDbError):
    """A migration command failed or the history is unusable."""
