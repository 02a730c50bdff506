"""A database at head in constant time: one template per history, cloned per use.

Replaying a history for every fresh test database costs more with every revision.
Instead, per service, a template database at head is built once and named after a
checksum of the history (``tmpl_<service>_<checksum>``): a changed history gets a new
template, an unchanged one is reused across test runs. Each use is then a
``CREATE DATABASE ... TEMPLATE``, a file copy inside Postgres that does not grow with
the history. Concurrent builders (pytest-xdist workers, parallel CI jobs) build it once:
the build runs under an advisory lock and under a temporary name, renamed only when
complete, so a killed build never leaves a half-migrated template behind.

A copy costs one connection and one ``CREATE DATABASE``, whose time follows the size of
the schema (Postgres copies each relation's files), not the length of the history. The
history's checksum is kept per process and recomputed when a file's name, size, inode
or modification time changes (a ``stat`` per file, not a read).
"""

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from shared_db import runner
from shared_db.config import DbConfig
from shared_db.connections import (
    connect_autocommit,
    create_database_sql,
    drop_database_forced,
    server_connection,
)
from shared_db.errors import DatabaseError
from shared_db.history import revision_file_names
from shared_db.services import check_service
from shared_db.sessions import Conn
from shared_db.urls import render

# Part of every checksum: a change to how templates are built makes new ones.
TEMPLATE_FORMAT = "1"
PREFIX = "tmpl_"


Signature = tuple[tuple[str, int, int, int, int], ...]
_checksums: dict[tuple[str, Path], tuple[Signature, str]] = {}
# A file written this recently may be written again within the clock's granularity
# without its times changing: such a history's checksum is not kept ("racy git").
_SETTLED_NS = 2_000_000_000


def _signature(directory: Path) -> Signature:
    """What changes when a revision file is added, removed, renamed or written."""
    found = []
    for name in revision_file_names(directory):
        stat = os.stat(directory / name)
        found.append((name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
    return tuple(found)


def history_checksum(config: DbConfig, service: str) -> str:
    """12 hex digits of sha256 over the history's files (names and contents)."""
    directory = config.versions_dir(service)
    signature = _signature(directory)
    known = _checksums.get((service, directory))
    if known is not None and known[0] == signature:
        return known[1]
    digest = hashlib.sha256(f"{TEMPLATE_FORMAT}:{check_service(service)}".encode())
    for name, *_stat in signature:
        digest.update(name.encode() + b"\0")
        digest.update((directory / name).read_bytes().replace(b"\r\n", b"\n") + b"\0")
    checksum = digest.hexdigest()[:12]
    newest = max((max(entry[2], entry[3]) for entry in signature), default=0)
    if newest < time.time_ns() - _SETTLED_NS:
        _checksums[(service, directory)] = (signature, checksum)
    return checksum


def template_name(config: DbConfig, service: str) -> str:
    return f"{PREFIX}{service}_{history_checksum(config, service)}"


def _exists(conn: psycopg.Connection[tuple[Any, ...]], name: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"signalmarket:template:{name}".encode()).digest()[:8],
                          "big", signed=True)  # fmt: skip


def ensure_template(config: DbConfig, server: URL, service: str) -> str:
    """The name of ``service``'s template at head on ``server`` (a URL whose role may
    create databases), built now if this history has none yet."""
    name = template_name(config, service)
    with connect_autocommit(server, "postgres", timeout_s=config.connect_timeout_s) as conn:
        _ensure(conn, config, server, service, name)
    return name


def _ensure(
    conn: psycopg.Connection[tuple[Any, ...]],
    config: DbConfig,
    server: URL,
    service: str,
    name: str,
) -> None:
    if _exists(conn, name):
        return
    key = _lock_key(name)
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        if not _exists(conn, name):  # another process may have built it meanwhile
            _build(config, server, service, name, conn)
            _drop_older_versions(conn, config, service, keep=name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _origin(config: DbConfig, service: str) -> str:
    """Which history a template was built from: its folder (one checkout's history)."""
    return f"signalmarket template of {config.versions_dir(service).resolve()}"


def _build(
    config: DbConfig,
    server: URL,
    service: str,
    name: str,
    conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    building = sql.Identifier(f"{name}_building")
    # Left by a builder that was killed: it never got the final name.
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(building))
    conn.execute(sql.SQL("CREATE DATABASE {}").format(building))
    url = server.set(database=f"{name}_building")
    migrate = config.replace(database_urls={service: render(url, show_password=True)})
    runner.upgrade(migrate, service)
    final = sql.Identifier(name)
    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(building, final))
    # Nobody connects to a template by mistake (a connection would block every clone).
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(final)
    )
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(final, sql.Literal(_origin(config, service)))
    )


def _drop_older_versions(
    conn: psycopg.Connection[tuple[Any, ...]], config: DbConfig, service: str, keep: str
) -> None:
    """Templates of earlier versions of the same checkout's history (other checkouts and
    branches sharing the server keep theirs). One in use is left for another time."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s "
        "AND shobj_description(oid, 'pg_database') = %s",
        (f"{PREFIX}{service}\\_%", keep, _origin(config, service)),
    ).fetchall()
    for (stale,) in rows:
        identifier = sql.Identifier(stale)
        try:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(identifier))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(identifier))
        except psycopg.Error:
            continue  # being cloned or dropped right now


def clone(server: URL, template: str, prefix: str = "test") -> URL:
    """A new database copied from ``template``; its URL (drop it with ``drop``)."""
    with connect_autocommit(server, "postgres") as conn:
        return _clone(conn, server, template, prefix)


def _clone(
    conn: psycopg.Connection[tuple[Any, ...]], server: URL, template: str, prefix: str
) -> URL:
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        conn.execute(
            sql.SQL(create_database_sql(conn)).format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot copy the template {template}: {str(exc).strip().splitlines()[0]}",
            kind="database_error",
        ) from None
    return server.set(database=name)


def drop(url: URL, admin: Conn | None = None) -> None:
    """Drop the database of ``url`` (a copy), even with connections left open."""
    name = url.database or ""
    if not name or name.startswith(PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a copy")
    drop_database_forced(url, admin)


def database_at_head(
    config: DbConfig, server: URL, service: str, prefix: str = "test", admin: Conn | None = None
) -> URL:
    """A new database with ``service``'s history at head: a copy of its template (built
    first if this history has none), on one connection (``admin``, when given: an open
    autocommit connection to the server)."""
    name = template_name(config, service)
    with server_connection(server, admin, timeout_s=config.connect_timeout_s) as conn:
        _ensure(conn, config, server, service, name)
        try:
            return _clone(conn, server, name, prefix)
        except DatabaseError:
            # Its template was dropped in between (a newer version of the same history
            # was just built elsewhere): build it again, once.
            _ensure(conn, config, server, service, name)
            return _clone(conn, server, name, prefix)
