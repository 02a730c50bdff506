"""The project-owned local Postgres: lifetimes, reuse, root handling, cleanup.

A cold start (initdb) is what costs, so the tests that look at a running long-lived
server share one (``started``, module-scoped): six callers start it at once in a fresh
state folder, inside a folder only its owner may enter (0700), like a checkout under
``/root``. As root the server runs as an unprivileged account that cannot enter it, so
its data goes to ``/var/tmp`` instead (see ``LocalServer``); the fixture removes that
too, and checks it is gone. A server under another account gets a state folder of its
own. A throwaway server is made in the project's state folder, from the template the
test run's own local server (conftest.py) is copied from too: made once, then kept.
(How a throwaway server dies with a killed parent: test_watchdog.py.)
"""

import os
import pwd
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import psycopg
import pytest
from db_devtools.config import DevConfig
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning.accounts import server_account
from db_devtools.provisioning.binaries import find_bin_dir
from db_devtools.provisioning.local import LocalServer, ServerInfo
from db_devtools.provisioning.ports import port_free
from db_devtools.provisioning.processes import alive
from db_devtools.provisioning.resolve import local_server
from sqlalchemy.engine import URL

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges applies to root only")


def remove_outside_state(server: LocalServer) -> None:
    """The folders a server keeps outside its state folder (/var/tmp, /dev/shm)."""
    for folder in (server.runtime_dir, server.scratch_dir):
        if not folder.is_relative_to(server.state_dir):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Started:
    """The module's long-lived server and what each of its six first callers got."""

    server: LocalServer
    callers: list[tuple[ServerInfo, str]]
    private: Path  # the folder (0700) holding its checkout

    @property
    def first(self) -> tuple[ServerInfo, str]:
        """What the caller that started it got (the others reused it)."""
        return next((c for c in self.callers if c[1] != "reused"), self.callers[0])


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    private = tmp_path_factory.mktemp("local") / "private"
    private.mkdir(mode=0o700)  # like /root: the server account cannot traverse it
    callers = [LocalServer(private / "checkout" / ".postgres") for _ in range(6)]
    server = callers[0]
    try:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda caller: caller.up(), callers))
        yield Started(server, results, private)
    finally:
        server.down()
        remove_outside_state(server)
    if not server.runtime_dir.is_relative_to(server.state_dir):
        assert not server.runtime_dir.exists()


def _query(url: URL, sql: str) -> object:
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname="postgres"
    ) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def test_concurrent_callers_start_one_local_server(started: Started) -> None:
    assert sorted(how for _, how in started.callers) == ["cold"] + ["reused"] * 5
    assert len({(info.pid, info.port) for info, _ in started.callers}) == 1


def test_up_is_cold_then_reused_then_warm_after_down(started: Started) -> None:
    server = started.server
    info, how = started.first
    assert how == "cold"
    url = info.url(server.password())
    assert _query(url, "SELECT 1") == 1
    assert server.running() == info
    again, how = server.up()
    assert (how, again.pid, again.port) == ("reused", info.pid, info.port)
    assert server.down() is True
    assert server.running() is None
    assert not alive(info.pid)
    assert server.down() is False
    port_still_free = port_free(info.port)
    restarted, how = server.up()
    assert how == "warm"
    if port_still_free:  # another process may have taken it meanwhile
        assert restarted.port == info.port, "a restarted server keeps its port when it is free"
    assert _query(restarted.url(server.password()), "SELECT 1") == 1


def test_listens_on_loopback_with_a_password(started: Started) -> None:
    server = started.server
    info, _ = server.up()
    assert _query(info.url(server.password()), "SHOW listen_addresses") == "127.0.0.1"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1", port=info.port, user="postgres", password="wrong", dbname="postgres"
        )
    assert (server.state_dir / "password").stat().st_mode & 0o777 == 0o600
    # Postgres' default key derivation (a throwaway server's is cheaper: below).
    verifier = _query(
        info.url(server.password()), "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'"
    )
    assert str(verifier).startswith("SCRAM-SHA-256$4096:"), verifier


@ROOT_ONLY
def test_as_root_the_server_runs_as_an_unprivileged_account(started: Started) -> None:
    server = started.server
    info, _ = server.up()
    account = server_account()
    assert account is not None and account.uid != 0
    assert server.account == account
    owner = Path(f"/proc/{info.pid}").stat().st_uid
    assert owner == account.uid, f"postmaster runs as {pwd.getpwuid(owner).pw_name}"
    assert Path(info.data_dir).stat().st_uid == account.uid


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hide the checkout from the account")
def test_checkout_the_account_cannot_enter(started: Started) -> None:
    server = started.server
    assert started.first[1] == "cold"
    info, _ = server.up()
    assert not Path(info.data_dir).is_relative_to(started.private)
    assert Path(info.data_dir).parent.name.startswith("signalmarket-postgres-")
    assert server.runtime_dir.is_relative_to("/var/tmp")
    assert _query(info.url(server.password()), "SELECT 1") == 1
    assert (started.private / "checkout" / ".postgres" / "server.json").exists()
    # The fixture checks that its /var/tmp folder is gone after it.


@ROOT_ONLY
def test_the_configured_account_runs_the_server(tmp_path: Path) -> None:
    instance = LocalServer(tmp_path / ".postgres", pg_user="nobody")
    try:
        info, _ = instance.up()
        nobody = pwd.getpwnam("nobody").pw_uid
        assert Path(f"/proc/{info.pid}").stat().st_uid == nobody
    finally:
        instance.down()
        remove_outside_state(instance)
    with pytest.raises(ProvisioningError, match="refuses to run as root"):
        LocalServer(tmp_path / ".postgres", pg_user="root")


def test_the_configured_binaries_are_used_or_refused(tmp_path: Path) -> None:
    real = find_bin_dir()
    assert LocalServer(tmp_path / "a" / ".postgres", pg_bin=real).pg_bin == real
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(ProvisioningError) as error:
        LocalServer(tmp_path / "b" / ".postgres", pg_bin=empty).up()
    assert error.value.kind == "bad_pg_bin"
    assert str(empty) in str(error.value)


def test_throwaway_server_is_removed_on_stop() -> None:
    # The project's state folder: its template is there once the test run has a server
    # (initdb is what costs); a developer's long-lived server may be running there.
    server = local_server(DevConfig.from_environ(os.environ, caller="test"))
    long_lived = server.running()
    throwaway = server.throwaway()
    data_dir = Path(throwaway.info.data_dir)
    assert data_dir.is_dir()
    assert _query(throwaway.url(), "SELECT 2") == 2
    # Its verifiers take few SCRAM iterations (every test connection derives the key);
    # the long-lived server keeps Postgres' default.
    few_iterations = int((data_dir / "PG_VERSION").read_text()) >= 16
    if few_iterations:
        verifier = _query(
            throwaway.url(), "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'"
        )
        assert str(verifier).startswith("SCRAM-SHA-256$16:"), verifier
        assert _query(throwaway.url(), "SHOW scram_iterations") == "16"
    # Its databases live for a test: no autovacuum worker visits them.
    assert _query(throwaway.url(), "SHOW autovacuum") == "off"
    assert server.running() == long_lived, "a throwaway server is not the long-lived one"
    throwaway.stop()
    assert not data_dir.exists()
    assert not alive(throwaway.info.pid)
    assert server.running() == long_lived, "a throwaway server is not the long-lived one"

    # A throwaway server that refuses its own password (a template made with another
    # one) is an error naming the fix, and is stopped and removed, not left running.
    if few_iterations:
        before = {p.name for p in server.scratch_dir.glob("test-*")}
        with (
            mock.patch.object(LocalServer, "password", return_value="not-the-template's"),
            pytest.raises(ProvisioningError, match="refused its own password") as refused,
        ):
            server.throwaway()
        assert refused.value.kind == "server_not_ready"
        assert "remove " in str(refused.value) and "not-the-template's" not in str(refused.value)
        assert {p.name for p in server.scratch_dir.glob("test-*")} == before, "data left"
