"""Where a service's database stands against its history: for ``/ready`` and the CLI.

A database can be *ahead* of the code: a newer release migrated it (a rolling deploy,
or a rollback to the previous image). The code does not have those revisions' files,
but their records (``shared_db.records``) say what they were: if every one of them is
an ``expand`` revision, the schema still serves this code ("database ahead,
compatible"); the first ``contract`` revision (or one whose phase is unknown) makes it
incompatible.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from shared_db import records
from shared_db.config import DbConfig
from shared_db.connections import connect
from shared_db.history import History, read_history
from shared_db.records import Applied


@dataclass(frozen=True)
class Status:
    service: str
    database: tuple[str, ...]
    head: tuple[str, ...]
    pending: int | None  # None: the database's history cannot be related to this code's
    unknown: tuple[str, ...] = ()  # revisions this code does not know, not shown to be newer
    ahead: tuple[str, ...] = ()  # applied revisions newer than this code, oldest first
    blocking: str | None = None  # the first of them that is not "expand"
    last_applied: datetime | None = None  # when the latest revision was applied
    migration_s: float | None = None  # the recorded time of all applied revisions
    # Every pending revision is a contract revision (or has no phase): with migrations
    # of the expand phase only (MIGRATION_PHASES=expand), the code serves meanwhile.
    only_contract_pending: bool = False
    # The database is at a revision that a baseline of this code squashed away
    # (``migrate.squash``): the baseline's ID, which the database must reach first.
    squashed_into: str | None = None

    def serves(self, phases: str = "all") -> bool:
        """The code can serve now: ``compatible``, or, with ``phases="expand"``, behind by
        contract revisions only (they run later, in the migrate step)."""
        return self.compatible or (
            phases == "expand" and self.only_contract_pending and not self.unknown
        )

    @property
    def compatible(self) -> bool:
        """This code can serve on the database as it is (at head, or ahead by expand
        revisions only)."""
        return self.pending == 0 and not self.unknown and self.blocking is None

    @property
    def state(self) -> str:
        if self.unknown and self.squashed_into:
            return (
                f"at {', '.join(self.unknown)}, squashed into the baseline {self.squashed_into} "
                f"(upgrade it to {self.squashed_into} with an older release first)"
            )
        if self.unknown:
            return f"unknown revision {', '.join(self.unknown)} (migrated by newer code?)"
        if self.ahead and self.blocking:
            return f"database ahead: {self.blocking} is a contract revision (incompatible)"
        if self.ahead:
            return f"database ahead, compatible ({', '.join(self.ahead)}: expand)"
        if self.pending == 0:
            return "at head"
        if not self.database:
            return "empty"
        return "behind"


def unknown_revisions(history: History, current: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(rev for rev in current if rev not in history.revisions)


def ahead_of(
    history: History, current: tuple[str, ...], applied: dict[str, Applied]
) -> tuple[str, ...]:
    """Applied revisions newer than this code: unknown to it, and recorded as descending
    from a revision it knows. Oldest first."""
    unknown = {rev for rev in applied if rev not in history.revisions}
    unknown |= set(unknown_revisions(history, current))
    newer: set[str] = set()
    for rev in unknown:
        seen, stack, reaches = set(), [rev], False
        while stack:
            found = stack.pop()
            if found in seen:
                continue
            seen.add(found)
            if found in history.revisions:
                reaches = True
                continue
            record = applied.get(found)
            stack.extend(record.down if record else ())
        if reaches:
            newer.add(rev)
    order = {rev: index for index, rev in enumerate(applied)}
    return tuple(sorted(newer, key=lambda rev: (order.get(rev, len(order)), rev)))


def pending_revisions(
    history: History, current: tuple[str, ...], applied: dict[str, Applied] | None = None
) -> set[str]:
    """Revisions of this code not applied to the database: what ``upgrade head`` would
    apply (the records also count, for a database ahead of the code)."""
    done: set[str] = set()
    for revision in current:
        done |= history.ancestors(revision)
    for revision in applied or {}:
        done |= history.ancestors(revision)
    wanted: set[str] = set()
    for head in history.heads:
        wanted |= history.ancestors(head)
    return wanted - done


def at_head(history: History, current: tuple[str, ...]) -> bool:
    """Exactly at this code's head (not ahead, not behind)."""
    return not unknown_revisions(history, current) and not pending_revisions(history, current)


def status_of(
    service: str,
    history: History,
    current: tuple[str, ...],
    applied: dict[str, Applied] | None = None,
) -> Status:
    applied = applied or {}
    ahead = ahead_of(history, current, applied)
    unknown = tuple(rev for rev in unknown_revisions(history, current) if rev not in ahead)
    if unknown:
        replaced = history.replaced()
        baseline = next((replaced[rev].id for rev in unknown if rev in replaced), None)
        return Status(service, current, history.heads, None, unknown, squashed_into=baseline)
    pending_set = pending_revisions(history, current, applied)
    pending = len(pending_set)
    blocking = next((rev for rev in ahead if _phase(applied, rev) != "expand"), None)
    only_contract = bool(pending_set) and all(
        history.revisions[rev].phase != "expand" for rev in pending_set
    )
    durations = [r.duration_s for r in applied.values() if r.duration_s is not None]
    return Status(
        service,
        current,
        history.heads,
        pending,
        (),
        ahead,
        blocking,
        max((r.applied_at for r in applied.values()), default=None),
        sum(durations) if durations else None,
        only_contract and not ahead,
    )


def _phase(applied: dict[str, Applied], revision: str) -> str | None:
    record = applied.get(revision)
    return record.phase if record else None


def read_state(connection: Connection, service: str) -> tuple[tuple[str, ...], dict[str, Applied]]:
    """(version-table revisions, records) of ``service``'s database."""
    return records.current_revisions(connection, service), records.applied(connection, service)


def status(config: DbConfig, service: str) -> Status:
    """The database's revision against the code's head."""
    history = read_history(config, service)
    with connect(config, service) as connection:
        current, applied = read_state(connection, service)
    return status_of(service, history, current, applied)


def modified_at(config: DbConfig, service: str, history: History) -> list[records.Modified]:
    """Applied revisions (in ``service``'s database) whose file changed since."""
    with connect(config, service) as connection:
        current, applied = read_state(connection, service)
    newer = set(ahead_of(history, current, applied))
    return records.modified_revisions(service, history, applied, newer)
