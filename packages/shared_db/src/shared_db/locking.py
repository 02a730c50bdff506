"""The per-service migration lock: a session-level advisory lock on its own connection.

Session-level, because a transaction-level lock would be released by the autocommit
blocks some revisions need (``CREATE INDEX CONCURRENTLY``). On its own connection, so
that the connection applying revisions can be rolled back, cancelled or replaced
without letting go of the lock. The wait is bounded, and while waiting the runner says
who holds the lock. A waiter first tries without waiting (a database at head never
waits); then it waits on the server (``pg_advisory_lock`` under a ``lock_timeout``), so
it gets the lock the moment the holder lets go, without polling: replicas starting
together hand the lock on to each other at once.
"""

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from shared_db import sessions
from shared_db.config import DbConfig
from shared_db.connections import connect_autocommit
from shared_db.errors import MigrationError
from shared_db.sessions import Conn

log = logging.getLogger("signalmarket.migrate")
# While waiting: the first report after this many seconds, then every REPORT_EVERY_S.
FIRST_REPORT_S = 1.0
REPORT_EVERY_S = 10.0


def lock_key(service: str) -> int:
    """A stable signed 64-bit advisory-lock key per service."""
    digest = hashlib.sha256(f"signalmarket:migrate:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _try_lock(conn: Conn, key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def _wait_for_lock(conn: Conn, key: int, seconds: float) -> bool:
    """Wait at most ``seconds`` for the lock on the server; whether it was granted."""
    try:
        with conn.transaction():  # the timeout is this transaction's; the lock, the session's
            timeout = f"{max(1, round(seconds * 1000))}ms"
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def _holders(conn: Conn, key: int) -> str:
    found = sessions.advisory_holders(conn, key)
    return "; ".join(s.describe() for s in found) or "a session that has just let go"


@contextmanager
def migration_lock(config: DbConfig, service: str) -> Iterator[Conn]:
    """Hold ``service``'s migration lock; yields the lock's own connection (idle while
    the lock is held: the runner's watcher may use it)."""
    key = lock_key(service)
    conn = connect_autocommit(
        config.parsed_url(service),
        timeout_s=config.connect_timeout_s,
        application_name=config.application_name(service, "migrate-lock"),
        service=service,
    )
    with conn:
        started = time.monotonic()
        deadline, next_report = started + config.lock_wait_s, started + FIRST_REPORT_S
        granted = _try_lock(conn, key)
        while not granted:
            now = time.monotonic()
            if now >= deadline:
                raise MigrationError(
                    f"waited {config.lock_wait_s:g} s for the migration lock, held by "
                    f"{_holders(conn, key)}",
                    kind="lock_timeout",
                    service=service,
                )
            if now >= next_report:
                log.info(
                    "%s: waiting %.0f s for the migration lock, held by %s",
                    service,
                    now - started,
                    _holders(conn, key),
                )
                next_report = now + REPORT_EVERY_S
            granted = _wait_for_lock(conn, key, min(deadline, next_report) - now)
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
