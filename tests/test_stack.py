"""``invoke up`` starts the four services (each migrating on startup); ``invoke down``
stops them (``dev_tasks.stack``)."""

import re
import socket
from pathlib import Path

import httpx
from db_devtools.provisioning.ports import port_free
from dev_tasks.stack import ORDER, ports_from
from helpers import config_for, head, invoke, raw
from shared_db import commands
from shared_db.services import PORTS, SERVICES
from sqlalchemy.engine import URL


def _four_free_ports() -> int:
    """The first of four consecutive free ports (``--base-port``)."""
    for base in range(21000, 40000, 37):
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


def test_up_then_down(empty_database: URL, tmp_path: Path) -> None:
    # One shared database, used as is: each service has its own tables and version table.
    env = _environment(empty_database, tmp_path)
    base = _four_free_ports()
    ports = ports_from(base)
    try:
        up = invoke("up", "--base-port", str(base), env=env, clean=True)
        assert up.code == 0, up.output
        assert "DATABASE_URL is set" in up.out
        started = _pids(up.out)
        assert sorted(started) == sorted(SERVICES), up.out
        for service in SERVICES:
            assert f"http://127.0.0.1:{ports[service]}" in up.out
            assert commands.current(config_for(empty_database), service) == head(service)
        gateway = f"http://127.0.0.1:{ports['api_gateway']}"
        ready = httpx.get(f"{gateway}/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["service"] == "api_gateway"
        # The gateway reaches an upstream started by the same command.
        token = (tmp_path / ".run" / "admin_token").read_text().strip()
        created = httpx.post(
            f"{gateway}/admin/keys",
            headers={"X-Admin-Token": token},
            json={"name": "stack", "scopes": ["marketplace_publisher:write"]},
            timeout=5,
        )
        assert created.status_code == 201, created.text
        listing = httpx.post(
            f"{gateway}/marketplace_publisher/listings",
            headers={"X-API-Key": created.json()["key"]},
            json={"sku": "MUG-1", "title": "Mug", "price_cents": 900},
            timeout=5,
        )
        assert listing.status_code == 201, listing.text
        again = invoke("up", "--base-port", str(base), env=env, clean=True)
        assert again.code == 0, again.output
        assert _pids(again.out) == started, "already running: reused, not started again"
    finally:
        down = invoke("down", env=env, clean=True)
    assert down.code == 0, down.output
    assert down.out.strip() == f"stopped: {', '.join(reversed(ORDER))}"
    for port in ports.values():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert not list((tmp_path / ".run").glob("*.pid"))
    again = invoke("down", env=env, clean=True)
    assert (again.code, again.out.strip()) == (0, "no service was running")


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


def test_up_reports_a_service_that_exits_during_startup(tmp_path: Path) -> None:
    """Nothing answers at the database URL: the services exit, and ``invoke up`` says
    which one, with the end of its log (where the service's own one-line error is)."""
    unreachable = URL.create("postgresql+psycopg", "app", "s3cret", "127.0.0.1", 1, "app")
    env = {**_environment(unreachable, tmp_path), "DATABASE_WAIT_TIMEOUT": "0.2"}
    try:
        up = invoke("up", "--base-port", str(_four_free_ports()), env=env, clean=True)
        line = up.one_line_error()
    finally:
        invoke("down", env=env, clean=True)
    match = re.fullmatch(
        r"error: (\w+) exited during startup: (.*) \(log: (\S+)\); read the log named above; "
        r"stop the others with: invoke down",
        line,
    )
    assert match, line
    service, tail, log = match.groups()
    assert service in SERVICES
    assert log == str(tmp_path / ".run" / f"{service}.log")
    assert f"{service}: startup failed: gave up after 0.2 s: cannot use the database at " in tail
    assert "127.0.0.1:1/app" in tail and "is Postgres up? run: invoke db.up" in tail
    assert "s3cret" not in line
