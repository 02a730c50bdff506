"""Is a process still running, and is it still the one we started?

A pid names a process only while it runs: once it has exited, the kernel gives the
number to a later process. ``identity`` adds what a reused pid does not share: when the
process started (on Linux in clock ticks since boot, so also which boot) and its command
line. Read from ``/proc``, else (macOS) from ``ps``. ``terminate`` signals a process only
while its identity still matches.
"""

import functools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def alive(pid: int) -> bool:
    """True while ``pid`` runs. A background server started by an earlier command is
    reparented to PID 1 when it exits; until PID 1 reaps it, it is a zombie, which
    ``kill(pid, 0)`` alone would report as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another account (the Postgres server account)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass(frozen=True)
class Identity:
    """What tells a process from a later one given the same pid."""

    pid: int
    started: str  # /proc/<pid>/stat field 22 (clock ticks since boot); else ps's lstart
    boot: str  # the boot id (Linux); "" where the start time is a date (ps)
    cmdline: tuple[str, ...]


def identity(pid: int) -> Identity | None:
    """The identity of the process running as ``pid``; ``None`` when none runs (a zombie
    has exited: only its entry remains)."""
    if pid <= 0:
        return None
    return _from_proc(pid) if _has_proc() else _from_ps(pid)


def identity_after_exec(pid: int, timeout: float = 5.0) -> Identity | None:
    """The identity of a child just started (``Popen`` has returned): the kernel lets
    the parent run on before the new program's arguments are in place, so its command
    line may read empty for a moment. ``None`` when it has exited already."""
    deadline = time.monotonic() + timeout
    while True:
        found = identity(pid)
        if found is None or found.cmdline or time.monotonic() > deadline:
            return found
        time.sleep(0.001)


def running(recorded: Identity) -> bool:
    """True while the very process ``recorded`` describes runs (not a reuse of its pid)."""
    return identity(recorded.pid) == recorded


def group_leader(pid: int) -> bool:
    """True when ``pid`` leads its process group (a server started in its own session)."""
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False
    except PermissionError:  # some systems refuse it across sessions: ask ps
        return _ps(pid, "pgid") == str(pid)


def terminate(recorded: Identity, timeout: float = 10.0, kill_timeout: float = 5.0) -> bool:
    """Stop the process ``recorded`` describes and wait until it has exited (reaping it
    when it is our child): SIGTERM, then SIGKILL after ``timeout`` seconds. Its process
    group is signalled when it leads one, else the process alone. A process whose
    identity does not match (its pid reused by another program) is never signalled.

    Returns ``False`` when it was not running. Raises ``PermissionError`` when it may not
    be signalled, ``TimeoutError`` when it still runs ``kill_timeout`` s after SIGKILL."""
    if not running(recorded):
        _reap(recorded.pid)
        return False
    group = group_leader(recorded.pid)
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
        if not _not_exited(recorded):
            break
        try:
            if group:
                os.killpg(recorded.pid, signum)
            else:
                os.kill(recorded.pid, signum)
        except ProcessLookupError:
            break  # exited since the check
        if _wait_exit(recorded, wait):
            return True
    if _not_exited(recorded):
        raise TimeoutError(f"pid {recorded.pid} still runs after SIGKILL")
    _reap(recorded.pid, wait=5.0)
    return True


def _not_exited(recorded: Identity) -> bool:
    """True until the process signalled has exited. Its start time, not its whole identity:
    while a process exits, its command line reads empty."""
    now = identity(recorded.pid)
    return now is not None and (now.started, now.boot) == (recorded.started, recorded.boot)


def _wait_exit(recorded: Identity, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        _reap(recorded.pid)
        if not _not_exited(recorded):
            _reap(recorded.pid, wait=5.0)
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _reap(pid: int, wait: float = 0.0) -> None:
    """Collect ``pid``'s exit status when it is our child (else nothing to do), trying
    for up to ``wait`` seconds: a thread-group leader reads as a zombie as soon as its
    own thread has exited, but cannot be reaped until the other threads are gone."""
    deadline = time.monotonic() + wait
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done == pid or time.monotonic() >= deadline:
            return
        time.sleep(0.005)


# -- Linux: /proc ------------------------------------------------------------------------


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def _from_proc(pid: int) -> Identity | None:
    for _attempt in range(3):
        first = _proc_stat(pid)
        if first is None:
            return None
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return None
        except OSError:  # hidden by the mount options (hidepid): not ours to verify
            raw = b""
        started = first[1]
        again = _proc_stat(pid)
        if again is None or again[1] != started:
            continue  # exited, its pid perhaps taken, between the reads: read again
        if again[0] in ("Z", "X"):
            return None
        args = raw.split(b"\0")
        if args and args[-1] == b"":
            args.pop()
        cmdline = tuple(arg.decode(errors="surrogateescape") for arg in args)
        return Identity(pid, started, _boot_id(), cmdline)
    return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from ``/proc/<pid>/stat``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the parenthesised command name (which may hold spaces and
    # parentheses): field 3 (state) comes first, so field 22 (starttime) is index 19.
    fields = stat.rsplit(")", 1)[-1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


@functools.cache
def _boot_id() -> str:
    """This boot's id: start times count clock ticks from the boot, so a reboot makes
    an old record stale."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return line.split()[1]
    except OSError:
        pass
    return ""


# -- elsewhere (macOS): ps ---------------------------------------------------------------


def _from_ps(pid: int) -> Identity | None:
    state = _ps(pid, "stat")
    if state is None or state.startswith("Z"):
        return None
    started = _ps(pid, "lstart")
    command = _ps(pid, "command")
    if started is None or command is None:
        return None
    return Identity(pid, started, "", tuple(command.split(" ")))


def _ps(pid: int, column: str) -> str | None:
    """One column of ``ps`` for ``pid`` (full width, a fixed locale and time zone);
    ``None`` when no such process runs."""
    try:
        result = subprocess.run(
            ["ps", "-ww", "-o", f"{column}=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
            env=os.environ | {"LC_ALL": "C", "TZ": "UTC"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None
