"""Run the four services locally as background processes (``invoke up`` / ``down``).

State lives in ``.run/`` at the project root: a pid file and a log per service,
and the gateway's admin token. Each service migrates its own database on startup.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from shared_db import paths, provision, urls
from shared_db.errors import SharedDbError
from shared_db.processes import alive

PORTS = {"api_gateway": 8000, "signal_ingestion": 8001, "scoring_engine": 8002,
         "marketplace_publisher": 8003}  # fmt: skip
# Upstreams first, so the gateway starts with them in place.
ORDER = ("signal_ingestion", "scoring_engine", "marketplace_publisher", "api_gateway")
READY_TIMEOUT_S = 90.0


class StackError(SharedDbError):
    """A service could not be started or stopped."""


@dataclass(frozen=True)
class Running:
    service: str
    pid: int
    url: str


def run_dir() -> Path:
    return paths.project_root() / ".run"


def _pid(service: str) -> int | None:
    try:
        pid = int((run_dir() / f"{service}.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _log_tail(service: str, lines: int = 3) -> str:
    log = run_dir() / f"{service}.log"
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(text[-lines:]) or "no output"


def admin_token() -> str:
    path = run_dir() / "admin_token"
    if not path.exists():
        run_dir().mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _environment(service: str, ports: dict[str, int]) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": urls.render(provision.database_url(service), show_password=True),
    }
    env.pop(f"{service.upper()}_DATABASE_URL", None)
    if service == "api_gateway":
        env["ADMIN_TOKEN"] = admin_token()
        for upstream in ORDER[:3]:
            env[f"{upstream.upper()}_URL"] = f"http://127.0.0.1:{ports[upstream]}"
    return env


def start(base_port: int | None = None) -> list[Running]:
    """Start every service not already running, then wait until all are ready."""
    ports = dict(PORTS) if base_port is None else {
        s: base_port + i for i, s in enumerate(("api_gateway", *ORDER[:3]))
    }  # fmt: skip
    run_dir().mkdir(exist_ok=True)
    started: dict[str, int] = {}
    for service in ORDER:
        pid = _pid(service)
        if pid is not None:
            started[service] = pid
            continue
        port = ports[service]
        if not _port_free(port):
            raise StackError(
                f"cannot start {service}: port {port} on 127.0.0.1 is in use by another "
                "program; stop it, or run: invoke up --base-port 9000"
            )
        with open(run_dir() / f"{service}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", service, "--port", str(port)],
                env=_environment(service, ports),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # keeps running after invoke exits
            )
        (run_dir() / f"{service}.pid").write_text(f"{process.pid} {port}\n")
        started[service] = process.pid
    return [_await_ready(service, pid, _port_of(service)) for service, pid in started.items()]


def _port_of(service: str) -> int:
    return int((run_dir() / f"{service}.pid").read_text().split()[1])


def _await_ready(service: str, pid: int, port: int) -> Running:
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if _pid(service) is None:
            raise StackError(
                f"{service} exited during startup: {_log_tail(service)}; "
                f"see {run_dir() / (service + '.log')}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return Running(service, pid, url)
        time.sleep(0.2)
    raise StackError(
        f"{service} not ready after {READY_TIMEOUT_S:.0f} s: {_log_tail(service)}; "
        f"see {run_dir() / (service + '.log')}"
    )


def stop() -> list[str]:
    """Stop every running service (SIGTERM, then SIGKILL after 10 s); returns their names."""
    stopped = []
    for service in reversed(ORDER):
        pid = _pid(service)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid(service) is not None and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            if _pid(service) is not None:
                os.killpg(pid, signal.SIGKILL)
            stopped.append(service)
        (run_dir() / f"{service}.pid").unlink(missing_ok=True)
    return stopped
