"""Connections to a service's database, with timeouts and errors that say where.

Every connection made here has a connect timeout; a failure becomes a
``DatabaseError`` naming host, port and database (never the password), with kind
``database_unreachable`` when nothing answered and ``database_error`` otherwise.

A URL's query parameters are libpq's connection parameters, and every connection
honours them, SQLAlchemy's and plain psycopg's alike (``?password=``, ``?sslmode=``,
``?host=/run/postgresql``, ``?options=-c search_path=...``, ``?connect_timeout=``...):
the URL says what the user wants. Our own defaults (the connect timeout, TCP
keepalives) fill in what it does not say. A given ``application_name`` is ours: it
names a migration connection, by which the runner finds migrators (``sessions``).
Session settings are made with ``SET`` after connecting, so a URL's ``options`` stay.
"""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from shared_db.config import DbConfig
from shared_db.errors import DatabaseError
from shared_db.urls import normalize, scrub, where

# "failed to resolve host": psycopg 3 when a name does not resolve (a stopped container's
# name on a compose network): the server may come back, so it is worth waiting for.
_UNREACHABLE = (
    "refused",
    "timeout",
    "timed out",
    "could not translate host",
    "failed to resolve host",
    "no route",
)
# TCP keepalives: a peer that vanished (a killed host, a cut network) is noticed in ~25 s
# on both sides, instead of a connection that looks open for hours.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def first_line(exc: BaseException) -> str:
    """The first line of an error (a driver's own error when SQLAlchemy wraps one)."""
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip()
    return text.splitlines()[0] if text else type(origin).__name__


def database_error(exc: BaseException, url: URL, service: str | None = None) -> DatabaseError:
    """``exc`` as an error naming where (``host:port/database``); a secret of ``url`` that
    the driver's message repeats is masked."""
    reason = scrub(first_line(exc), url)
    unreachable = any(marker in reason.lower() for marker in _UNREACHABLE)
    return DatabaseError(
        f"cannot use the database at {where(url)}: {reason}",
        kind="database_unreachable" if unreachable else "database_error",
        service=service,
        cause=reason,
    )


def connect_args(
    url: URL, *, connect_timeout_s: float = 10.0, application_name: str = ""
) -> dict[str, Any]:
    """The arguments we add to a connection to ``url``: the connect timeout and TCP
    keepalives unless the URL's query sets them, and ``application_name`` when given
    (ours wins: it names the connection, see the module's docstring)."""
    defaults: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout_s)), **KEEPALIVES}
    args = {key: value for key, value in defaults.items() if key not in url.query}
    if application_name:
        args["application_name"] = application_name
    return args


def engine(
    url: str | URL,
    *,
    connect_timeout_s: float = 10.0,
    application_name: str = "",
    pooled: bool = False,
) -> Engine:
    """An engine with a connect timeout: pooled (a service's requests, connections
    checked before use) or not (one connection per use: commands, migrations). The URL's
    query parameters reach psycopg (SQLAlchemy passes them on)."""
    target = normalize(url)
    if not pooled:
        return _unpooled(target, connect_timeout_s, application_name)
    args = connect_args(
        target, connect_timeout_s=connect_timeout_s, application_name=application_name
    )
    return create_engine(
        target, pool_pre_ping=True, pool_timeout=connect_timeout_s, connect_args=args
    )


@functools.lru_cache(maxsize=64)
def _unpooled(target: URL, connect_timeout_s: float, application_name: str) -> Engine:
    """One engine per URL and settings, kept for the process: a new engine asks its
    server four questions on its first connection (version, schema, settings), which
    doubled the client's cost of each connection (2.0 -> 4.7 ms of CPU). It keeps no
    connection (``NullPool``), so disposing of it, or a fork, leaves nothing open."""
    args = connect_args(
        target, connect_timeout_s=connect_timeout_s, application_name=application_name
    )
    return create_engine(target, poolclass=pool.NullPool, connect_args=args)


def migration_engine(config: DbConfig, service: str, url: URL, kind: str = "migrate") -> Engine:
    """An engine for migrating ``service``: the configured timeout, and an
    ``application_name`` naming what it does (``kind``), the service, the caller, the host
    and the process."""
    return engine(
        url,
        connect_timeout_s=config.connect_timeout_s,
        application_name=config.application_name(service, kind),
    )


@contextmanager
def connect(
    config: DbConfig, service: str, url: str | URL | None = None, *, kind: str = "migrate-read"
) -> Iterator[Connection]:
    """A connection to ``service``'s database (``url``, else the configured one). It
    reads the database's state unless ``kind="migrate"``: the runner's, under the lock,
    which applies revisions (see ``DbConfig.application_name``)."""
    target = normalize(url) if url is not None else config.parsed_url(service)
    made = migration_engine(config, service, target, kind)
    try:
        with made.connect() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise database_error(exc, target, service) from exc


def psycopg_arguments(url: URL) -> dict[str, Any]:
    """The keyword arguments of ``psycopg.connect`` for ``url``, as SQLAlchemy's psycopg
    dialect makes them (user part, host, port, database, every query parameter, several
    hosts), so a plain connection reaches the same server, the same way, as an engine."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]
    _args, kwargs = dialect.create_connect_args(url)  # type: ignore[no-untyped-call]
    return dict(kwargs)


def connect_autocommit(
    url: URL,
    database: str | None = None,
    *,
    timeout_s: float = 10.0,
    application_name: str = "",
    service: str | None = None,
) -> psycopg.Connection[tuple[Any, ...]]:
    """A plain psycopg connection in autocommit mode (locks, CREATE/DROP DATABASE), to
    ``database`` (else the URL's, else ``postgres``) with every parameter of the URL."""
    target = normalize(url)
    target = target.set(database=database or target.database or "postgres")
    arguments = {
        **psycopg_arguments(target),
        **connect_args(target, connect_timeout_s=timeout_s, application_name=application_name),
    }
    try:
        return psycopg.connect(autocommit=True, **arguments)
    except psycopg.Error as exc:
        raise database_error(exc, target, service) from exc


@contextmanager
def server_connection(
    url: URL, given: psycopg.Connection[tuple[Any, ...]] | None = None, *, timeout_s: float = 10.0
) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """``given`` (an open autocommit connection to ``url``'s server: left open), else a new
    one to its ``postgres`` database (closed after): for CREATE and DROP DATABASE."""
    if given is not None:
        yield given
        return
    with connect_autocommit(url, "postgres", timeout_s=timeout_s) as conn:
        yield conn


def drop_database_forced(
    url: URL, given: psycopg.Connection[tuple[Any, ...]] | None = None
) -> None:
    """Drop ``url``'s database if it exists, closing the connections left open to it
    (``WITH (FORCE)``); over ``given`` when set (see ``server_connection``)."""
    with server_connection(url, given) as conn:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(statement.format(sql.Identifier(url.database or "")))


def create_database_sql(conn: psycopg.Connection[tuple[Any, ...]]) -> str:
    """``CREATE DATABASE {} TEMPLATE {}`` with the faster strategy for this server: with
    fsync off (throwaway and test servers) the checkpoints of ``FILE_COPY`` cost nothing
    and a copy takes half the time of the default ``WAL_LOG``."""
    row = conn.execute("SELECT current_setting('fsync') = 'off'").fetchone()
    return "CREATE DATABASE {} TEMPLATE {}" + (" STRATEGY FILE_COPY" if row and row[0] else "")
