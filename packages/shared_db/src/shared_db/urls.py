"""Database URLs: parsing (the psycopg 3 driver), per-database URLs, masking.

A URL may carry secrets in two places: the password of its user part
(``postgresql://user:secret@host/db``) and its query, which libpq reads as connection
parameters (``?password=secret``, ``?sslpassword=...``, or a provider's ``?token=...``).
``mask`` hides both; it is what every message, log line and listing shows. Nothing else
renders a URL for people to read, and no error repeats one: errors name ``where(url)``.
"""

import re
from collections.abc import Iterator
from urllib.parse import quote, quote_plus, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from shared_db.errors import ConfigurationError

DRIVER = "postgresql+psycopg"
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")
EXPECTED = "expected postgresql://user:password@host:port/database"
MASK = "***"
# Query parameters whose value is a secret: libpq's ``password`` and ``sslpassword``, and
# whatever a provider calls a secret (``token``, ``api_key``, ``client_secret``...).
_SECRET_NAME = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)
# ... except libpq's parameters that name a file (the secret is in the file).
_FILE_PARAMETERS = frozenset({"sslkey", "sslkeylogfile", "passfile"})


def normalize(url: str | URL) -> URL:
    """Parse ``url`` and make it use the psycopg 3 driver (plain ``postgresql://`` accepted).

    Raises ``ConfigurationError`` (kind ``invalid_database_url``) for anything that is
    not a PostgreSQL URL, saying why; the message never repeats the URL or a part of it,
    which may hold a password. A ``?password=`` in the query moves to the user part (the
    same for libpq), where SQLAlchemy's own rendering (``str(url)``) masks it too.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        text = url.strip()
        if not text:
            raise _invalid("the database URL is empty")
        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(
                f"the database URL cannot be parsed: {_why_unparsable(text)}; {EXPECTED}",
                kind="invalid_database_url",
                cause=type(exc).__name__,
            ) from None
    if parsed.drivername not in _POSTGRES_SCHEMES:
        raise _invalid(f"the database URL uses {parsed.drivername!r}, not PostgreSQL")
    if parsed.host and "@" in parsed.host:
        raise _invalid(
            "the database URL cannot be parsed: its host contains '@' (an '@' in the "
            "password must be written %40)"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _invalid("the database URL cannot be parsed: its port is not between 1 and 65535")
    query_password = parsed.query.get("password")
    if isinstance(query_password, str) and parsed.username:
        parsed = parsed.set(password=query_password).difference_update_query(["password"])
    return parsed.set(drivername=DRIVER)


def _invalid(message: str) -> ConfigurationError:
    return ConfigurationError(f"{message}; {EXPECTED}", kind="invalid_database_url")


def _why_unparsable(text: str) -> str:
    """Why SQLAlchemy could not parse ``text``, in words that quote none of it."""
    if "://" not in text:
        return "it has no scheme (postgresql://)"
    rest = text.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    host_part = rest.rsplit("@", 1)[-1]
    if host_part.startswith("[") and "]" not in host_part:
        return "an IPv6 host needs its closing ']' (e.g. [::1]:5432)"
    if re.search(r"\s", text):
        return "it contains a space (write one in a password as %20)"
    if ":" in host_part.lstrip("[").rsplit("]", 1)[-1]:
        return "its port is not a number"
    return "it is not of the form scheme://user:password@host:port/database"


def with_database(url: str | URL, database: str) -> URL:
    return normalize(url).set(database=database)


def is_secret_parameter(name: str) -> bool:
    """Is the value of query parameter ``name`` a secret? (``sslkey`` is a file's path.)"""
    return name.lower() not in _FILE_PARAMETERS and bool(_SECRET_NAME.search(name))


def _query_items(url: URL) -> Iterator[tuple[str, str]]:
    for name in sorted(url.query):
        value = url.query[name]
        for element in (value,) if isinstance(value, str) else value:
            yield name, element


def render(url: str | URL, *, show_password: bool = False) -> str:
    """The URL as text; every secret (the password, secret query parameters) is masked
    as ``***`` unless asked for (e.g. to hand the URL to another process)."""
    parsed = normalize(url)
    if show_password:
        return parsed.render_as_string(hide_password=False)
    text = parsed.set(query={}).render_as_string(hide_password=True)
    query = "&".join(
        f"{quote_plus(name)}={MASK if is_secret_parameter(name) else quote_plus(value)}"
        for name, value in _query_items(parsed)
    )
    return f"{text}?{query}" if query else text


def mask(url: str | URL) -> str:
    """The URL with its secrets masked: what a message, a log line or a listing shows."""
    return render(url, show_password=False)


def secrets(url: str | URL) -> list[str]:
    """The secret values in ``url`` (its password, secret query parameters), as written
    and percent-decoded, longest first: what ``scrub`` removes from a message."""
    try:
        parsed = normalize(url)
    except ConfigurationError:
        return []
    values = [parsed.password] if isinstance(parsed.password, str) else []
    values += [value for name, value in _query_items(parsed) if is_secret_parameter(name)]
    found = {
        form
        for value in values
        if value
        for form in (value, quote_plus(value), quote(value, safe=" +"))
    }
    found |= {unquote(value) for value in list(found)}
    # A secret of one or two characters would mask every such letter of a message; one
    # equal to the user, database or host name is shown anyway as that (a development
    # default such as postgres/postgres), and masking it would garble the message.
    shown = {parsed.username, parsed.database, parsed.host}
    return sorted((s for s in found if len(s) >= 3 and s not in shown), key=len, reverse=True)


def scrub(text: str, url: str | URL) -> str:
    """``text`` (e.g. a driver's error message) with every secret of ``url`` masked."""
    for secret in secrets(url):
        text = text.replace(secret, MASK)
    return text


def where(url: URL) -> str:
    """``host:port/database``: enough to tell which database, nothing secret. A host or
    port given in the query (``?host=/run/postgresql``, a socket folder) counts."""
    host = url.host or _query_value(url, "host") or "localhost"
    port = url.port or _query_value(url, "port") or 5432
    return f"{host}:{port}/{url.database or ''}"


def _query_value(url: URL, name: str) -> str:
    given = url.query.get(name)
    if given is None:
        return ""
    return given if isinstance(given, str) else ",".join(given)
