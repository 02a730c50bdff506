"""Where a service's database is: the resolution order of the project.

1. ``<SERVICE>_DATABASE_URL``, then ``DATABASE_URL``: used as is.
2. A Docker engine that answers: the compose Postgres (``docker/compose.yaml``).
3. A project-owned local server (``.postgres/``), started on demand and reused.

``SIGNALMARKET_POSTGRES=local`` or ``=docker`` forces step 2 or 3.
"""

import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from sqlalchemy.engine import URL

from shared_db import settings
from shared_db.databases import ensure_database, ensure_service_database
from shared_db.errors import PostgresError
from shared_db.paths import project_root
from shared_db.postgres import docker
from shared_db.postgres.local import LocalServer
from shared_db.urls import normalize, with_database

BACKENDS = ("auto", "docker", "local")


def state_dir() -> Path:
    return project_root() / ".postgres"


def local_server() -> LocalServer:
    return LocalServer(state_dir())


def backend() -> str:
    """``docker`` or ``local``: what provides Postgres when no URL is configured."""
    wanted = os.environ.get("SIGNALMARKET_POSTGRES", "auto").lower()
    if wanted not in BACKENDS:
        raise PostgresError(
            f"SIGNALMARKET_POSTGRES={wanted!r} is not one of {', '.join(BACKENDS)}; "
            "unset it or pick one"
        )
    if wanted != "auto":
        return wanted
    return "docker" if docker.engine_answers() else "local"


@cache
def server_url() -> URL:
    """The provisioned server's superuser URL (database ``postgres``), started if needed."""
    if backend() == "docker":
        return docker.compose_up(project_root())
    info, _how = local_server().up()
    return info.url(local_server().password())


def admin_url(service: str | None = None) -> URL:
    """A URL on the server that holds ``service``'s database, for scratch databases."""
    configured = settings.configured_url(service) if service else os.environ.get("DATABASE_URL")
    if configured:
        return normalize(configured).set(database="postgres")
    return server_url()


def database_url(service: str) -> URL:
    """The URL of ``service``'s database; a provisioned one is created on demand.

    On the local server each service gets its own role owning its own database (see
    ``ensure_service_database``); on the compose Postgres the superuser is used from
    the host, while the containers use the roles made by docker/initdb."""
    configured = settings.configured_url(service)
    if configured:
        return normalize(configured)
    admin = server_url()
    if backend() == "local":
        return ensure_service_database(admin, service, role_password(admin, service))
    url = with_database(admin, service)
    ensure_database(url)
    return url


def role_password(admin: URL, service: str) -> str:
    """The service role's password, derived from the server's own secret (no extra state)."""
    key = (admin.password or "").encode()
    return hmac.new(key, f"role:{service}".encode(), hashlib.sha256).hexdigest()[:32]


@contextlib.contextmanager
def test_server() -> Iterator[URL]:
    """A server for a test run: ``DATABASE_URL``'s server if set, the compose Postgres
    when Docker answers, else a throwaway local server that dies with this process."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield normalize(configured).set(database="postgres")
        return
    if backend() == "docker":
        yield docker.compose_up(project_root())
        return
    server = local_server().throwaway()
    try:
        yield server.url()
    finally:
        server.stop()
