"""Applying planned revisions on the migration connection: the runner's inner loop.

One ``MigrationContext.run_migrations`` call applies every step: its work function is a
generator that hands Alembic one step at a time, so Alembic still opens and commits one
transaction per revision (``transaction_per_migration``), writes the version table and
calls the records hook inside it, while the version table is read once per run instead
of once per revision. Between two steps (the previous one committed) the generator sets
the next revision's ``lock_timeout`` when it differs and reports the one just applied.

A step refused a table lock (``lock_timeout`` expired) is rolled back and the run
starts again from that step after a pause; any other failure stops the run naming the
revision. One watcher thread per run names the sessions that block the migration's
backend while a step waits.
"""

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from shared_db import leftovers, records, sessions
from shared_db.config import DbConfig
from shared_db.connections import first_line
from shared_db.errors import MigrationError, SharedDbError
from shared_db.interrupts import Interrupted
from shared_db.sessions import Conn, Session

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationStep
    from alembic.script import ScriptDirectory

log = logging.getLogger("signalmarket.migrate")
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a statement whose lock_timeout expired
_INTERVAL = re.compile(r"^\d+(\.\d+)?\s*(ms|s|min)?$")


@dataclass(frozen=True)
class Progress:
    """One revision applied (or undone): what a front end shows as it goes."""

    service: str
    revision: str
    message: str
    number: int
    total: int
    seconds: float
    undo: bool = False

    def line(self) -> str:
        verb = "undone: " if self.undo else ""
        return (
            f"{self.service}: {verb}{self.revision} {self.message} "
            f"({self.number}/{self.total}) {self.seconds:.2f} s"
        )


Reporter = Callable[[Progress], None]


def lock_timeout_of(script: "ScriptDirectory", service: str, revision: str, default: float) -> str:
    """The revision's own ``lock_timeout`` (e.g. ``lock_timeout = "5s"`` in its file),
    else the configured one."""
    found = script.get_revision(revision)
    own = getattr(found.module, "lock_timeout", None) if found is not None else None
    if own is None:
        return f"{round(default * 1000)}ms"
    if not isinstance(own, str) or not _INTERVAL.match(own.strip()):
        raise MigrationError(
            f"revision {revision} sets lock_timeout = {own!r}; expected a duration such as "
            '"5s" or "500ms"',
            kind="bad_revision_setting",
            service=service,
            revision=revision,
        )
    return own.strip()


class BlockerWatch:
    """Who blocks the migration's backend while a step waits, polled from the idle lock
    connection (so the sessions are known even after the statement gave up).

    One thread for the whole run; ``arm()`` starts watching a new attempt. A step that
    has run for less than ``interval`` is not asked about: most finish well before."""

    def __init__(self, conn: Conn, pid: int, interval: float = 0.1) -> None:
        self.conn, self.pid, self.interval = conn, pid, interval
        self.seen: list[Session] = []
        self._armed_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def arm(self) -> None:
        self.seen, self._armed_at = [], time.monotonic()

    def _watch(self) -> None:
        polled_at = 0.0
        while not self._stop.wait(self.interval / 4):
            now = time.monotonic()
            if now - self._armed_at < self.interval or now - polled_at < self.interval:
                continue
            polled_at = now
            try:
                found = sessions.blockers(self.conn, self.pid)
            except Exception:
                return
            if found:
                self.seen = found

    def __enter__(self) -> "BlockerWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def describe(self) -> str:
        return "; ".join(s.describe() for s in self.seen) or "sessions that let go meanwhile"


def lock_not_granted(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == LOCK_NOT_AVAILABLE


def pause(attempt: int) -> float:
    """Jittered, growing pauses between attempts: the queued traffic drains meanwhile."""
    return float(random.uniform(0.5, 1.0) * min(5.0, 0.25 * 2**attempt))


Step = tuple[str, "MigrationStep"]


class Applier:
    """Applies planned steps on the migration connection (``connection``), watched from
    the lock connection (``lock_conn``); ``pid`` is the migration backend's."""

    def __init__(
        self,
        config: DbConfig,
        service: str,
        connection: Connection,
        lock_conn: Conn,
        script: "ScriptDirectory",
        pid: int,
    ) -> None:
        from alembic.runtime.migration import MigrationContext

        from shared_db.migrations.env_runner import RevisionRecorder, apply_options

        self.config, self.service, self.connection = config, service, connection
        self.lock_conn, self.script, self.pid = lock_conn, script, pid
        self.recorder = RevisionRecorder(service, script)
        self.context: MigrationContext = MigrationContext.configure(
            connection, opts={**apply_options(service, self.recorder), "fn": self._next_steps}
        )
        self.timeout = ""
        self.pending: list[Step] = []
        self.done: list[str] = []
        self._on_done: Callable[[str, float], None] = lambda _rev, _s: None
        self._watch: BlockerWatch | None = None
        self._started = 0.0
        self._verb = "applying"
        self._reporting = False

    def run(self, steps: list[Step], verb: str, on_done: Callable[[str, float], None]) -> None:
        """Apply ``steps`` in order; ``on_done(revision, seconds)`` after each commit."""
        from alembic.operations import Operations

        if not steps:
            return
        self.pending, self._on_done, self._verb = list(steps), on_done, verb
        self._set_timeout(steps[0][0])  # before the first transaction begins
        attempt, first_try, tried = 0, time.monotonic(), ""
        with BlockerWatch(self.lock_conn, self.pid) as self._watch:
            while self.pending:
                try:
                    with Operations.context(self.context):
                        self.context.run_migrations()
                    return
                except (Interrupted, SharedDbError):
                    raise  # a signal, the connection lost, a revision's bad setting
                except Exception as exc:
                    if self._reporting:
                        raise
                    self.connection.rollback()
                    revision = self.pending[0][0]
                    if not lock_not_granted(exc):
                        raise self._failed(revision, exc) from exc
                    if revision != tried:  # attempts and budget count per revision
                        attempt, first_try, tried = 0, self._started, revision
                    attempt += 1
                    self._retry_or_give_up(revision, attempt, first_try, verb)

    def _next_steps(self, _heads: object, _context: object) -> Iterator["MigrationStep"]:
        """Alembic's work function: one step at a time; resumed once it is committed."""
        assert self._watch is not None
        while self.pending:
            revision, step = self.pending[0]
            log.debug("%s: %s %s (%d left)", self.service, self._verb, revision, len(self.pending))
            self._set_timeout(revision)
            self._watch.arm()
            self._started = time.monotonic()
            self.recorder.step_started = time.perf_counter()
            yield step
            self.pending.pop(0)
            self.done.append(revision)
            self._reporting = True  # a front end's own error is not the next revision's
            self._on_done(revision, time.monotonic() - self._started)
            self._reporting = False

    def _set_timeout(self, revision: str) -> None:
        """A session setting, so set (and committed) between revisions, when it changes."""
        timeout = lock_timeout_of(
            self.script, self.service, revision, self.config.table_lock_timeout_s
        )
        if timeout != self.timeout:
            self.connection.exec_driver_sql(f"SET lock_timeout = '{timeout}'")
            self.connection.commit()
            self.timeout = timeout

    def _retry_or_give_up(self, revision: str, attempt: int, first_try: float, verb: str) -> None:
        assert self._watch is not None
        elapsed = time.monotonic() - first_try
        left = self.config.retry_budget_s - elapsed
        if attempt >= self.config.lock_retries or left <= 0:
            raise MigrationError(
                f"lock contention: revision {revision} was not granted a table lock "
                f"within {self.timeout} in {attempt} attempt(s) over {elapsed:.0f} s; "
                f"blocked by {self._watch.describe()}; the revision itself is not at fault "
                f"and was rolled back; the database stays at {self._at()}",
                kind="lock_contention",
                service=self.service,
                revision=revision,
            ) from None
        wait = min(pause(attempt), left)
        log.warning(
            "%s: %s %s: no table lock within %s (attempt %d of %d), blocked by %s; "
            "rolled back, retrying in %.1f s",
            self.service,
            verb,
            revision,
            self.timeout,
            attempt,
            self.config.lock_retries,
            self._watch.describe(),
            wait,
        )
        time.sleep(wait)

    def _at(self) -> str:
        try:
            found = records.current_revisions(self.connection, self.service)
            self.connection.rollback()
        except Exception:
            found = records.current_revisions_raw(self.lock_conn, self.service)
        return ", ".join(found) or "base"

    def _failed(self, revision: str, exc: BaseException) -> MigrationError:
        reason = first_line(exc)
        found = self.script.get_revision(revision)
        source = Path(found.path).read_text() if found is not None and found.path else ""
        leftover = leftovers.explain_existing(self.service, revision, reason, source)
        if leftover:
            return MigrationError(
                f"revision {revision} failed: {leftover}",
                kind="leftover_object",
                service=self.service,
                revision=revision,
            )
        return MigrationError(
            f"revision {revision} failed: {reason}; the database stays at {self._at()}",
            kind="revision_failed",
            service=self.service,
            revision=revision,
            cause=reason,
        )
