"""Connections to a service's database, with timeouts and errors that say where.

Every connection made here has a connect timeout; a failure becomes a
``DatabaseError`` naming host, port and database (never the password), with kind
``database_unreachable`` when nothing answered and ``database_error`` otherwise.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from shared_db.config import DbConfig
from shared_db.errors import DatabaseError
from shared_db.urls import normalize, where

_UNREACHABLE = ("refused", "timeout", "timed out", "could not translate host", "no route")
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
    reason = first_line(exc)
    unreachable = any(marker in reason.lower() for marker in _UNREACHABLE)
    return DatabaseError(
        f"cannot use the database at {where(url)}: {reason}",
        kind="database_unreachable" if unreachable else "database_error",
        service=service,
        cause=reason,
    )


def engine(
    url: str | URL,
    *,
    connect_timeout_s: float = 10.0,
    application_name: str = "",
    pooled: bool = False,
) -> Engine:
    """An engine with a connect timeout: pooled (a service's requests, connections
    checked before use) or not (one connection per use: commands, migrations)."""
    args: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout_s)), **KEEPALIVES}
    if application_name:
        args["application_name"] = application_name
    if pooled:
        return create_engine(
            normalize(url),
            pool_pre_ping=True,
            pool_timeout=connect_timeout_s,
            connect_args=args,
        )
    return create_engine(normalize(url), poolclass=pool.NullPool, connect_args=args)


def migration_engine(config: DbConfig, service: str, url: URL) -> Engine:
    """An engine for migrating ``service``: the configured timeout, and an
    ``application_name`` naming the service, the caller, the host and the process."""
    return engine(
        url,
        connect_timeout_s=config.connect_timeout_s,
        application_name=config.application_name(service),
    )


@contextmanager
def connect(config: DbConfig, service: str, url: str | URL | None = None) -> Iterator[Connection]:
    """A connection to ``service``'s database (``url``, else the configured one)."""
    target = normalize(url) if url is not None else config.parsed_url(service)
    made = migration_engine(config, service, target)
    try:
        with made.connect() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise database_error(exc, target, service) from exc
    finally:
        made.dispose()


def connect_autocommit(
    url: URL,
    database: str | None = None,
    *,
    timeout_s: float = 10.0,
    application_name: str = "",
    service: str | None = None,
) -> psycopg.Connection[tuple[Any, ...]]:
    """A plain psycopg connection in autocommit mode (locks, CREATE/DROP DATABASE)."""
    try:
        return psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=database or url.database or "postgres",
            autocommit=True,
            connect_timeout=max(1, round(timeout_s)),
            application_name=application_name,
            **KEEPALIVES,
        )
    except psycopg.Error as exc:
        raise database_error(exc, url.set(database=database or url.database), service) from exc


def create_database_sql(conn: psycopg.Connection[tuple[Any, ...]]) -> str:
    """``CREATE DATABASE {} TEMPLATE {}`` with the faster strategy for this server: with
    fsync off (throwaway and test servers) the checkpoints of ``FILE_COPY`` cost nothing
    and a copy takes half the time of the default ``WAL_LOG``."""
    row = conn.execute("SELECT current_setting('fsync') = 'off'").fetchone()
    return "CREATE DATABASE {} TEMPLATE {}" + (" STRATEGY FILE_COPY" if row and row[0] else "")
