"""``invoke up`` starts the four services (each migrating on startup); ``invoke down``
stops them."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from helpers import raw
from shared_db import commands
from shared_db.services import SERVICES
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]


def _four_free_ports() -> int:
    for base in range(21000, 40000, 37):
        sockets = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no four consecutive free ports")


def test_up_then_down(empty_database: URL, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": raw(empty_database),  # one shared database, used as is
        "SIGNALMARKET_ROOT": str(tmp_path),  # .run/ of this test, not the developer's
    }
    base = _four_free_ports()

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )

    try:
        up = invoke("up", "--base-port", str(base))
        assert up.returncode == 0, up.stdout + up.stderr
        assert "DATABASE_URL is set" in up.stdout
        for service in SERVICES:
            assert service in up.stdout
            assert commands.current(service, empty_database) == commands.heads(service)
        gateway = httpx.get(f"http://127.0.0.1:{base}/ready", timeout=5)
        assert gateway.status_code == 200 and gateway.json()["service"] == "api_gateway"
        token = (tmp_path / ".run" / "admin_token").read_text().strip()
        created = httpx.post(
            f"http://127.0.0.1:{base}/admin/keys",
            headers={"X-Admin-Token": token},
            json={"name": "stack", "scopes": ["marketplace_publisher:write"]},
            timeout=5,
        )
        assert created.status_code == 201, created.text
        listing = httpx.post(
            f"http://127.0.0.1:{base}/marketplace_publisher/listings",
            headers={"X-API-Key": created.json()["key"]},
            json={"sku": "MUG-1", "title": "Mug", "price_cents": 900},
            timeout=5,
        )
        assert listing.status_code == 201, listing.text
        again = invoke("up", "--base-port", str(base))
        assert again.returncode == 0, again.stderr  # already running: reused
    finally:
        down = invoke("down")
    assert down.returncode == 0, down.stderr
    assert "stopped: api_gateway" in down.stdout
    for port in range(base, base + 4):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
