"""SIGTERM and SIGINT during a migration: roll back the current revision, then stop.

Inside ``interruptible()`` (main thread only: Python runs signal handlers there), both
signals raise ``Interrupted``. It is a ``KeyboardInterrupt``, so psycopg cancels the
statement running on the server before the exception goes on; the revision's
transaction rolls back, the runner releases its lock and reports one line.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Interrupted`` while inside (a no-op off the main thread,
    e.g. in a web server's worker thread, whose server handles the signals itself)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
