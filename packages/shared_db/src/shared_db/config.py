"""The one configuration object, read from the environment once, by a front end.

Every library function that needs a setting takes a ``DbConfig`` as its first
argument, as ``alembic.command.upgrade`` takes its ``Config``; no library module
reads the environment. Front ends (the Invoke tasks, a service's startup, Alembic's
own command line through ``env.py``, the tests) build it with ``from_environ``.
"""

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from shared_db.errors import ConfigurationError
from shared_db.services import SERVICES, check_service, env_prefix

if TYPE_CHECKING:  # SQLAlchemy is imported only when a URL is parsed
    from sqlalchemy.engine import URL

PACKAGED_MIGRATIONS = Path(__file__).parent / "migrations"
CALLERS = ("cli", "startup", "test", "alembic", "job")


@dataclass(frozen=True)
class DbConfig:
    """Where the databases and the histories are, and how long to wait for them."""

    # A URL per service (``<SERVICE>_DATABASE_URL``), else ``database_url`` (``DATABASE_URL``).
    # A variable set to an empty value counts as set (and is refused when used: an unset
    # variable in ``DATABASE_URL=$PROD_URL`` must not mean "use the development database").
    database_urls: Mapping[str, str] = field(default_factory=dict)
    database_url: str | None = None
    migrations_dir: Path = PACKAGED_MIGRATIONS
    # Which path runs migrations: part of every migration connection's application_name.
    caller: str = "cli"
    # Seconds to wait for another process's migration lock, and for the database to answer.
    lock_wait_s: float = 60.0
    database_wait_s: float = 30.0
    connect_timeout_s: float = 10.0
    # The lock-wait guard: each migration statement waits at most this long for a table
    # lock (Postgres's lock_timeout; a revision may set its own), then the revision is
    # rolled back and retried after a pause, at most lock_retries times within
    # retry_budget_s seconds.
    table_lock_timeout_s: float = 2.0
    lock_retries: int = 10
    retry_budget_s: float = 120.0
    # How long a busy backend left by an earlier, dead migrator may finish before it is
    # terminated; and how often the server checks that a migration's client is alive.
    leftover_wait_s: float = 5.0
    client_check_interval_s: float = 1.0

    def url_for(self, service: str) -> str | None:
        """The configured URL of ``service``'s database, ``None`` when there is none."""
        own = self.database_urls.get(check_service(service))
        return own if own is not None else self.database_url

    def require_url(self, service: str) -> str:
        """The configured URL of ``service``'s database; raises when none is configured."""
        url = self.url_for(service)
        if url is None:
            prefix = env_prefix(service)
            raise ConfigurationError(
                f"no database URL: set {prefix}_DATABASE_URL or DATABASE_URL",
                kind="no_database_url",
                service=service,
            )
        return url

    def url_source(self, service: str) -> str:
        """The setting ``service``'s URL comes from, to name it in an error."""
        if check_service(service) in self.database_urls:
            return f"{env_prefix(service)}_DATABASE_URL"
        return "DATABASE_URL"

    def parsed_url(self, service: str) -> "URL":
        """``service``'s URL, parsed; a URL that is not PostgreSQL's (or is empty) is
        refused, naming the setting it came from (never its value: it may hold a password)."""
        return self._parsed(self.require_url(service), self.url_source(service), service)

    def parsed_database_url(self) -> "URL | None":
        """``DATABASE_URL``, parsed; ``None`` when it is not set; refused like ``parsed_url``."""
        if self.database_url is None:
            return None
        return self._parsed(self.database_url, "DATABASE_URL", None)

    @staticmethod
    def _parsed(url: str, source: str, service: str | None) -> "URL":
        from shared_db.urls import normalize

        try:
            return normalize(url)
        except ConfigurationError as exc:
            exc.message = f"{source}: {exc.message}"
            exc.service = service
            raise

    def with_urls(self, urls: Mapping[str, str]) -> Self:
        """A copy with these per-service URLs added (e.g. provisioned ones)."""
        return dataclasses.replace(self, database_urls={**self.database_urls, **urls})

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    def script_location(self, service: str) -> Path:
        return self.migrations_dir / check_service(service)

    def versions_dir(self, service: str) -> Path:
        return self.script_location(service) / "versions"

    def application_name(self, service: str, kind: str = "migrate") -> str:
        """``<kind>:<service>:<caller>@<host>:<pid>``, at most Postgres's 63 bytes; kind
        ``migrate`` applies revisions, ``migrate-lock`` holds the migration lock,
        ``migrate-read`` only reads the database's state (never a leftover to clear: a
        live migrator's check before it takes the lock, or a status read)."""
        name = f"{kind}:{service}:{self.caller}@{socket.gethostname()}:{os.getpid()}"
        return name.encode()[:63].decode(errors="ignore")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: Any) -> Self:
        """Read the settings this object holds from ``environ`` (a front end passes
        ``os.environ``); ``overrides`` win over the environment."""
        values: dict[str, Any] = {
            "database_urls": {
                s: environ[f"{env_prefix(s)}_DATABASE_URL"]
                for s in SERVICES
                if f"{env_prefix(s)}_DATABASE_URL" in environ
            },
            "database_url": environ.get("DATABASE_URL"),
        }
        if environ.get("SIGNALMARKET_MIGRATIONS_DIR"):
            values["migrations_dir"] = Path(environ["SIGNALMARKET_MIGRATIONS_DIR"])
        for key, variable in (
            ("lock_wait_s", "MIGRATION_LOCK_TIMEOUT"),
            ("database_wait_s", "DATABASE_WAIT_TIMEOUT"),
            ("table_lock_timeout_s", "MIGRATION_TABLE_LOCK_TIMEOUT"),
            ("retry_budget_s", "MIGRATION_RETRY_BUDGET"),
        ):
            if environ.get(variable):
                values[key] = seconds(variable, environ[variable])
        if environ.get("MIGRATION_LOCK_RETRIES"):
            values["lock_retries"] = count(
                "MIGRATION_LOCK_RETRIES", environ["MIGRATION_LOCK_RETRIES"]
            )
        values.update(overrides)
        return cls(**values)


def seconds(variable: str, value: str) -> float:
    """A non-negative number of seconds from a setting; raises naming the setting."""
    try:
        parsed = float(value)
    except ValueError:
        parsed = -1.0
    if not parsed >= 0 or parsed == float("inf"):
        raise ConfigurationError(
            f"{variable}={value!r} is not a number of seconds", kind="invalid_setting"
        )
    return parsed


def count(variable: str, value: str) -> int:
    """A positive whole number from a setting; raises naming the setting."""
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigurationError(
            f"{variable}={value!r} is not a positive whole number", kind="invalid_setting"
        )
    return int(value)
