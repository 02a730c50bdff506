"""Run the four services locally as background processes (``invoke up`` / ``down``).

State lives in ``.run/`` at the project root: a pid file and a log per service,
and the gateway's admin token. Each service migrates its own database on startup.
"""

import contextlib
import functools
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from db_devtools.config import DevConfig
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning.ports import port_free
from db_devtools.provisioning.processes import alive
from db_devtools.provisioning.resolve import with_databases
from shared_db.services import PORTS, env_prefix
from shared_db.urls import render

from dev_tasks.readiness import NotReady, Target, wait_ready

# Upstreams first, so the gateway starts with them in place.
ORDER = ("signal_ingestion", "scoring_engine", "marketplace_publisher", "api_gateway")
READY_TIMEOUT_S = 90.0


class StackError(ProvisioningError):
    """A service could not be started or stopped."""

    kind = "stack"


@dataclass(frozen=True)
class Running:
    service: str
    pid: int
    url: str


def _pid(run_dir: Path, service: str) -> int | None:
    try:
        pid = int((run_dir / f"{service}.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def _log_tail(run_dir: Path, service: str, lines: int = 3) -> str:
    log = run_dir / f"{service}.log"
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(text[-lines:]) or "no output"


def admin_token(run_dir: Path) -> str:
    path = run_dir / "admin_token"
    if not path.exists():
        run_dir.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _environment(
    config: DevConfig, service: str, ports: dict[str, int], base: dict[str, str]
) -> dict[str, str]:
    """The service's environment: its database URL passed explicitly, and for the gateway
    its upstreams and admin token."""
    env = {k: v for k, v in base.items() if not k.endswith("DATABASE_URL")}
    env[f"{env_prefix(service)}_DATABASE_URL"] = render(
        config.require_url(service), show_password=True
    )
    if service == "api_gateway":
        env["ADMIN_TOKEN"] = admin_token(config.run_dir)
        for upstream in ORDER[:3]:
            env[f"{upstream.upper()}_URL"] = f"http://127.0.0.1:{ports[upstream]}"
    return env


def ports_from(base_port: int | None) -> dict[str, int]:
    """The default port map, or the same layout moved to start at ``base_port``."""
    if base_port is None:
        return dict(PORTS)
    first = min(PORTS.values())
    return {service: base_port + port - first for service, port in PORTS.items()}


def start(
    config: DevConfig, environ: dict[str, str], base_port: int | None = None
) -> list[Running]:
    """Start every service not already running, then wait until all are ready."""
    run_dir = config.run_dir
    config = with_databases(config, ORDER)
    ports = ports_from(base_port)
    run_dir.mkdir(exist_ok=True)
    started: dict[str, tuple[int, int]] = {}
    for service in ORDER:
        pid = _pid(run_dir, service)
        if pid is not None:
            started[service] = (pid, _port_of(run_dir, service))
            continue
        port = ports[service]
        if not port_free(port):
            raise StackError(
                f"cannot start: port {port} on 127.0.0.1 is in use by another program",
                kind="port_in_use",
                service=service,
            )
        with open(run_dir / f"{service}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", service, "--port", str(port)],
                env=_environment(config, service, ports, environ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # keeps running after invoke exits
            )
        (run_dir / f"{service}.pid").write_text(f"{process.pid} {port}\n")
        started[service] = (process.pid, port)

    def exited(service: str) -> str | None:
        if _pid(run_dir, service) is not None:
            return None
        return f"{_log_tail(run_dir, service)} (log: {run_dir / (service + '.log')})"

    targets = [
        Target(service, f"http://127.0.0.1:{port}/ready", functools.partial(exited, service))
        for service, (_pid_, port) in started.items()
    ]
    try:
        wait_ready(targets, READY_TIMEOUT_S)
    except NotReady as exc:
        raise StackError(str(exc), kind="not_ready") from None
    return [
        Running(service, pid, f"http://127.0.0.1:{port}")
        for service, (pid, port) in started.items()
    ]


def _port_of(run_dir: Path, service: str) -> int:
    return int((run_dir / f"{service}.pid").read_text().split()[1])


def stop(config: DevConfig) -> list[str]:
    """Stop every running service (SIGTERM, then SIGKILL after 10 s); returns their names."""
    run_dir = config.run_dir
    stopped = []
    for service in reversed(ORDER):
        pid = _pid(run_dir, service)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid(run_dir, service) is not None and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            if _pid(run_dir, service) is not None:
                os.killpg(pid, signal.SIGKILL)
            stopped.append(service)
        (run_dir / f"{service}.pid").unlink(missing_ok=True)
    return stopped
