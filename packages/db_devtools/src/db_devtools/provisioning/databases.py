"""Create, check and drop databases and roles on a Postgres server we administer."""

import contextlib
import secrets
from collections.abc import Callable, Iterator

import psycopg
from psycopg import sql
from shared_db.connections import (
    connect_autocommit,
    create_database_sql,
    drop_database_forced,
    server_connection,
)
from shared_db.sessions import Conn
from shared_db.urls import where
from sqlalchemy.engine import URL

from db_devtools.errors import ProvisioningError


def ensure_database(url: URL, admin: Conn | None = None) -> bool:
    """Create ``url``'s database when missing; True if it was created. ``admin``: an open
    autocommit connection to the server to use instead of a new one."""
    name = url.database
    if not name:
        raise ProvisioningError(
            f"the URL of {where(url)} names no database", kind="invalid_database_url"
        )
    with server_connection(url, admin) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            statement = sql.SQL(create_database_sql(conn))
            conn.execute(statement.format(sql.Identifier(name), sql.Identifier("template1")))
        except psycopg.errors.DuplicateDatabase:
            return False  # created concurrently by another process
        except psycopg.errors.InsufficientPrivilege:
            raise ProvisioningError(
                f"database {name!r} does not exist and {url.username} may not create it",
                kind="cannot_create_database",
            ) from None
    return True


def drop_database(url: URL, admin: Conn | None = None) -> None:
    if not url.database:
        raise ProvisioningError(
            f"the URL of {where(url)} names no database to drop", kind="invalid_database_url"
        )
    drop_database_forced(url, admin)


@contextlib.contextmanager
def scratch_database(
    server_url: URL, prefix: str = "scratch", admin: Callable[[], Conn] | None = None
) -> Iterator[URL]:
    """A new empty database on ``server_url``'s server, dropped afterwards; ``admin()``,
    when given, is the connection to create and drop it with (asked again to drop it)."""
    url = server_url.set(database=f"{prefix}_{secrets.token_hex(4)}")
    ensure_database(url, admin() if admin else None)
    try:
        yield url
    finally:
        drop_database(url, admin() if admin else None)


def ensure_service_database(admin: URL, name: str, password: str) -> URL:
    """One role and one database per service, on a server we administer.

    The role ``name`` (the service's name) owns the database ``name`` (and so its
    ``public`` schema and everything its migrations create); other roles may not
    even connect (``CONNECT`` is revoked from ``PUBLIC``). Returns the role's URL.
    """
    role = sql.Identifier(name)
    with connect_autocommit(admin, "postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        # DuplicateObject: created concurrently by another process, with the same password.
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            statement = sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}")
            conn.execute(statement.format(role, sql.Literal(password)))
        found = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if found is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
        elif found[0] != name:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(role, role))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role))
    return admin.set(username=name, password=password, database=name)
