"""Who else is on the database: the sessions that block a migration, hold its lock, or
were left behind by a migrator that died.

Every migration connection names itself in ``application_name``:
``migrate:<service>:<caller>@<host>:<pid>`` (the connection that applies revisions) and
``migrate-lock:<service>:<caller>@<host>:<pid>`` (the one holding the advisory lock), so
these are found by name, and so is a process that no longer exists. Connections that
only read the state (``migrate-read:...``: a live migrator's check before it takes the
lock, ``/ready``, status, plans: ``connections.connect``'s default) are never taken for
leftovers.
"""

import os
import socket
from dataclasses import dataclass
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]

_COLUMNS = """
    a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
    extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, a.backend_start))::float8,
    left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80)
"""


@dataclass(frozen=True)
class Session:
    """One backend, as ``pg_stat_activity`` shows it."""

    pid: int
    application_name: str
    state: str
    seconds: float  # in its current transaction (or query, or connection)
    query: str  # the start of its current or last query

    def describe(self) -> str:
        name = self.application_name or "no application_name"
        return (
            f"pid {self.pid} ({name}, {self.state or 'unknown state'} for "
            f"{self.seconds:.0f} s: {self.query or '-'})"
        )


def _sessions(conn: Conn, where: str, params: tuple[Any, ...]) -> list[Session]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM pg_stat_activity a WHERE {where}", params)
    return [Session(*row) for row in rows.fetchall()]


def blockers(conn: Conn, pid: int) -> list[Session]:
    """The sessions holding the locks backend ``pid`` waits for."""
    return _sessions(conn, "a.pid = ANY(pg_blocking_pids(%s)) ORDER BY a.pid", (pid,))


def advisory_holders(conn: Conn, key: int) -> list[Session]:
    """The sessions holding advisory lock ``key`` (a signed 64-bit key) in this database."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return _sessions(
        conn,
        "a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()))",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    )


def leftover_migrators(conn: Conn, service: str) -> list[Session]:
    """Backends of earlier migrators of ``service`` still busy in this database (running
    a statement or holding a transaction open). Called under the migration lock: the
    process that opened them holds no lock any more, so it died or lost its lock."""
    return _sessions(
        conn,
        "a.datname = current_database() AND a.pid <> pg_backend_pid() "
        "AND a.application_name LIKE %s AND a.state IS DISTINCT FROM 'idle'",
        (f"migrate:{service}:%",),
    )


def client_gone(session: Session) -> bool | None:
    """Whether the process named in the session's ``application_name`` is gone: True or
    False when it ran on this host, ``None`` when that cannot be told from here."""
    host_pid = session.application_name.rsplit("@", 1)[-1]
    host, _, pid = host_pid.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def terminate(conn: Conn, pid: int) -> bool:
    row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
    return bool(row and row[0])


def still_there(conn: Conn, pid: int) -> bool:
    row = conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None
