"""Database URL helpers: driver normalisation, per-database URLs and masking."""

from sqlalchemy.engine import URL, make_url

DRIVER = "postgresql+psycopg"


def normalize(url: str | URL) -> URL:
    """Parse ``url`` and make it use the psycopg 3 driver (plain ``postgresql://`` accepted)."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername=DRIVER)
    return parsed


def with_database(url: str | URL, database: str) -> URL:
    return normalize(url).set(database=database)


def render(url: str | URL, *, show_password: bool = False) -> str:
    """The URL as text; the password is masked unless asked for."""
    return normalize(url).render_as_string(hide_password=not show_password)


def mask(url: str | URL) -> str:
    return render(url, show_password=False)
