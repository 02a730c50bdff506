"""What a killed migration can leave behind, found and cleared before the next one runs.

- A backend still running a statement (or holding a transaction) for a migrator that
  died: the server cancels it by itself when ``client_connection_check_interval`` is set
  (every migration connection sets it); otherwise it is given ``leftover_wait_s`` to go,
  then terminated.
- An invalid index (``pg_index.indisvalid = false``), left by a killed
  ``CREATE INDEX CONCURRENTLY``: never used by queries, still maintained on writes, and
  in the way of the revision that builds it again. It is dropped (concurrently).
- An index built by a killed revision's autocommit block although the revision is not
  recorded: not fixed here (it may or may not be what the revision builds); the failing
  revision's error says what to do (see ``explain_existing``).
"""

import logging
import re
import time
from collections.abc import Callable

from psycopg import sql

from shared_db import sessions
from shared_db.config import DbConfig
from shared_db.errors import MigrationError
from shared_db.sessions import Conn

log = logging.getLogger("signalmarket.migrate")


def settle_leftover_migrators(conn: Conn, config: DbConfig, service: str) -> None:
    """Wait (bounded) for busy backends of earlier migrators of ``service``, then
    terminate those still there. Called under the migration lock."""
    found = sessions.leftover_migrators(conn, service)
    if not found:
        return
    for session in found:
        gone = sessions.client_gone(session)
        whose = (
            "of another host"
            if gone is None
            else "whose process is gone"
            if gone
            else "whose process still runs"
        )
        log.warning(
            "%s: a backend left by an earlier migrator (%s) is still busy: %s; waiting up "
            "to %g s for it to end",
            service,
            whose,
            session.describe(),
            config.leftover_wait_s,
        )
    deadline = time.monotonic() + config.leftover_wait_s
    pending = {session.pid for session in found}
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        pending &= {session.pid for session in sessions.leftover_migrators(conn, service)}
    for pid in sorted(pending):
        if sessions.terminate(conn, pid):
            log.warning("%s: terminated backend pid %d left by an earlier migrator", service, pid)


Tables = set[tuple[str, str]]


def invalid_indexes(
    conn: Conn, tables: Tables | Callable[[], Tables]
) -> list[tuple[str, str, str]]:
    """(schema, index, table) of the invalid indexes on ``tables`` ((schema, table) pairs,
    or a function giving them, asked only when the database has an invalid index at all:
    knowing a service's tables means importing its models)."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, t.relname FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid "
        "ORDER BY 1, 2"
    ).fetchall()
    if not rows:
        return []
    wanted = tables() if callable(tables) else tables
    return [(schema, index, table) for schema, index, table in rows if (schema, table) in wanted]


def drop_invalid_indexes(conn: Conn, service: str, tables: Tables | Callable[[], Tables]) -> None:
    """Drop the invalid indexes a killed ``CREATE INDEX CONCURRENTLY`` left on ``tables``."""
    for schema, index, table in invalid_indexes(conn, tables):
        statement = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
            sql.Identifier(schema), sql.Identifier(index)
        )
        try:
            conn.execute(statement)
        except Exception as exc:
            raise MigrationError(
                f"the invalid index {schema}.{index} on {table}, left by a killed "
                f"CREATE INDEX CONCURRENTLY, could not be dropped ({str(exc).strip()}): "
                f"run: {statement.as_string(conn)}",
                kind="leftover",
                service=service,
            ) from None
        log.warning(
            "%s: dropped the invalid index %s.%s on %s, left by a killed CREATE INDEX "
            "CONCURRENTLY; the revision that builds it will build it again",
            service,
            schema,
            index,
            table,
        )


_EXISTS = re.compile(r'relation "([^"]+)" already exists')


def explain_existing(service: str, revision: str, error: str, source: str) -> str | None:
    """The failure of a revision with an autocommit block whose object already exists:
    an earlier run of it was killed after that block. ``None`` for any other failure."""
    found = _EXISTS.search(error)
    if found is None or "autocommit_block" not in source:
        return None
    name = found.group(1)
    return (
        f"{name} already exists although revision {revision} is not recorded: an earlier "
        f"run of {revision} was killed after its autocommit block built it; if {name} is "
        f"what {revision} builds, record the revision without running it "
        f"(stamp {revision}), else drop {name} (DROP INDEX CONCURRENTLY {name}) and migrate "
        "again; new revisions avoid this with IF NOT EXISTS"
    )
