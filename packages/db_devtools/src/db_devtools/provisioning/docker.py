"""The Docker path: a compose Postgres, used when a Docker engine answers.

The ``docker`` command existing is not enough (a machine may have the client only):
the daemon must answer a ``/_ping``.
"""

import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from shared_db.urls import DRIVER
from sqlalchemy.engine import URL

from db_devtools.config import DevConfig
from db_devtools.errors import ProvisioningError

PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
COMPOSE_SERVICE = "postgres"


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


def engine_answers(docker_host: str, timeout: float = 0.5) -> bool:
    """True when a Docker daemon answers its ping on ``docker_host`` (a DOCKER_HOST value)."""
    parsed = urlparse(docker_host)
    if parsed.scheme == "unix":
        if not Path(parsed.path).exists():
            return False
        return _ping(socket.socket(socket.AF_UNIX), parsed.path, timeout)
    if parsed.scheme == "tcp" and parsed.hostname:
        return _ping(socket.socket(), (parsed.hostname, parsed.port or 2375), timeout)
    return False  # ssh:// and others: not probed, use DATABASE_URL instead


def compose_file(project_root: Path) -> Path:
    return project_root / "docker" / "compose.yaml"


def compose_up(config: DevConfig) -> URL:
    """Start (or reuse) the compose Postgres and wait until its healthcheck passes."""
    compose = compose_file(config.project_root)
    if not compose.exists():
        raise ProvisioningError(
            f"a Docker engine answers but {compose} is missing", kind="no_compose_file"
        )
    command = ["docker", "compose", "-f", str(compose), "up", "-d", "--wait", COMPOSE_SERVICE]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProvisioningError(
            f"docker compose could not start Postgres: {last}",
            kind="compose_failed",
            cause=last,
        )
    return compose_url(config)


def compose_down(config: DevConfig) -> None:
    compose = compose_file(config.project_root)
    subprocess.run(
        ["docker", "compose", "-f", str(compose), "stop", COMPOSE_SERVICE],
        capture_output=True,
        check=False,
    )


def compose_url(config: DevConfig) -> URL:
    """The compose Postgres as published on the host (see docker/compose.yaml)."""
    return URL.create(
        DRIVER, "postgres", config.compose_password, "127.0.0.1", config.compose_pg_port, "postgres"
    )
