"""Where a service's database stands against its history: for ``/ready`` and the CLI."""

from dataclasses import dataclass

from shared_db import records
from shared_db.config import DbConfig
from shared_db.connections import connect
from shared_db.history import History, read_history


@dataclass(frozen=True)
class Status:
    service: str
    database: tuple[str, ...]
    head: tuple[str, ...]
    pending: int | None  # None: the database is at a revision this code does not know
    unknown: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        if self.unknown:
            return f"unknown revision {', '.join(self.unknown)} (migrated by newer code?)"
        if self.pending == 0:
            return "at head"
        if not self.database:
            return "empty"
        return "behind"


def pending_revisions(history: History, current: tuple[str, ...]) -> set[str]:
    """Revisions between ``current`` and the heads: what ``upgrade head`` would apply."""
    applied: set[str] = set()
    for revision in current:
        applied |= history.ancestors(revision)
    wanted: set[str] = set()
    for head in history.heads:
        wanted |= history.ancestors(head)
    return wanted - applied


def unknown_revisions(history: History, current: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(rev for rev in current if rev not in history.revisions)


def at_head(history: History, current: tuple[str, ...]) -> bool:
    return not unknown_revisions(history, current) and not pending_revisions(history, current)


def status_of(service: str, history: History, current: tuple[str, ...]) -> Status:
    unknown = unknown_revisions(history, current)
    if unknown:
        return Status(service, current, history.heads, None, unknown)
    return Status(service, current, history.heads, len(pending_revisions(history, current)))


def status(config: DbConfig, service: str) -> Status:
    """The database's revision against the code's head."""
    history = read_history(config, service)
    with connect(config, service) as connection:
        current = records.current_revisions(connection, service)
    return status_of(service, history, current)
