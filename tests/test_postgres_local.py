"""The project-owned local Postgres: lifetimes, reuse, root handling, cleanup.

Each test gets a server of its own under ``tmp_path``. As root the server runs as an
unprivileged account that cannot enter pytest's private temporary folder, so its data
goes to ``/var/tmp`` instead (see ``LocalServer``); the fixture removes that too.
(How a throwaway server dies with a killed parent: test_watchdog.py.)
"""

import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning.accounts import server_account
from db_devtools.provisioning.binaries import find_bin_dir
from db_devtools.provisioning.local import LocalServer
from db_devtools.provisioning.ports import port_free
from db_devtools.provisioning.processes import alive
from sqlalchemy.engine import URL


def remove_outside_state(server: LocalServer) -> None:
    """The folders a server keeps outside its state folder (/var/tmp, /dev/shm)."""
    for folder in (server.runtime_dir, server.scratch_dir):
        if not folder.is_relative_to(server.state_dir):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    instance = LocalServer(tmp_path / ".postgres")
    yield instance
    instance.down()
    remove_outside_state(instance)


def _query(url: URL, sql: str) -> object:
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
    assert server.account == account
    owner = Path(f"/proc/{info.pid}").stat().st_uid
    assert owner == account.uid, f"postmaster runs as {pwd.getpwuid(owner).pw_name}"
    assert Path(info.data_dir).stat().st_uid == account.uid


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges applies to root only")
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
        assert instance.runtime_dir.is_relative_to("/var/tmp")
        assert _query(info.url(instance.password()), "SELECT 1") == 1
        assert (hidden / "checkout" / ".postgres" / "server.json").exists()
    finally:
        instance.down()
        remove_outside_state(instance)
    assert not instance.runtime_dir.exists()


def test_the_configured_binaries_are_used_or_refused(tmp_path: Path) -> None:
    real = find_bin_dir()
    assert LocalServer(tmp_path / "a" / ".postgres", pg_bin=real).pg_bin == real
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(ProvisioningError) as error:
        LocalServer(tmp_path / "b" / ".postgres", pg_bin=empty).up()
    assert error.value.kind == "bad_pg_bin"
    assert str(empty) in str(error.value)


def test_throwaway_server_is_removed_on_stop(server: LocalServer) -> None:
    throwaway = server.throwaway()
    data_dir = Path(throwaway.info.data_dir)
    assert data_dir.is_dir()
    assert _query(throwaway.url(), "SELECT 2") == 2
    throwaway.stop()
    assert not data_dir.exists()
    assert not alive(throwaway.info.pid)
    assert server.running() is None, "a throwaway server is not the long-lived one"
