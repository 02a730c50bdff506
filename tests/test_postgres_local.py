"""The project-owned local Postgres: lifetimes, reuse, root handling, cleanup."""

import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from shared_db.postgres import local
from shared_db.postgres.accounts import server_account
from shared_db.postgres.local import LocalServer
from shared_db.processes import alive


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    tmp_path.chmod(0o755)
    instance = LocalServer(tmp_path / ".postgres")
    yield instance
    instance.down()


def _query(url: object, sql: str) -> object:
    from sqlalchemy.engine import URL

    assert isinstance(url, URL)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname="postgres"
    ) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def test_up_is_cold_then_reused_then_warm_after_down(server: LocalServer) -> None:
    info, how = server.up()
    assert how == "cold"
    url = info.url(server.password())
    assert _query(url, "SELECT 1") == 1
    again, how = server.up()
    assert (how, again.pid, again.port) == ("reused", info.pid, info.port)
    assert server.down() is True
    assert server.running() is None
    assert server.down() is False
    port_still_free = local._free_port(info.port) == info.port
    restarted, how = server.up()
    assert how == "warm"
    if port_still_free:  # another process may have taken it meanwhile
        assert restarted.port == info.port, "a restarted server keeps its port when it is free"
    assert _query(restarted.url(server.password()), "SELECT 1") == 1


def test_listens_on_loopback_with_a_password(server: LocalServer) -> None:
    info, _ = server.up()
    assert _query(info.url(server.password()), "SHOW listen_addresses") == "127.0.0.1"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1", port=info.port, user="postgres", password="wrong", dbname="postgres"
        )
    assert (server.state_dir / "password").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges applies to root only")
def test_as_root_the_server_runs_as_an_unprivileged_account(server: LocalServer) -> None:
    info, _ = server.up()
    account = server_account()
    assert account is not None and account.uid != 0
    owner = Path(f"/proc/{info.pid}").stat().st_uid
    assert owner == account.uid, f"postmaster runs as {pwd.getpwuid(owner).pw_name}"
    assert Path(info.data_dir).stat().st_uid == account.uid


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hide the checkout from the account")
def test_checkout_the_account_cannot_enter(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)  # like /root: the server account cannot traverse it
    instance = LocalServer(hidden / "checkout" / ".postgres")
    try:
        info, how = instance.up()
        assert how == "cold"
        assert not Path(info.data_dir).is_relative_to(hidden)
        assert Path(info.data_dir).parent.name.startswith("signalmarket-postgres-")
        assert _query(info.url(instance.password()), "SELECT 1") == 1
        assert (hidden / "checkout" / ".postgres" / "server.json").exists()
    finally:
        instance.down()
        runtime = instance.runtime_dir
        if runtime.is_relative_to("/var/tmp"):
            subprocess.run(["rm", "-rf", str(runtime)], check=True)


def test_throwaway_server_is_removed_on_stop(server: LocalServer) -> None:
    throwaway = server.throwaway()
    data_dir = Path(throwaway.info.data_dir)
    assert _query(throwaway.url(), "SELECT 2") == 2
    throwaway.stop()
    assert not data_dir.exists()
    assert not alive(throwaway.info.pid)


def test_throwaway_server_dies_with_a_killed_parent(server: LocalServer) -> None:
    """A hard-killed test run leaves no server behind (parent-death signal)."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from shared_db.postgres.local import LocalServer
        server = LocalServer(Path({str(server.state_dir)!r})).throwaway()
        print(server.info.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    pid = int(child.stdout.strip())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the throwaway server outlived its parent"
    # Its data folder is swept by the next throwaway start.
    leftovers = list(server.scratch_dir.glob("test-*"))
    assert any(p.is_dir() for p in leftovers)
    server.throwaway().stop()
    assert not [p for p in server.scratch_dir.glob("test-*") if p.is_dir()]
