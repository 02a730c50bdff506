"""A throwaway server dies with the process that started it, however that process dies.

On Linux the kernel sends the postmaster a signal when its parent dies (``prctl``);
elsewhere, or with ``parent_death="watchdog"``, a watchdog process does it when the
pipe from the parent closes. Both are checked on real servers started by a child
Python process that is then killed with SIGKILL (nothing of it can clean up).
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from db_devtools.provisioning import watchdog
from db_devtools.provisioning.local import LocalServer
from db_devtools.provisioning.processes import alive
from db_devtools.provisioning.watchdog import Watchdog, mechanism

ON_LINUX = sys.platform.startswith("linux")
DEATH_TIMEOUT_S = 5.0

# Starts a throwaway server, says its pids, then waits to be killed.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from db_devtools.provisioning.local import LocalServer

    server = LocalServer(Path(sys.argv[1]), parent_death=sys.argv[2]).throwaway()
    guard = server.watchdog.process.pid if server.watchdog else 0
    print(server.info.pid, guard, flush=True)
    time.sleep(600)
    """
)


def wait_gone(pid: int, timeout: float = DEATH_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state folder of these tests' own (one fresh template: initdb takes ~0.5 s)."""
    state = tmp_path_factory.mktemp("watchdog") / ".postgres"
    yield state
    server = LocalServer(state)
    for folder in (server.runtime_dir, server.scratch_dir):
        if not folder.is_relative_to(state):  # as root: /var/tmp; throwaway data: /dev/shm
            shutil.rmtree(folder, ignore_errors=True)


def start_in_child(state_dir: Path, parent_death: str) -> tuple[subprocess.Popen[str], int, int]:
    """A child process holding a throwaway server: (child, postmaster pid, watchdog pid)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_dir), parent_death],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    ready, _, _ = select.select([child.stdout], [], [], 60)
    line = child.stdout.readline() if ready else ""
    if not line:
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"the child started no server: {err}")
    postmaster, guard = (int(word) for word in line.split())
    return child, postmaster, guard


@pytest.mark.parametrize(
    "parent_death",
    [
        "watchdog",
        pytest.param(
            "prctl",
            marks=pytest.mark.skipif(not ON_LINUX, reason="prctl is Linux's"),
        ),
    ],
)
def test_a_throwaway_server_dies_with_its_killed_parent(state_dir: Path, parent_death: str) -> None:
    child, postmaster, guard = start_in_child(state_dir, parent_death)
    try:
        assert alive(postmaster)
        # With prctl there is no watchdog: the kernel's parent-death signal alone acts.
        assert (guard != 0) == (parent_death == "watchdog")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert wait_gone(postmaster), f"the server outlived its parent ({parent_death})"
        if guard:
            assert wait_gone(guard), "the watchdog outlived the server"
    finally:
        for pid in (postmaster, guard):
            if pid and alive(pid):
                os.kill(pid, signal.SIGQUIT)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    # Its data folder is left behind, and swept by the next throwaway start.
    server = LocalServer(state_dir, parent_death=parent_death)
    leftovers = [p for p in server.scratch_dir.glob(f"test-{child.pid}-*") if p.is_dir()]
    assert leftovers
    server.throwaway().stop()
    assert not [p for p in server.scratch_dir.glob("test-*") if p.is_dir()]


def test_a_watchdog_server_stops_cleanly(state_dir: Path) -> None:
    server = LocalServer(state_dir, parent_death="watchdog").throwaway()
    assert server.watchdog is not None
    guard = server.watchdog.process
    assert guard.poll() is None
    server.stop()
    assert not alive(server.info.pid)
    assert guard.poll() is not None, "stop() ends and reaps the watchdog"
    assert not Path(server.info.data_dir).exists()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm here")
def test_the_last_server_of_a_state_folder_removes_its_folder_in_memory(state_dir: Path) -> None:
    """Not one empty folder per state folder left in /dev/shm (tests make many)."""
    server = LocalServer(state_dir, parent_death="prctl" if ON_LINUX else "watchdog")
    first, second = server.throwaway(), server.throwaway()
    scratch = Path(first.info.data_dir).parent
    assert scratch == Path(second.info.data_dir).parent
    assert scratch.parent == Path("/dev/shm") and scratch.is_dir()
    first.stop()
    assert scratch.is_dir(), "the other server's data is still there"
    assert Path(second.info.data_dir).is_dir()
    second.stop()
    assert not scratch.exists()
    third = server.throwaway()
    try:  # the folder is made again for the next one
        assert Path(third.info.data_dir).parent == scratch and scratch.is_dir()
    finally:
        third.stop()
    assert not scratch.exists()


@pytest.mark.skipif(not ON_LINUX, reason="prctl is Linux's")
def test_a_prctl_server_has_no_watchdog(state_dir: Path) -> None:
    server = LocalServer(state_dir, parent_death="prctl").throwaway()
    try:
        assert server.watchdog is None
        status = Path(f"/proc/{server.info.pid}/status").read_text()
        assert "\nPPid:\t" + str(os.getpid()) + "\n" in status, "the server is our child"
    finally:
        server.stop()


def test_the_watchdog_stops_its_process_when_released() -> None:
    # SIGQUIT at its default action: a shell starting the tests in the background
    # leaves it ignored, and children inherit that.
    sleeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGQUIT, signal.SIG_DFL); time.sleep(60)",
        ]
    )
    try:
        guard = Watchdog(sleeper.pid)
        time.sleep(0.05)
        assert sleeper.poll() is None, "nothing is stopped while the pipe is open"
        guard.release()
        assert sleeper.wait(timeout=10) == -signal.SIGQUIT
        assert guard.process.returncode == 0
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_the_watchdog_survives_a_process_that_is_already_gone() -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    guard = Watchdog(finished.pid)
    guard.release()
    assert guard.process.returncode == 0


def test_mechanism_auto_picks_prctl_on_linux_else_the_watchdog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert watchdog.prctl_available() == ON_LINUX
    assert mechanism("auto") == ("prctl" if ON_LINUX else "watchdog")
    assert mechanism("watchdog") == "watchdog"
    assert mechanism("prctl") == "prctl"
    monkeypatch.setattr(watchdog, "prctl_available", lambda: False)
    assert mechanism("auto") == "watchdog"
    assert mechanism("watchdog") == "watchdog"
    # A server made while prctl is unavailable uses the watchdog.
    assert LocalServer(Path("/nonexistent/.postgres")).parent_death == "watchdog"
