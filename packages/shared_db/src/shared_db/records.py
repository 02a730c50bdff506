"""Records of applied revisions: which revision files changed after they were applied.

Each upgrade step records the sha256 of its revision file in the service's own side
table, ``alembic_checksums_<service>``, in the same transaction as the version-table
update; a downgrade step removes it. Comparing them with the files shows tampering
(or an edit of an already-applied revision, which never reaches other databases).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ProgrammingError

from shared_db.config import DbConfig
from shared_db.connections import connect
from shared_db.history import History
from shared_db.services import check_service, version_table


def checksum_table(service: str) -> str:
    return f"alembic_checksums_{check_service(service)}"


def file_checksum(path: Path) -> str:
    """sha256 of the file with normalised line endings (a CRLF checkout is not a change)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def create_table_sql(service: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {checksum_table(service)} ("
        "revision VARCHAR(32) PRIMARY KEY, checksum CHAR(64) NOT NULL, "
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )


def record_sql(service: str) -> str:
    """Bound parameters ``:revision`` and ``:checksum`` (one cached statement per run)."""
    return (
        f"INSERT INTO {checksum_table(service)} (revision, checksum) "
        "VALUES (:revision, :checksum) ON CONFLICT (revision) DO UPDATE "
        "SET checksum = EXCLUDED.checksum, applied_at = now()"
    )


def forget_sql(service: str) -> str:
    return f"DELETE FROM {checksum_table(service)} WHERE revision = :revision"


@dataclass(frozen=True)
class Modified:
    revision: str
    path: Path | None  # None: the file is gone


def modified_revisions(service: str, history: History, connection: Connection) -> list[Modified]:
    """Applied revisions whose file differs from what was applied (or is missing)."""
    try:
        rows = connection.execute(
            text(f"SELECT revision, checksum FROM {checksum_table(service)}")
        ).all()
    except ProgrammingError:  # no side table: nothing was applied by this code yet
        connection.rollback()
        return []
    found = []
    for revision, recorded in rows:
        script = history.revisions.get(revision)
        if script is None:
            found.append(Modified(revision, None))
        elif file_checksum(script.path) != recorded.strip():
            found.append(Modified(revision, script.path))
    return found


def modified_at(config: DbConfig, service: str, history: History) -> list[Modified]:
    with connect(config, service) as connection:
        return modified_revisions(service, history, connection)


def current_revisions(connection: Connection, service: str) -> tuple[str, ...]:
    """The revisions in ``service``'s version table (empty: nothing applied, or no table).

    Plain SQL, not Alembic's ``MigrationContext``: reading the revision at startup must
    not import Alembic."""
    table = version_table(service)
    exists = connection.execute(text("SELECT to_regclass(:table)"), {"table": table}).scalar()
    if exists is None:
        return ()
    rows = connection.execute(text(f"SELECT version_num FROM {table}")).scalars()
    return tuple(sorted(rows))


def current_revisions_raw(
    conn: psycopg.Connection[tuple[Any, ...]], service: str
) -> tuple[str, ...]:
    """The same, on a plain psycopg connection (the migration lock's)."""
    table = version_table(service)
    row = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    if row is None or row[0] is None:
        return ()
    return tuple(sorted(r[0] for r in conn.execute(f"SELECT version_num FROM {table}")))
