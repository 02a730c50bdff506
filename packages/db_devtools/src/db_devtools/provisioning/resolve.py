"""Where a service's database is, in development and tests: the resolution order.

1. A configured URL (``<SERVICE>_DATABASE_URL``, then ``DATABASE_URL``): used as is.
2. A Docker engine that answers and a compose that works (the v2 plugin, else
   ``docker-compose`` v1): the compose Postgres (``docker/compose.yaml``).
3. A project-owned local server (``.postgres/``), started on demand and reused.

The configuration's ``backend`` (``SIGNALMARKET_POSTGRES=local|docker``) skips the
Docker probe and forces one of the last two. When an engine is there but cannot be used
(no compose), ``choice`` says why, and front ends print that as one warning line.
"""

import contextlib
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shared_db.urls import normalize, render
from sqlalchemy.engine import URL

from db_devtools.config import DevConfig
from db_devtools.provisioning import docker
from db_devtools.provisioning.databases import ensure_service_database
from db_devtools.provisioning.local import LocalServer


def local_server(config: DevConfig) -> LocalServer:
    return LocalServer(
        config.state_dir,
        pg_user=config.pg_user,
        pg_bin=config.pg_bin,
        parent_death=config.parent_death,
    )


@dataclass(frozen=True)
class Choice:
    """The backend in use, and why the Docker path was passed over (``fallback``) when
    an engine answers but cannot be used: worth a warning, unlike a machine without one."""

    backend: str
    fallback: str | None = None


def choice(config: DevConfig) -> Choice:
    """Where Postgres comes from when no URL is configured (see the module docstring)."""
    if config.backend != "auto":
        return Choice(config.backend)
    found = docker.probe(config.docker_host)
    if found.compose is not None:
        return Choice("docker")
    engine_there = found.reason is not None and not found.reason.startswith("no Docker engine")
    return Choice("local", f"{found.reason}: using the local server" if engine_there else None)


def backend(config: DevConfig) -> str:
    """``docker`` or ``local``: what provides Postgres when no URL is configured."""
    return choice(config).backend


def server_url(config: DevConfig) -> URL:
    """The provisioned server's superuser URL (database ``postgres``), started if needed."""
    if backend(config) == "docker":
        return docker.compose_up(config)
    server = local_server(config)
    info, _how = server.up()
    return info.url(server.password())


def admin_url(config: DevConfig, service: str | None = None) -> URL:
    """A URL on the server that holds ``service``'s database, for scratch databases."""
    if service is not None and config.url_for(service) is not None:
        return config.parsed_url(service).set(database="postgres")
    configured = config.parsed_database_url() if service is None else None
    if configured is not None:
        return configured.set(database="postgres")
    return server_url(config)


def service_database(config: DevConfig, admin: URL, service: str) -> URL:
    """``service``'s database on the provisioned server, created on demand, as the
    service's own role: it owns the database and everything migrations create in it.

    On the compose Postgres the role and its password are those the containers use
    (docker/initdb, ``<SERVICE>_DB_PASSWORD``), so host-side migrations leave objects
    the containers can alter; on the local server the password is derived."""
    if backend(config) == "docker":
        return ensure_service_database(admin, service, config.compose_role_password(service))
    return ensure_service_database(admin, service, role_password(admin, service))


def with_databases(config: DevConfig, services: Iterable[str]) -> DevConfig:
    """``config`` with a URL for each of ``services``: configured ones are kept, the
    others are provisioned (the server is started once, if needed)."""
    missing = [s for s in services if config.url_for(s) is None]
    if not missing:
        return config
    admin = server_url(config)
    return config.with_urls(
        {s: render(service_database(config, admin, s), show_password=True) for s in missing}
    )


def database_url(config: DevConfig, service: str) -> URL:
    """The URL of ``service``'s database, configured or provisioned."""
    return with_databases(config, [service]).parsed_url(service)


def role_password(admin: URL, service: str) -> str:
    """The service role's password, derived from the server's own secret (no extra state)."""
    key = (admin.password or "").encode()
    return hmac.new(key, f"role:{service}".encode(), hashlib.sha256).hexdigest()[:32]


@contextlib.contextmanager
def test_server(config: DevConfig) -> Iterator[URL]:
    """A server for a test run: ``DATABASE_URL``'s server if set, the compose Postgres
    when asked for (``SIGNALMARKET_POSTGRES=docker``), else a throwaway local server that
    dies with this process, also when Docker answers: test databases are disposable, the
    throwaway server keeps them apart from the developer's data, and it runs in memory
    (the suite took 95 s on it against 191 s on the compose Postgres, whose every
    ``CREATE DATABASE`` and commit waits for the disk)."""
    if config.database_url:
        yield normalize(config.database_url).set(database="postgres")
        return
    if config.backend == "docker":
        yield docker.compose_up(config)
        return
    server = local_server(config).throwaway()
    try:
        yield server.url()
    finally:
        server.stop()
