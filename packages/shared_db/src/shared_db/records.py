"""Records of applied revisions, beside the version table: what each one was.

Each upgrade step records, in the same transaction as the version-table update, a row
in the service's side table ``alembic_revisions_<service>``: the revision, its parents,
the sha256 of its file, its phase (``expand``/``contract``), its message, when it was
applied and how long it took; a downgrade step removes the row. So:

- comparing the checksums with the files shows an edit of an already-applied revision;
- code older than the database, which does not have the newer files, can still read
  their phases and tell whether it may run on that schema (expand/contract);
- ``migrate.status``, ``migrate.history`` and ``migrate.plan`` show durations.

(The table was ``alembic_checksums_<service>`` before phases; it is renamed on first use.)
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared_db.history import History
from shared_db.services import check_service, version_table


def records_table(service: str) -> str:
    return f"alembic_revisions_{check_service(service)}"


def _legacy_table(service: str) -> str:
    return f"alembic_checksums_{check_service(service)}"


_PHASE_LINE = re.compile(rb"^phase\b[ \t]*(:[^=\n]*)?=[^\n]*\n?", re.MULTILINE)


def file_checksum(path: Path) -> str:
    """sha256 of the file with normalised line endings (a CRLF checkout is not a change)
    and without its ``phase = ...`` line: the phase is recorded on its own, and giving a
    revision written before phases its phase does not change what it does."""
    content = path.read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(_PHASE_LINE.sub(b"", content)).hexdigest()


def ensure_table_sql(service: str) -> list[str]:
    """Statements that make the side table exist in its current shape (idempotent)."""
    table, legacy = records_table(service), _legacy_table(service)
    return [
        f"DO $$ BEGIN IF to_regclass('{legacy}') IS NOT NULL AND to_regclass('{table}') IS NULL "
        f"THEN ALTER TABLE {legacy} RENAME TO {table}; END IF; END $$",
        f"CREATE TABLE IF NOT EXISTS {table} (revision VARCHAR(32) PRIMARY KEY, "
        "checksum CHAR(64) NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS down_revisions TEXT, "
        "ADD COLUMN IF NOT EXISTS phase TEXT, ADD COLUMN IF NOT EXISTS message TEXT, "
        "ADD COLUMN IF NOT EXISTS duration_ms INTEGER",
    ]


def record_sql(service: str) -> str:
    """Bound parameters ``:revision``, ``:down``, ``:checksum``, ``:phase``, ``:message``
    and ``:duration_ms`` (one cached statement per run)."""
    return (
        f"INSERT INTO {records_table(service)} "
        "(revision, down_revisions, checksum, phase, message, duration_ms) "
        "VALUES (:revision, :down, :checksum, :phase, :message, :duration_ms) "
        "ON CONFLICT (revision) DO UPDATE SET down_revisions = EXCLUDED.down_revisions, "
        "checksum = EXCLUDED.checksum, phase = EXCLUDED.phase, message = EXCLUDED.message, "
        "duration_ms = EXCLUDED.duration_ms, applied_at = now()"
    )


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def driver_sql(statement: str) -> str:
    """A statement of this module with its ``:name`` parameters as psycopg's ``%(name)s``."""
    return _NAMED.sub(r"%(\1)s", statement)


def forget_sql(service: str) -> str:
    return f"DELETE FROM {records_table(service)} WHERE revision = :revision"


@dataclass(frozen=True)
class Applied:
    """One applied revision as its record says (whether or not this code has its file)."""

    revision: str
    down: tuple[str, ...]
    checksum: str
    phase: str | None
    message: str
    applied_at: datetime
    duration_s: float | None


def _table_exists(connection: Connection, table: str) -> bool:
    return connection.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None


def applied(connection: Connection, service: str) -> dict[str, Applied]:
    """The records of the applied revisions, oldest first (empty before the first one)."""
    table = records_table(service)
    if not _table_exists(connection, table):
        table = _legacy_table(service)  # applied by code written before phases
        if not _table_exists(connection, table):
            return {}
        rows = connection.execute(
            text(f"SELECT revision, NULL, checksum, NULL, '', applied_at, NULL FROM {table}")
        ).all()
    else:
        rows = connection.execute(
            text(
                f"SELECT revision, down_revisions, checksum, phase, coalesce(message, ''), "
                f"applied_at, duration_ms FROM {table} ORDER BY applied_at, revision"
            )
        ).all()
    return {
        row[0]: Applied(
            revision=row[0],
            down=tuple(filter(None, (row[1] or "").split(","))),
            checksum=row[2].strip(),
            phase=row[3],
            message=row[4],
            applied_at=row[5],
            duration_s=row[6] / 1000 if row[6] is not None else None,
        )
        for row in rows
    }


@dataclass(frozen=True)
class Modified:
    revision: str
    path: Path | None  # None: the file is gone


def modified_revisions(
    service: str, history: History, records: dict[str, Applied], newer: set[str]
) -> list[Modified]:
    """Applied revisions whose file differs from what was applied, or is gone (``newer``:
    revisions written after this code, whose files it cannot have)."""
    found = []
    # A baseline (migrate.squash) carries the checksums of the files it replaced, its own
    # ID's included (several, space-separated, after squashes on squashes): a database
    # that applied them is not reported as changed.
    squashed = {rev: sums for r in history.revisions.values() for rev, sums in r.replaces}
    for revision, record in records.items():
        script = history.revisions.get(revision)
        if record.checksum in squashed.get(revision, "").split():
            continue
        if script is None:
            if revision not in newer:
                found.append(Modified(revision, None))
        elif file_checksum(script.path) != record.checksum:
            found.append(Modified(revision, script.path))
    return found


def current_revisions(connection: Connection, service: str) -> tuple[str, ...]:
    """The revisions in ``service``'s version table (empty: nothing applied, or no table).

    Plain SQL, not Alembic's ``MigrationContext``: reading the revision at startup must
    not import Alembic."""
    table = version_table(service)
    if not _table_exists(connection, table):
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
