"""Tie a server's life to this process: it is stopped when this process dies, however.

On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG)`` in the child). Elsewhere, or
when asked, a small watchdog process does it: it reads a pipe whose only writer is this
process; the read returns when this process exits or is killed (the kernel closes the
pipe), and the watchdog then sends the server an immediate-shutdown signal.
"""

import ctypes
import signal
import subprocess
import sys
from typing import IO

from db_devtools.errors import ProvisioningError

_PR_SET_PDEATHSIG = 1

# Runs as ``python -c``: waits for end of file on stdin, then stops the server.
_WATCHDOG = """
import os, signal, sys
pid = int(sys.argv[1])
sys.stdin.buffer.read()
try:
    os.kill(pid, signal.SIGQUIT)
except (ProcessLookupError, PermissionError):
    pass
"""


def prctl_available() -> bool:
    return sys.platform.startswith("linux")


def mechanism(wanted: str) -> str:
    """``prctl`` or ``watchdog`` for a configured ``auto``/``prctl``/``watchdog``."""
    if wanted == "auto":
        return "prctl" if prctl_available() else "watchdog"
    if wanted == "prctl" and not prctl_available():
        raise ProvisioningError(
            f"SIGNALMARKET_PARENT_DEATH=prctl needs Linux; this is {sys.platform}",
            kind="invalid_setting",
        )
    return wanted


def die_with_parent() -> None:
    """A ``preexec_fn``: runs in the child after it dropped privileges (a uid change
    resets the parent-death signal, so it is set last). SIGQUIT = immediate shutdown."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


class Watchdog:
    """A process that stops ``pid`` when this process dies or calls ``release``."""

    def __init__(self, pid: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the test run must not kill it first
        )
        assert self.process.stdin is not None
        self._pipe: IO[bytes] = self.process.stdin

    def release(self) -> None:
        """Close the pipe (the watchdog stops the server, if still running) and reap it."""
        self._pipe.close()
        self.process.wait(timeout=30)
