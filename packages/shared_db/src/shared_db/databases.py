"""Create, check and drop databases on a Postgres server."""

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from shared_db.errors import PostgresError
from shared_db.urls import mask


def _where(url: URL) -> str:
    return f"{url.host}:{url.port or 5432} as {url.username} ({mask(url)})"


def connect_autocommit(
    url: URL, database: str | None = None
) -> psycopg.Connection[tuple[Any, ...]]:
    """A plain psycopg connection (autocommit: CREATE/DROP DATABASE need it)."""
    try:
        return psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=database or url.database or "postgres",
            autocommit=True,
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise PostgresError(
            f"cannot connect to Postgres at {_where(url)}: {reason}; "
            "start it with: invoke db.up (or fix DATABASE_URL)"
        ) from exc


def ensure_database(url: URL) -> bool:
    """Create ``url``'s database when missing; True if it was created."""
    name = url.database
    if not name:
        raise PostgresError(f"{mask(url)} names no database; add /<database> to the URL")
    with connect_autocommit(url, "postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False  # created concurrently by another process
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PostgresError(
                f"database {name!r} does not exist and {url.username} may not create it; "
                "create it, or set DATABASE_URL to an existing database"
            ) from exc
    return True


def drop_database(url: URL) -> None:
    if not url.database:
        raise PostgresError(f"{mask(url)} names no database to drop")
    with connect_autocommit(url, "postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(url.database))
        )


@contextlib.contextmanager
def scratch_database(server_url: URL, prefix: str = "scratch") -> Iterator[URL]:
    """A new empty database on ``server_url``'s server, dropped afterwards."""
    url = server_url.set(database=f"{prefix}_{secrets.token_hex(4)}")
    ensure_database(url)
    try:
        yield url
    finally:
        drop_database(url)


def ensure_service_database(admin: URL, name: str, password: str) -> URL:
    """One role and one database per service, on a server we administer.

    The role ``name`` (the service's name) owns the database ``name`` (and so its
    ``public`` schema and everything its migrations create); other roles may not
    even connect (``CONNECT`` is revoked from ``PUBLIC``). Returns the role's URL.
    """
    service = name
    role = sql.Identifier(name)
    with connect_autocommit(admin, "postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (service,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        # DuplicateObject: created concurrently by another process, with the same password.
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            statement = sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}")
            conn.execute(statement.format(role, sql.Literal(password)))
        found = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (service,)
        ).fetchone()
        if found is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
        elif found[0] != service:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(role, role))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role))
    return admin.set(username=service, password=password, database=service)
