"""Database URLs: parsing (the psycopg 3 driver), per-database URLs, masking."""

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from shared_db.errors import ConfigurationError

DRIVER = "postgresql+psycopg"
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


def normalize(url: str | URL) -> URL:
    """Parse ``url`` and make it use the psycopg 3 driver (plain ``postgresql://`` accepted).

    Raises ``ConfigurationError`` (kind ``invalid_database_url``) for anything that is
    not a PostgreSQL URL; the message never repeats the URL, which may hold a password.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url.strip())
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(
                "the database URL cannot be parsed; expected "
                "postgresql://user:password@host:port/database",
                kind="invalid_database_url",
                cause=type(exc).__name__,
            ) from None
    if parsed.drivername not in _POSTGRES_SCHEMES:
        raise ConfigurationError(
            f"the database URL uses {parsed.drivername!r}, not PostgreSQL; expected "
            "postgresql://user:password@host:port/database",
            kind="invalid_database_url",
        )
    return parsed.set(drivername=DRIVER)


def with_database(url: str | URL, database: str) -> URL:
    return normalize(url).set(database=database)


def render(url: str | URL, *, show_password: bool = False) -> str:
    """The URL as text; the password is masked unless asked for."""
    return normalize(url).render_as_string(hide_password=not show_password)


def mask(url: str | URL) -> str:
    return render(url, show_password=False)


def where(url: URL) -> str:
    """``host:port/database``: enough to tell which database, nothing secret."""
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
