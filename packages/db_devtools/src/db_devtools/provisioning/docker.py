"""The Docker path: the compose Postgres, used when a Docker engine answers **and** a
compose implementation works (the v2 plugin, else a standalone ``docker-compose`` v1).

The ``docker`` command existing is not enough (a machine may have the client only): the
daemon must answer a ``/_ping``. Every ``docker``/compose call checks its exit code and
reports the real cause: the first meaningful line of its stderr, not the last (Docker
ends many errors with "Run 'docker --help' for more information").
"""

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from shared_db.urls import DRIVER
from sqlalchemy.engine import URL

from db_devtools.config import DevConfig
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning.filelock import locked

PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
COMPOSE_SERVICE = "postgres"
PROJECT = "signalmarket"  # docker/compose.yaml's top-level name (v1 needs it as -p)
UP_TIMEOUT_S = 180.0
CALL_TIMEOUT_S = 60.0

# Lines that are never the cause: progress, usage and pointers to --help.
_NOISE = re.compile(
    r"^(Run '|See '|Usage:|For more help|\s*(Container|Network|Volume|Image)\s|#\d|"
    r"Creating |Starting |Stopping |Removing |Recreating |Pulling |Waiting |Attaching )"
)
_CAUSE = re.compile(r"error|denied|unknown|cannot|can't|not found|failed|conflict|no such", re.I)


def first_meaningful_line(output: str) -> str:
    """The line of ``output`` that says what went wrong (see the module docstring)."""
    lines = [line.strip() for line in output.splitlines()]
    lines = [line for line in lines if line and not _NOISE.match(line)]
    for line in lines:
        if _CAUSE.search(line):
            return line
    return lines[0] if lines else "no output"


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


@dataclass(frozen=True)
class Compose:
    """A working compose implementation: the command that runs it, and its version."""

    command: tuple[str, ...]
    version: str

    @property
    def name(self) -> str:
        return " ".join(self.command)


@dataclass(frozen=True)
class Probe:
    """Whether the Docker path can be used: ``compose`` when it can, else ``reason``."""

    compose: Compose | None
    reason: str | None


_found: dict[tuple[str | None, str | None], tuple[Compose | None, str]] = {}


def _version(command: list[str]) -> tuple[str | None, str]:
    """(version, None) when ``command version`` works, else (None, its real cause)."""
    try:
        result = subprocess.run(
            [*command, "version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=CALL_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if result.returncode != 0:
        return None, first_meaningful_line(result.stderr or result.stdout)
    found = re.search(r"v?\d+\.\d+\.\d+", result.stdout)
    return (found.group(0) if found else "unknown"), ""


def find_compose() -> tuple[Compose | None, str]:
    """The compose plugin (``docker compose``), else ``docker-compose``; or (None, why)."""
    causes = []
    if shutil.which("docker"):
        version, cause = _version(["docker", "compose"])
        if version is not None:
            return Compose(("docker", "compose"), version), ""
        causes.append(f"`docker compose`: {cause}")
    else:
        causes.append("no `docker` command")
    if shutil.which("docker-compose"):
        version, cause = _version(["docker-compose"])
        if version is not None:
            return Compose(("docker-compose",), version), ""
        causes.append(f"`docker-compose`: {cause}")
    else:
        causes.append("no `docker-compose` command")
    return None, "; ".join(causes)


def probe(docker_host: str) -> Probe:
    """Can the Docker path be used? The engine is asked every time (a ping is cheap);
    which compose works is found once per process and per installed CLIs."""
    if not engine_answers(docker_host):
        return Probe(None, f"no Docker engine answers on {docker_host}")
    key = (shutil.which("docker"), shutil.which("docker-compose"))
    if key not in _found:
        _found[key] = find_compose()
    compose, why = _found[key]
    if compose is None:
        return Probe(None, f"a Docker engine answers on {docker_host} but no compose works ({why})")
    return Probe(compose, None)


def compose_file(project_root: Path) -> Path:
    return project_root / "docker" / "compose.yaml"


def _required_compose(config: DevConfig) -> Compose:
    found = probe(config.docker_host)
    if found.compose is None:
        raise ProvisioningError(
            f"the Docker path cannot be used: {found.reason}", kind="no_compose", cause=found.reason
        )
    return found.compose


def run_compose(config: DevConfig, *args: str, action: str, timeout: float = CALL_TIMEOUT_S) -> str:
    """``<compose> -p signalmarket -f docker/compose.yaml ARGS``; its stdout, or raise
    ``ProvisioningError`` naming ``action`` and the real cause."""
    compose = compose_file(config.project_root)
    if not compose.exists():
        raise ProvisioningError(
            f"a Docker engine answers but {compose} is missing", kind="no_compose_file"
        )
    tool = _required_compose(config)
    command = [*tool.command, "-p", PROJECT, "-f", str(compose), *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ProvisioningError(
            f"{tool.name} could not {action}: no answer within {timeout:.0f} s",
            kind="compose_failed",
            cause="timeout",
        ) from None
    if result.returncode != 0:
        cause = first_meaningful_line(result.stderr or result.stdout)
        raise ProvisioningError(
            f"{tool.name} could not {action}: {cause}", kind="compose_failed", cause=cause
        )
    return result.stdout


def compose_up(config: DevConfig) -> URL:
    """Start (or reuse) the compose Postgres and wait until its healthcheck passes.

    Serialised between processes by a file lock: test workers starting at once would
    otherwise race to create the same container ("Conflict. The container name ... is
    already in use")."""
    with locked(config.state_dir / "compose.lock"):
        if container_state(config) != "healthy":
            _start(config)
    return compose_url(config)


def _start(config: DevConfig) -> None:
    tool = _required_compose(config)
    if tool.command == ("docker", "compose"):
        run_compose(
            config,
            "up",
            "-d",
            "--wait",
            COMPOSE_SERVICE,
            action="start Postgres",
            timeout=UP_TIMEOUT_S,
        )
        return
    # docker-compose v1 has no --wait: start, then poll the container's health.
    run_compose(config, "up", "-d", COMPOSE_SERVICE, action="start Postgres")
    _wait_healthy(config, UP_TIMEOUT_S)


def _wait_healthy(config: DevConfig, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = container_state(config)
    while state != "healthy":
        if state in ("absent", "exited", "dead", "unhealthy"):
            raise ProvisioningError(
                f"the compose Postgres is {state}: see docker logs {PROJECT}-postgres-1",
                kind="compose_failed",
                cause=state,
            )
        if time.monotonic() > deadline:
            raise ProvisioningError(
                f"the compose Postgres is not healthy after {timeout:.0f} s (it is {state})",
                kind="compose_failed",
                cause="timeout",
            )
        time.sleep(0.5)
        state = container_state(config)


def container_state(config: DevConfig, service: str = COMPOSE_SERVICE) -> str:
    """``absent``, or the container's health (``healthy``, ``starting``, ``unhealthy``)
    when it runs and has a healthcheck, else its status (``running``, ``exited``, ...)."""
    ids = run_compose(config, "ps", "-a", "-q", service, action="list its containers").split()
    if not ids:
        return "absent"
    template = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
    try:
        result = subprocess.run(
            ["docker", "inspect", "-f", template, ids[0]],
            capture_output=True,
            text=True,
            check=False,
            timeout=CALL_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisioningError(
            f"docker inspect failed: {exc}", kind="compose_failed", cause=str(exc)
        ) from None
    if result.returncode != 0:
        cause = first_meaningful_line(result.stderr)
        raise ProvisioningError(
            f"docker could not inspect the {service} container: {cause}",
            kind="compose_failed",
            cause=cause,
        )
    status, _, health = result.stdout.strip().partition(" ")
    return health if status == "running" and health else status


def compose_down(config: DevConfig) -> bool:
    """Stop the compose Postgres; False when it was not running. Raises when the stop
    failed (the container still runs)."""
    with locked(config.state_dir / "compose.lock"):
        before = container_state(config)
        if before in ("absent", "exited", "created", "dead"):
            return False
        run_compose(config, "stop", COMPOSE_SERVICE, action="stop Postgres")
        after = container_state(config)
        if after not in ("exited", "absent"):
            raise ProvisioningError(
                f"the compose Postgres is still {after} after `stop`",
                kind="compose_failed",
                cause=after,
            )
    return True


def compose_url(config: DevConfig) -> URL:
    """The compose Postgres as published on the host (see docker/compose.yaml)."""
    return URL.create(
        DRIVER, "postgres", config.compose_password, "127.0.0.1", config.compose_pg_port, "postgres"
    )
