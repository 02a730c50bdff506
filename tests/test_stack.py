"""``invoke up`` starts the four services (each migrating on startup); ``invoke down``
stops them (``dev_tasks.stack``)."""

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from unittest import mock

import httpx
import pytest
from db_devtools.config import DevConfig
from db_devtools.provisioning import processes
from db_devtools.provisioning.ports import port_free
from db_devtools.provisioning.processes import Identity
from dev_tasks import stack
from dev_tasks.stack import ORDER, PidFile, ports_from, read_pid_file, write_pid_file
from helpers import config_for, head, invoke, raw
from shared_db import commands
from shared_db.services import PORTS, SERVICES
from sqlalchemy.engine import URL


def _four_free_ports() -> int:
    """Four consecutive free ports (``--base-port``), searched from a random start: test
    workers running ``up`` at the same time must not pick the same block. Below Linux's
    ephemeral range (32768 on), where the kernel hands out ports to other programs'
    connections and to servers asking for any free port (ours included)."""
    start = random.SystemRandom().randrange(21000, 32000, 37)
    bases: list[int] = [*range(start, 32700, 37), *range(21000, start, 37)]
    for base in bases:
        if all(port_free(port) for port in range(base, base + 4)):
            return base
    raise AssertionError("no four consecutive free ports")


def _environment(database: URL | str, root: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database if isinstance(database, str) else raw(database),
        "SIGNALMARKET_ROOT": str(root),  # .run/ of this test, not the developer's
    }


def _pids(output: str) -> dict[str, int]:
    """``service -> pid`` from the lines ``invoke up`` prints."""
    return {
        name: int(pid)
        for name, pid in re.findall(r"^(\w+)\s+http://\S+\s+\(pid (\d+),", output, re.M)
    }


def test_ports_from_moves_the_port_map_as_a_block() -> None:
    assert ports_from(None) == PORTS
    moved = ports_from(9000)
    assert sorted(moved.values()) == [9000, 9001, 9002, 9003]
    offsets = {service: moved[service] - PORTS[service] for service in SERVICES}
    assert len(set(offsets.values())) == 1, "every service moves by the same offset"


def test_up_refuses_a_port_in_use_and_starts_nothing(empty_database: URL, tmp_path: Path) -> None:
    env = _environment(empty_database, tmp_path)
    base = _four_free_ports()
    first = ORDER[0]
    taken = ports_from(base)[first]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        up = invoke("up", "--base-port", str(base), env=env, clean=True)
    assert up.one_line_error() == (
        f"error: {first}: cannot start: port {taken} on 127.0.0.1 is in use by another "
        "program; stop that program, or move the four ports: invoke up --base-port 9000"
    )
    assert not list((tmp_path / ".run").glob("*.pid"))


def test_up_is_all_or_nothing(empty_database: URL, tmp_path: Path) -> None:
    """One service exits during startup (nothing answers at its database URL): ``up``
    fails naming it, with the end of its log (where the service's own one-line error is,
    its password not shown), and the three it started with it are stopped and reaped."""
    unreachable = URL.create("postgresql+psycopg", "app", "s3cret", "127.0.0.1", 1, "app")
    env = {
        **_environment(empty_database, tmp_path),
        "SCORING_ENGINE_DATABASE_URL": raw(unreachable),
        "DATABASE_WAIT_TIMEOUT": "0.2",
    }
    base = _four_free_ports()
    ports = ports_from(base)
    run = tmp_path / ".run"
    launched: dict[str, subprocess.Popen[bytes]] = {}
    launch = stack._launch

    def recording(
        config: DevConfig, service: str, ports: dict[str, int], environ: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        launched[service] = launch(config, service, ports, environ)
        return launched[service]

    children = set(_children())  # e.g. the test run's Postgres
    try:
        with mock.patch.object(stack, "_launch", recording):
            up = invoke("up", "--base-port", str(base), env=env, clean=True)
        line = up.one_line_error()
        others = [s for s in ORDER if s != "scoring_engine"]
        match = re.fullmatch(
            r"error: scoring_engine exited during startup: (.*) \(log: (\S+)\); "
            rf"also stopped: {', '.join(others)}; "
            r"read the log named above, fix the cause, then run: invoke up",
            line,
        )
        assert match, line
        tail, log = match.groups()
        assert log == str(run / "scoring_engine.log")
        assert (
            "scoring_engine: startup failed: gave up after 0.2 s: cannot use the database at "
            in tail
        ), tail
        assert "127.0.0.1:1/app" in tail and "is Postgres up? run: invoke db.up" in tail, tail
        assert "s3cret" not in up.output
        assert sorted(launched) == sorted(SERVICES), "all four were started"
        for service, process in launched.items():
            assert process.returncode is not None, f"{service} still runs, or was not reaped"
            assert (run / f"{service}.log").exists()
        left = {pid: state for pid, state in _children().items() if pid not in children}
        assert left == {}, "a service still runs, or is a zombie"
        assert not list(run.glob("*.pid"))
        for port in ports.values():
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} answers"
    finally:
        down = invoke("down", env=env, clean=True)
    assert (down.code, down.out) == (0, "no service was running\n"), down.output


# -- only their own processes: pid files record the process's identity -------------------

# `invoke down` needs no database; a URL that is never used.
UNUSED = "postgresql+psycopg://app@127.0.0.1:1/app"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated program leading its own process group, as a service does."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    yield process
    process.kill()
    process.wait()


def _identity(pid: int) -> Identity:
    found = processes.identity_after_exec(pid)
    assert found is not None, pid
    return found


def _exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _children() -> dict[int, str]:
    """pid -> state of this process's child processes (zombies included)."""
    with subprocess.Popen(["ps", "-A", "-o", "pid=,ppid=,stat="], stdout=subprocess.PIPE) as ps:
        listing, _ = ps.communicate()
    rows = [line.split() for line in listing.decode().splitlines()]
    return {
        int(row[0]): row[2][0]
        for row in rows
        if int(row[1]) == os.getpid() and int(row[0]) != ps.pid
    }


def test_identity_tells_a_process_from_a_reuse_of_its_pid(
    sleeper: subprocess.Popen[bytes],
) -> None:
    me = _identity(os.getpid())
    assert me == _identity(os.getpid()), "stable"
    assert me.started and me.cmdline[0]
    assert processes.running(me)
    other = _identity(sleeper.pid)
    assert other.cmdline == (sys.executable, "-c", "import time; time.sleep(60)")
    assert other.started != me.started or other.cmdline != me.cmdline
    # The same pid with another start time, boot or command line is another process.
    assert not processes.running(replace(other, started=other.started + "0"))
    assert not processes.running(replace(other, boot="another-boot"))
    assert not processes.running(replace(other, cmdline=(sys.executable, "-m", "x")))
    assert processes.identity(_exited_pid()) is None
    assert processes.identity(0) is None and processes.identity(-1) is None


def test_the_identity_of_a_child_just_started_has_its_command_line() -> None:
    """Right after ``Popen`` returns, the child's command line may still read empty."""
    sleep = shutil.which("sleep")
    assert sleep
    for _ in range(20):
        child = subprocess.Popen([sleep, "60"], start_new_session=True)
        try:
            assert _identity(child.pid).cmdline == (sleep, "60")
        finally:
            child.kill()
            child.wait()


def test_a_zombie_has_no_identity() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while _children().get(child.pid) != "Z":  # exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert processes.identity(child.pid) is None
        assert not processes.alive(child.pid)
    finally:
        child.wait()


def test_identity_without_proc_asks_ps(sleeper: subprocess.Popen[bytes]) -> None:
    """macOS has no /proc: the start time and command line come from ps."""
    with mock.patch.object(processes, "_has_proc", return_value=False):
        found = _identity(sleeper.pid)
        assert found == _identity(sleeper.pid)
        assert found.boot == "" and re.search(r"\d\d:\d\d:\d\d", found.started), found
        assert found.cmdline[-3:] == ("import", "time;", "time.sleep(60)"), found
        assert processes.running(found)
        assert not processes.running(replace(found, started="Thu Jan  1 00:00:00 1970"))
        assert processes.identity(_exited_pid()) is None


def test_group_leader(sleeper: subprocess.Popen[bytes]) -> None:
    assert processes.group_leader(sleeper.pid)
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not processes.group_leader(plain.pid)
    finally:
        plain.kill()
        plain.wait()
    assert not processes.group_leader(_exited_pid())


def test_terminate_signals_only_the_process_recorded(sleeper: subprocess.Popen[bytes]) -> None:
    real = _identity(sleeper.pid)
    assert processes.terminate(replace(real, started="1"), timeout=0.2) is False
    assert sleeper.poll() is None, "a reused pid is never signalled"
    assert processes.terminate(real, timeout=5) is True
    assert sleeper.poll() is not None and not processes.running(real)
    assert _children().get(sleeper.pid) is None, "reaped"
    assert processes.terminate(real) is False


def test_terminate_escalates_to_sigkill() -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        started = time.monotonic()
        assert processes.terminate(_identity(stubborn.pid), timeout=0.3) is True
        assert time.monotonic() - started < 5
        assert _children().get(stubborn.pid) is None, "reaped"
    finally:
        stubborn.kill()
        stubborn.wait()
        assert stubborn.stdout is not None
        stubborn.stdout.close()


def test_pid_file_formats(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    path = tmp_path / "signal_ingestion.pid"
    assert read_pid_file(path) is None
    real = _identity(sleeper.pid)
    write_pid_file(path, real, 8001)
    assert read_pid_file(path) == PidFile(sleeper.pid, 8001, real)
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file left"
    assert stack.stale_reason(PidFile(sleeper.pid, 8001, real)) is None
    assert stack.stale_reason(PidFile(sleeper.pid, 8001, replace(real, started="1"))) == (
        f"pid {sleeper.pid} is another program"
    )
    gone = _exited_pid()
    assert stack.stale_reason(PidFile(gone, 8001, replace(real, pid=gone))) == (
        f"pid {gone} has exited"
    )
    # The old format ("pid port") has no identity: never trusted, never signalled.
    path.write_text(f"{sleeper.pid} 8001\n")
    old = read_pid_file(path)
    assert old == PidFile(sleeper.pid, 8001, None)
    assert stack.stale_reason(old) == (
        f"old format without the process's identity: pid {sleeper.pid} was not signalled "
        f"and still runs: if it is the service, stop it with: kill {sleeper.pid}"
    )
    for garbage in ("", "not a pid\n", '{"pid": "x"}', "[1, 2]"):
        path.write_text(garbage)
        record = read_pid_file(path)
        assert record == PidFile(0, 0, None) and stack.stale_reason(record) == "unreadable"


@pytest.mark.parametrize("form", ["old format", "another start time"])
def test_down_leaves_a_reused_pid_alone(
    form: str, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """The pid recorded now belongs to an unrelated group leader: it survives, the stale
    file is removed, and ``down`` says so."""
    run = tmp_path / ".run"
    run.mkdir()
    path = run / "scoring_engine.pid"
    pid = sleeper.pid
    if form == "old format":
        path.write_text(f"{pid} 8001\n")
        why = (
            f"old format without the process's identity: pid {pid} was not signalled and "
            f"still runs: if it is the service, stop it with: kill {pid}"
        )
    else:
        real = _identity(pid)
        write_pid_file(path, replace(real, started="1"), 8001)
        why = f"pid {pid} is another program"
    down = invoke("down", env=_environment(UNUSED, tmp_path), clean=True)
    assert down.code == 0, down.output
    assert down.out.splitlines() == [
        f"scoring_engine: stale pid file removed ({why})",
        "no service was running",
    ]
    time.sleep(0.1)
    assert sleeper.poll() is None, "an unrelated process was signalled"
    assert not path.exists()


def test_down_with_a_pid_that_leads_no_group(tmp_path: Path) -> None:
    """No ``killpg`` on a pid that leads no group (it raised ProcessLookupError); a process
    recorded with its identity that is not a group leader is signalled alone."""
    run = tmp_path / ".run"
    run.mkdir()
    env = _environment(UNUSED, tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert os.getpgid(child.pid) != child.pid
        (run / "api_gateway.pid").write_text(f"{child.pid} 8000\n")
        down = invoke("down", env=env, clean=True)
        assert down.code == 0, down.output
        assert down.out.splitlines()[-1] == "no service was running"
        assert child.poll() is None
        # With its identity: that process alone is stopped (not our own process group).
        write_pid_file(run / "api_gateway.pid", _identity(child.pid), 8000)
        down = invoke("down", env=env, clean=True)
        assert (down.code, down.out) == (0, "stopped: api_gateway\n"), down.output
        assert child.poll() is not None
        assert _children().get(child.pid) is None, "reaped"
    finally:
        child.kill()
        child.wait()


def test_down_says_when_it_may_not_signal(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """Another account's process (the race is simulated): one line, the file kept."""
    run = tmp_path / ".run"
    run.mkdir()
    write_pid_file(run / "scoring_engine.pid", _identity(sleeper.pid), 8001)
    with mock.patch.object(processes, "terminate", side_effect=PermissionError):
        down = invoke("down", env=_environment(UNUSED, tmp_path), clean=True)
    assert down.one_line_error() == (
        f"error: scoring_engine: cannot stop pid {sleeper.pid}: it belongs to another account; "
        f"stop it as the account that owns it (kill {sleeper.pid}), then run: invoke down"
    )
    assert (run / "scoring_engine.pid").exists()
    assert sleeper.poll() is None


def test_up_with_stale_pid_files_then_down(
    empty_database: URL, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """Pid files whose pids were reused or have exited: ``up`` starts each service at once
    (it used to wait 90 s on the unrelated program), and a failure would show this run's
    log only. The services share one database, used as is (each has its own tables and
    version table); the gateway reaches an upstream started by the same command; ``up``
    again reuses them; ``down`` stops and reaps them, and leaves the unrelated program
    alone."""
    env = _environment(empty_database, tmp_path)
    base = _four_free_ports()
    ports = ports_from(base)
    run = tmp_path / ".run"
    run.mkdir()
    reused = _identity(sleeper.pid)
    gone = _exited_pid()
    (run / "signal_ingestion.pid").write_text(f"{sleeper.pid} {ports['signal_ingestion']}\n")
    write_pid_file(
        run / "scoring_engine.pid",
        replace(reused, started="1"),
        ports["scoring_engine"],
    )
    write_pid_file(
        run / "marketplace_publisher.pid",
        replace(reused, pid=gone),
        ports["marketplace_publisher"],
    )
    (run / "signal_ingestion.log").write_text("the last line of an earlier run\n")
    try:
        started = time.monotonic()
        up = invoke("up", "--base-port", str(base), env=env, clean=True)
        elapsed = time.monotonic() - started
        assert up.code == 0, up.output
        assert elapsed < 45, f"{elapsed:.1f} s: waited on a stale pid"
        assert "DATABASE_URL is set" in up.out
        assert (
            f"signal_ingestion: stale pid file removed (old format without the process's "
            f"identity: pid {sleeper.pid} was not signalled" in up.out
        )
        assert (
            f"scoring_engine: stale pid file removed (pid {sleeper.pid} is another program)"
            in up.out
        )
        assert f"marketplace_publisher: stale pid file removed (pid {gone} has exited)" in up.out
        pids = _pids(up.out)
        assert sorted(pids) == sorted(SERVICES) and sleeper.pid not in pids.values(), up.out
        for service, pid in pids.items():
            assert f"http://127.0.0.1:{ports[service]}" in up.out
            assert commands.current(config_for(empty_database), service) == head(service)
            record = read_pid_file(run / f"{service}.pid")
            assert record is not None and record.process is not None
            assert (record.pid, record.port) == (pid, ports[service])
            assert record.process.cmdline[1:] == ("-m", service, "--port", str(ports[service]))
        assert "earlier run" not in (run / "signal_ingestion.log").read_text()
        assert "earlier run" in (run / "signal_ingestion.log.1").read_text()
        gateway = f"http://127.0.0.1:{ports['api_gateway']}"
        with httpx.Client(timeout=5) as http:
            ready = http.get(f"{gateway}/ready")
            assert ready.status_code == 200 and ready.json()["service"] == "api_gateway"
            # The gateway reaches an upstream started by the same command.
            token = (run / "admin_token").read_text().strip()
            created = http.post(
                f"{gateway}/admin/keys",
                headers={"X-Admin-Token": token},
                json={"name": "stack", "scopes": ["marketplace_publisher:write"]},
            )
            assert created.status_code == 201, created.text
            listing = http.post(
                f"{gateway}/marketplace_publisher/listings",
                headers={"X-API-Key": created.json()["key"]},
                json={"sku": "MUG-1", "title": "Mug", "price_cents": 900},
            )
            assert listing.status_code == 201, listing.text
        again = invoke("up", "--base-port", str(base), env=env, clean=True)
        assert again.code == 0, again.output
        assert _pids(again.out) == pids, "already running: reused, not started again"
    finally:
        down = invoke("down", env=env, clean=True)
    assert down.code == 0, down.output
    assert down.out == f"stopped: {', '.join(reversed(ORDER))}\n"
    assert sleeper.poll() is None, "the unrelated process was signalled"
    assert not set(pids.values()) & set(_children()), "stopped, and reaped (no zombie)"
    for port in ports.values():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert not list(run.glob("*.pid"))
    down_again = invoke("down", env=env, clean=True)
    assert (down_again.code, down_again.out.strip()) == (0, "no service was running")
