"""Run the four services locally as background processes (``invoke up`` / ``down``).

State lives in ``.run/`` at the project root: a pid file and a log per service,
and the gateway's admin token. Each service migrates its own database on startup.

A pid file records the process's identity (``processes.Identity``: pid, start time,
boot, command line) as well as its port, so a pid that has exited and been reused by
another program is told apart: its file is stale, removed, and that program is never
signalled. ``start`` is all-or-nothing: when a service fails to start, it stops the
ones it started; the log shown is the one of this start (the previous run's is kept as
``<service>.log.1``).
"""

import contextlib
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from db_devtools.config import DevConfig
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning import processes
from db_devtools.provisioning.ports import port_free
from db_devtools.provisioning.processes import Identity
from db_devtools.provisioning.resolve import with_databases
from shared_db.services import PORTS, env_prefix
from shared_db.urls import render

from dev_tasks.readiness import NotReady, Target, wait_ready

# Upstreams first, so the gateway starts with them in place.
ORDER = ("signal_ingestion", "scoring_engine", "marketplace_publisher", "api_gateway")
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0  # SIGTERM, then SIGKILL
PID_FILE_VERSION = 1


class StackError(ProvisioningError):
    """A service could not be started or stopped."""

    kind = "stack"


@dataclass(frozen=True)
class Running:
    service: str
    pid: int
    url: str


@dataclass(frozen=True)
class PidFile:
    """What ``.run/<service>.pid`` says: the process started, and its port.
    ``process`` is ``None`` in a file of the old format (``"pid port"``): without an
    identity the pid cannot be told from a reused one, so it is never signalled."""

    pid: int
    port: int
    process: Identity | None


def _ignore(_note: str) -> None:
    pass


def pid_path(run_dir: Path, service: str) -> Path:
    return run_dir / f"{service}.pid"


def write_pid_file(path: Path, process: Identity, port: int) -> None:
    """Write the record atomically (a temporary file renamed into place)."""
    record = {
        "version": PID_FILE_VERSION,
        "pid": process.pid,
        "port": port,
        "started": process.started,
        "boot": process.boot,
        "cmdline": list(process.cmdline),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record) + "\n")
    os.replace(temporary, path)


def read_pid_file(path: Path) -> PidFile | None:
    """The record in ``path``; ``None`` when there is no file. A file that says nothing
    usable reads as pid 0 (no process: stale)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return PidFile(0, 0, None)
    try:
        record = json.loads(text)
        if isinstance(record, dict):
            pid, port = int(record["pid"]), int(record["port"])
            started, boot = str(record["started"]), str(record["boot"])
            cmdline = tuple(str(arg) for arg in record["cmdline"])
            return PidFile(pid, port, Identity(pid, started, boot, cmdline))
    except (ValueError, KeyError, TypeError):
        pass
    try:  # the old format: "pid port"
        pid_text, port_text = text.split()
        return PidFile(int(pid_text), int(port_text), None)
    except ValueError:
        return PidFile(0, 0, None)


def stale_reason(record: PidFile) -> str | None:
    """Why ``record`` no longer describes a running service; ``None`` when it does."""
    pid = record.pid
    if pid <= 0:
        return "unreadable"
    if record.process is None:
        still = (
            f" and still runs: if it is the service, stop it with: kill {pid}"
            if processes.alive(pid)
            else ""
        )
        return f"old format without the process's identity: pid {pid} was not signalled{still}"
    if processes.running(record.process):
        return None
    if processes.identity(pid) is None:
        return f"pid {pid} has exited"
    return f"pid {pid} is another program"


def _running(run_dir: Path, service: str, note: Callable[[str], None]) -> PidFile | None:
    """The record of ``service`` when it runs; a stale file is removed, with a note."""
    path = pid_path(run_dir, service)
    record = read_pid_file(path)
    if record is None:
        return None
    why = stale_reason(record)
    if why is None:
        return record
    path.unlink(missing_ok=True)
    note(f"{service}: stale pid file removed ({why})")
    return None


def _log_path(run_dir: Path, service: str) -> Path:
    return run_dir / f"{service}.log"


def _log_tail(run_dir: Path, service: str, lines: int = 3) -> str:
    log = _log_path(run_dir, service)
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
        config.parsed_url(service), show_password=True
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
    config: DevConfig,
    environ: dict[str, str],
    base_port: int | None = None,
    note: Callable[[str], None] = _ignore,
) -> list[Running]:
    """Start every service not already running, then wait until all are ready.

    All or nothing: when one cannot start, exits or is not ready in time, the services
    this call started are stopped (and reaped) before ``StackError`` is raised; those
    already running are left alone. ``note`` hears of stale pid files removed."""
    run_dir = config.run_dir
    config = with_databases(config, ORDER)
    ports = ports_from(base_port)
    run_dir.mkdir(exist_ok=True)
    reused = {s: r for s in ORDER if (r := _running(run_dir, s, note)) is not None}
    ports.update({service: record.port for service, record in reused.items()})
    for service in ORDER:
        if service not in reused and not port_free(ports[service]):
            raise StackError(
                f"cannot start: port {ports[service]} on 127.0.0.1 is in use by another program",
                kind="port_in_use",
                service=service,
            )
    children: dict[str, subprocess.Popen[bytes]] = {}
    failed: list[str] = []

    def exited(service: str) -> str | None:
        child = children.get(service)
        record = reused.get(service)
        if child is not None:
            gone = child.poll() is not None  # reaps it
        else:
            process = record.process if record is not None else None
            gone = process is None or not processes.running(process)
        if not gone:
            return None
        failed.append(service)
        return f"{_log_tail(run_dir, service)} (log: {_log_path(run_dir, service)})"

    try:
        for service in ORDER:
            if service not in reused:
                children[service] = _launch(config, service, ports, environ)
        targets = [
            Target(
                service,
                f"http://127.0.0.1:{ports[service]}/ready",
                functools.partial(exited, service),
            )
            for service in ORDER
        ]
        wait_ready(targets, READY_TIMEOUT_S)
    except NotReady as exc:
        _stop_children(run_dir, children)
        others = [s for s in children if s not in failed]
        also = f"; also stopped: {', '.join(others)}" if others else ""
        if failed:
            raise StackError(f"{exc}{also}", kind="service_exited") from None
        logs = f" (logs: {run_dir}/<service>.log)"
        raise StackError(f"{exc}{logs}{also}", kind="not_ready") from None
    except BaseException:  # an interrupt too: nothing is left half started
        _stop_children(run_dir, children)
        raise
    return [
        Running(
            service,
            children[service].pid if service in children else reused[service].pid,
            f"http://127.0.0.1:{ports[service]}",
        )
        for service in ORDER
    ]


def _launch(
    config: DevConfig, service: str, ports: dict[str, int], environ: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start ``service`` in its own session with a fresh log, and record it."""
    run_dir = config.run_dir
    log_path = _log_path(run_dir, service)
    if log_path.exists():  # keep the previous run's log, show only this run's
        os.replace(log_path, log_path.with_name(f"{log_path.name}.1"))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", service, "--port", str(ports[service])],
            env=_environment(config, service, ports, environ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # keeps running after invoke exits; pid == pgid
        )
    started = processes.identity_after_exec(process.pid)
    if started is not None:  # else it has exited already: the readiness wait says so
        write_pid_file(pid_path(run_dir, service), started, ports[service])
    return process


def _stop_children(run_dir: Path, children: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop the services this process started (SIGTERM to their groups, SIGKILL after
    ``STOP_TIMEOUT_S``), reap each, and remove their pid files. An unreaped child keeps
    its pid, so signalling it cannot hit another program."""
    for process in reversed(children.values()):
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for service, process in children.items():
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        pid_path(run_dir, service).unlink(missing_ok=True)


def stop(config: DevConfig, note: Callable[[str], None] = _ignore) -> list[str]:
    """Stop every running service (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``);
    returns their names. A pid file whose process is not the one it recorded is removed
    with a note (``note``), that process left alone."""
    run_dir = config.run_dir
    stopped = []
    for service in reversed(ORDER):
        record = _running(run_dir, service, note)
        if record is None or record.process is None:
            continue
        try:
            processes.terminate(record.process, STOP_TIMEOUT_S)
        except PermissionError:
            raise StackError(
                f"cannot stop pid {record.pid}: it belongs to another account",
                kind="not_permitted",
                service=service,
                cause=str(record.pid),
            ) from None
        except TimeoutError:
            raise StackError(
                f"pid {record.pid} still runs after SIGKILL",
                kind="stop_failed",
                service=service,
                cause=str(record.pid),
            ) from None
        pid_path(run_dir, service).unlink(missing_ok=True)
        stopped.append(service)
    return stopped
