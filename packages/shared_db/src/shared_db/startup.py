"""Migrate a service's database when the service starts: safely, once, under a lock.

1. Wait for the database (bounded retries with backoff).
2. Lock-free check: already at head -> nothing to do, no lock taken.
3. A revision this code does not know (the database was migrated by a newer
   version) -> refuse: never downgrade or "fix" it from an older release.
4. Otherwise take a session-level advisory lock on a dedicated connection (a
   transaction-level lock would be released by autocommit blocks such as
   ``CREATE INDEX CONCURRENTLY``), check again, upgrade, release. Replicas that
   start together wait on the lock (bounded) and then find the database at head.

Each revision runs in its own transaction, so a failure leaves the database at
the last good revision and the error names the failing one.
"""

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from shared_db import commands
from shared_db.databases import connect_autocommit
from shared_db.errors import MigrationError, PostgresError
from shared_db.history import read_history
from shared_db.overview import pending_revisions
from shared_db.urls import mask


@dataclass(frozen=True)
class StartupResult:
    service: str
    action: str  # "none" (at head), "upgraded", "migrated elsewhere" (another replica did it)
    before: tuple[str, ...]
    after: tuple[str, ...]


def lock_key(service: str) -> int:
    """A stable signed 64-bit advisory-lock key per service."""
    digest = hashlib.sha256(f"signalmarket:migrate:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def wait_for_database(url: URL, timeout_s: float) -> None:
    """Connect until it works or ``timeout_s`` passes (backoff 0.1 s doubling to 2 s)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            connect_autocommit(url).close()
            return
        except PostgresError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PostgresError(f"gave up after {timeout_s:g} s: {exc}") from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


def at_head(service: str, current: tuple[str, ...]) -> bool:
    history = read_history(service)
    return not pending_revisions(history, current) and all(
        rev in history.revisions for rev in current
    )


def migrate_to_head(
    service: str, url: URL, *, lock_timeout_s: float = 60.0, wait_timeout_s: float = 30.0
) -> StartupResult:
    """Bring ``service``'s database at ``url`` to head, exactly once across replicas."""
    wait_for_database(url, wait_timeout_s)
    before = commands.current(service, url)
    commands.refuse_unknown(service, before)
    if at_head(service, before):
        return StartupResult(service, "none", before, before)

    key = lock_key(service)
    with connect_autocommit(url) as lock_conn:
        deadline = time.monotonic() + lock_timeout_s
        while not _try_lock(lock_conn, key):
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"{service}: waited {lock_timeout_s:g} s for the migration lock on "
                    f"{mask(url)}; another process holds it (a long migration, or a stuck "
                    "session: see pg_locks where locktype = 'advisory'); "
                    "raise MIGRATION_LOCK_TIMEOUT or retry"
                )
            time.sleep(0.05)
        try:
            current = commands.current(service, url)
            commands.refuse_unknown(service, current)
            if at_head(service, current):
                return StartupResult(service, "migrated elsewhere", before, current)
            after = commands.upgrade(service, url=url)
            return StartupResult(service, "upgraded", before, after)
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _try_lock(conn: psycopg.Connection[tuple[Any, ...]], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])
