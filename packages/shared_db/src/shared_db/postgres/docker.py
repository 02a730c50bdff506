"""The Docker path: a compose Postgres, used when a Docker engine answers.

The ``docker`` command existing is not enough (this machine has the client
only): the daemon must answer a ``/_ping``.
"""

import os
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from shared_db.errors import PostgresError

if TYPE_CHECKING:  # SQLAlchemy is imported on use: engine_answers() stays light
    from sqlalchemy.engine import URL

PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
COMPOSE_SERVICE = "postgres"
DEFAULT_PORT = 54329


def _ping(sock: socket.socket, address: str | tuple[str, int], timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        sock.sendall(PING)
        reply = sock.recv(256)
    except OSError:
        return False
    finally:
        sock.close()
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0] + b" "


def engine_answers(timeout: float = 0.5) -> bool:
    """True when a Docker daemon answers its ping on ``DOCKER_HOST`` (or the default socket)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parsed = urlparse(host)
    if parsed.scheme == "unix":
        if not Path(parsed.path).exists():
            return False
        return _ping(socket.socket(socket.AF_UNIX), parsed.path, timeout)
    if parsed.scheme == "tcp" and parsed.hostname:
        return _ping(socket.socket(), (parsed.hostname, parsed.port or 2375), timeout)
    return False  # ssh:// and others: not probed, use DATABASE_URL instead


def compose_file(project_root: Path) -> Path:
    return project_root / "docker" / "compose.yaml"


def compose_up(project_root: Path) -> "URL":
    """Start (or reuse) the compose Postgres and wait until its healthcheck passes."""
    compose = compose_file(project_root)
    if not compose.exists():
        raise PostgresError(
            f"a Docker engine answers but {compose} is missing; "
            "set DATABASE_URL, or run from a checkout of the project"
        )
    command = ["docker", "compose", "-f", str(compose), "up", "-d", "--wait", COMPOSE_SERVICE]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PostgresError(
            f"docker compose could not start Postgres: {last}; "
            "fix Docker or set DATABASE_URL (SIGNALMARKET_POSTGRES=local uses a local server)"
        )
    return compose_url()


def compose_down(project_root: Path) -> None:
    subprocess.run(
        ["docker", "compose", "-f", str(compose_file(project_root)), "stop", COMPOSE_SERVICE],
        capture_output=True,
        check=False,
    )


def compose_url() -> "URL":
    """The compose Postgres as published on the host (see docker/compose.yaml)."""
    from sqlalchemy.engine import URL

    from shared_db.urls import DRIVER

    port = int(os.environ.get("SIGNALMARKET_PG_PORT", DEFAULT_PORT))
    password = os.environ.get("POSTGRES_PASSWORD", "postgres")
    return URL.create(DRIVER, "postgres", password, "127.0.0.1", port, "postgres")
