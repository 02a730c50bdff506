"""The migration runner: the one function through which a database's revision changes.

Service startup, ``migrate.upgrade``/``downgrade``/``stamp``, the test fixtures and
the containers all come here, so they share its guarantees:

1. **A history Alembic accepts, or nothing.** Every file is compiled and the graph is
   checked first: duplicate IDs, a cycle, a missing parent, several heads or an
   unreadable file migrate nothing. Where the fast reader cannot tell (a value that is
   not a literal), Alembic's own reading decides.
2. **One migrator at a time.** A per-service session-level advisory lock on its own
   connection (``shared_db.locking``); the wait is bounded and says who holds it.
3. **Under the lock**: backends left busy by an earlier migrator that died are given
   a moment, then terminated; invalid indexes left by a killed
   ``CREATE INDEX CONCURRENTLY`` are dropped (``shared_db.leftovers``); the revision is
   read again.
4. **Revision by revision**, each in its own transaction: a failure leaves the last
   good revision applied and the error names the failing one.
5. **The lock-wait guard**: each statement waits at most a short ``lock_timeout`` for a
   table lock, so the traffic queued behind a migration's pending lock is never stalled
   longer than that; the revision is rolled back and retried after a jittered pause,
   within a bounded number of attempts and time; giving up names the blocking sessions
   and says it is contention (exit code 3), not a broken revision.
6. **No orphaned work**: migration sessions set ``client_connection_check_interval``,
   so the server cancels a dead client's statement, and TCP keepalives.
7. **SIGTERM/SIGINT** (in the main thread): the current revision is cancelled and
   rolled back, the lock released, and the interruption reported.
8. A database at a revision this code does not know was migrated by newer code: it is
   never downgraded or "fixed" from here.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from shared_db import leftovers, records
from shared_db.applier import Applier, Progress, Reporter
from shared_db.config import DbConfig
from shared_db.connections import connect
from shared_db.errors import DatabaseError, MigrationError
from shared_db.history import History, read_history
from shared_db.interrupts import Interrupted, interruptible
from shared_db.locking import lock_key, migration_lock
from shared_db.records import Applied
from shared_db.sessions import Conn
from shared_db.soundness import loaded, sound_history
from shared_db.status import Status, at_head, read_state, status_of

if TYPE_CHECKING:  # Alembic is imported only when there is something to apply
    from alembic.runtime.migration import MigrationStep
    from alembic.script import ScriptDirectory

__all__ = [
    "Progress",
    "Reporter",
    "RunResult",
    "downgrade",
    "lock_key",
    "migrate_to_head",
    "sound_history",
    "stamp",
    "upgrade",
]

log = logging.getLogger("signalmarket.migrate")


@dataclass(frozen=True)
class RunResult:
    service: str
    # "none" (nothing to do), "migrated elsewhere" (another process did it while this one
    # waited for the lock), "ahead" (a newer release migrated it further, with expand
    # revisions only: this code runs on it as it is), "upgraded", "downgraded", "stamped".
    action: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    steps: tuple[str, ...] = field(default=())  # revisions applied (or undone), in order
    ahead: tuple[str, ...] = field(default=())  # for "ahead": the newer revisions


def log_progress(progress: Progress) -> None:
    """The default reporter: one log line per revision."""
    log.info("%s", progress.line())


def refuse_incompatible(state: Status, *, migrating: bool) -> None:
    """A database this code cannot use: at a revision it does not know that is not
    shown to be newer, or ahead of it by a contract revision."""
    if state.unknown and state.squashed_into:
        raise MigrationError(
            f"the database is at revision {', '.join(state.unknown)}, which this code squashed "
            f"into the baseline {state.squashed_into} (the revisions up to "
            f"{state.squashed_into} are one revision now); this code cannot "
            + ("migrate it" if migrating else "use it")
            + f" from there: it must reach {state.squashed_into} first",
            kind="squashed_revision",
            service=state.service,
            revision=state.squashed_into,
            cause=state.unknown[0],
        )
    if state.unknown:
        raise MigrationError(
            f"the database is at revision {', '.join(state.unknown)}, which this code does not "
            "know (it was migrated by a newer version); refusing to "
            + ("migrate it" if migrating else "use it"),
            kind="unknown_revision",
            service=state.service,
            revision=state.unknown[0],
        )
    if state.ahead and (state.blocking or state.pending):
        reason = (
            f"{state.blocking} is a contract revision"
            if state.blocking
            else f"{state.pending} revision(s) of this code are not applied"
        )
        raise _ahead_error(state, f"{reason}: this code cannot run on that schema")


def _ahead_error(state: Status, why: str) -> MigrationError:
    return MigrationError(
        f"the database is ahead of this code ({', '.join(state.ahead)}): {why}",
        kind="incompatible_database" if state.blocking or state.pending else "database_ahead",
        service=state.service,
        revision=state.blocking or state.ahead[0],
    )


def _check_target(service: str, history: History, target: str) -> None:
    """An unknown or ambiguous revision target, said plainly before Alembic is asked."""
    if target in ("head", "heads", "base") or target in history.revisions:
        return
    if target[:1] in "+-" or "@" in target or ":" in target:
        return  # relative and branch targets: Alembic resolves them
    matches = sorted(rev for rev in history.revisions if rev.startswith(target))
    if len(matches) == 1:
        return
    what = (
        f"the revision prefix {target!r} is ambiguous: {', '.join(matches)}"
        if matches
        else f"there is no revision {target!r}"
    )
    raise MigrationError(what, kind="unknown_target", service=service, revision=target)


def _check_downgrade(service: str, history: History, current: tuple[str, ...], target: str) -> None:
    """Say plainly why a downgrade cannot start (Alembic's own wording is cryptic)."""
    if not current:
        raise MigrationError(
            "the database is at base: there is nothing to downgrade",
            kind="nothing_to_downgrade",
            service=service,
            revision=target,
        )
    applied = set().union(*(history.ancestors(rev) for rev in current))
    steps = target[1:]
    if target.startswith("-") and steps.isdigit() and int(steps) > len(applied):
        raise MigrationError(
            f"cannot go down {steps} revisions: the database is at {', '.join(current)}, "
            f"{len(applied)} revision(s) above base",
            kind="bad_target",
            service=service,
            revision=target,
        )
    if target in history.revisions and target not in applied:
        raise MigrationError(
            f"cannot downgrade to {target}: it is not below the database's revision "
            f"{', '.join(current)}",
            kind="bad_target",
            service=service,
            revision=target,
        )


# -- running under the lock -----------------------------------------------------------


def _locked(
    config: DbConfig, service: str, work: Callable[[Connection, Conn], RunResult]
) -> RunResult:
    """``work(migration connection, lock connection)`` under ``service``'s migration
    lock, after clearing what earlier migrators left; SIGTERM/SIGINT stop it cleanly."""
    lock_conn: Conn | None = None
    try:
        with interruptible(), migration_lock(config, service) as lock_conn:
            leftovers.settle_leftover_migrators(lock_conn, config, service)
            with connect(config, service, kind="migrate") as connection:
                return work(connection, lock_conn)
    except Interrupted as exc:
        stays = _stays_at(config, service, lock_conn)
        raise MigrationError(
            f"stopped by {exc.args[0]}: the revision being applied was rolled back; the "
            f"database stays at {stays}",
            kind="interrupted",
            service=service,
            cause=exc.args[0],
        ) from None


def _stays_at(config: DbConfig, service: str, lock_conn: Conn | None) -> str:
    """The database's revision, read again after an interruption (best effort)."""
    try:
        if lock_conn is not None and not lock_conn.closed:
            found = records.current_revisions_raw(lock_conn, service)
        else:
            with connect(config, service) as connection:
                found = records.current_revisions(connection, service)
    except Exception:
        return "(unknown: the database could not be read)"
    return ", ".join(found) or "base"


def _script(config: DbConfig, service: str) -> "ScriptDirectory":
    from alembic.script import ScriptDirectory

    from shared_db.alembic_config import alembic_config

    return loaded(service, ScriptDirectory.from_config(alembic_config(config, service)))


def plan_steps(
    script: "ScriptDirectory", service: str, current: tuple[str, ...], target: str, down: bool
) -> list[tuple[str, "MigrationStep"]]:
    """(revision, step) from ``current`` to ``target``, in the order Alembic applies them."""
    from alembic.runtime.migration import MigrationStep
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError

    try:
        if down:
            scripts = list(script.iterate_revisions(current, target, select_for_downgrade=True))
            return [
                (s.revision, MigrationStep.downgrade_from_script(script.revision_map, s))
                for s in scripts
            ]
        scripts = list(script.iterate_revisions(target, current, implicit_base=True))
        return [
            (s.revision, MigrationStep.upgrade_from_script(script.revision_map, s))
            for s in reversed(scripts)
        ]
    except (RevisionError, CommandError) as exc:
        raise MigrationError(
            f"cannot {'downgrade' if down else 'upgrade'} to {target!r}: {exc}",
            kind="bad_target",
            service=service,
            revision=target,
        ) from exc


def _service_tables(service: str) -> set[tuple[str, str]]:
    from shared_db.models import metadata_for

    return {(t.schema or "public", t.name) for t in metadata_for(service).tables.values()}


def _prepare_session(connection: Connection, config: DbConfig) -> int:
    """Session settings of the migration connection; returns its backend pid."""
    from shared_db.migrations.env_runner import SESSION_SETTINGS

    for statement in SESSION_SETTINGS:
        connection.exec_driver_sql(statement)
    version = connection.dialect.server_version_info or (0,)
    if version >= (14,):  # the server cancels the work of a client that vanished
        interval = max(1, round(config.client_check_interval_s * 1000))
        connection.exec_driver_sql(f"SET client_connection_check_interval = {interval}")
    pid = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    connection.commit()  # session settings stay; each revision runs in its own transaction
    return pid


def _apply(
    config: DbConfig,
    service: str,
    history: History,
    connection: Connection,
    lock_conn: Conn,
    target: str,
    down: bool,
    report: Reporter = log_progress,
    phases: str = "all",
) -> RunResult:
    before = records.current_revisions(connection, service)
    state = status_of(service, history, before, records.applied(connection, service))
    refuse_incompatible(state, migrating=True)
    if state.ahead:  # compatible: nothing this code can or should apply
        connection.rollback()
        if down or target not in ("head", "heads"):
            raise _ahead_error(state, "it can only be moved by the newer code")
        return RunResult(service, "ahead", before, before, ahead=state.ahead)
    _check_target(service, history, target)
    if not down and target in ("head", "heads") and at_head(history, before):
        connection.rollback()
        return RunResult(service, "none", before, before)
    if down:
        _check_downgrade(service, history, before, target)
    script = _script(config, service)
    steps = plan_steps(script, service, before, target, down)
    if phases == "expand":  # stop before the first contract revision: it runs later
        first = next(
            (i for i, (rev, _s) in enumerate(steps) if history.revisions[rev].phase != "expand"),
            len(steps),
        )
        if first < len(steps):
            log.info(
                "%s: expand phase only: %d contract revision(s) from %s left for the migrate step",
                service,
                len(steps) - first,
                steps[first][0],
            )
        steps = steps[:first]
    pid = _prepare_session(connection, config)
    leftovers.drop_invalid_indexes(lock_conn, service, lambda: _service_tables(service))
    applier = Applier(config, service, connection, lock_conn, script, pid)

    def applied(revision: str, seconds: float) -> None:
        message = history.revisions[revision].message if revision in history.revisions else ""
        number = len(applier.done)
        report(Progress(service, revision, message, number, len(steps), seconds, down))

    run_started = time.perf_counter()
    applier.run(steps, "undoing" if down else "applying", applied)
    done = applier.done
    after = records.current_revisions(connection, service)
    connection.commit()
    if done:
        log.info(
            "%s: %s %d revision(s) in %.2f s: %s -> %s",
            service,
            "undid" if down else "applied",
            len(done),
            time.perf_counter() - run_started,
            ", ".join(before) or "base",
            ", ".join(after) or "base",
        )
    action = "downgraded" if down else "upgraded"
    return RunResult(service, action if done else "none", before, after, tuple(done))


def upgrade(
    config: DbConfig,
    service: str,
    target: str = "head",
    report: Reporter = log_progress,
    phases: str = "all",
) -> RunResult:
    """Upgrade ``service``'s database to ``target`` under the migration lock; ``report``
    gets each revision as it is applied; ``phases="expand"`` stops before the first
    contract revision (a rolling deploy applies those after the rollout)."""
    history = sound_history(config, service)
    return _locked(
        config,
        service,
        lambda conn, lock: _apply(
            config, service, history, conn, lock, target, False, report, phases
        ),
    )


def downgrade(
    config: DbConfig, service: str, target: str = "-1", report: Reporter = log_progress
) -> RunResult:
    """Downgrade ``service``'s database to ``target`` under the migration lock."""
    history = sound_history(config, service)
    return _locked(
        config,
        service,
        lambda conn, lock: _apply(config, service, history, conn, lock, target, True, report),
    )


def stamp(config: DbConfig, service: str, revision: str) -> RunResult:
    """Record ``revision`` as applied without running anything (under the lock)."""
    history = sound_history(config, service)
    _check_target(service, history, revision)

    def work(connection: Connection, _lock: Conn) -> RunResult:
        from alembic.runtime.migration import MigrationContext

        from shared_db.services import version_table

        before = records.current_revisions(connection, service)
        context = MigrationContext.configure(
            connection, opts={"version_table": version_table(service)}
        )
        context.stamp(_script(config, service), revision)
        after = records.current_revisions(connection, service)
        connection.commit()
        return RunResult(service, "stamped", before, after)

    return _locked(config, service, work)


# -- service startup -----------------------------------------------------------------


def state_once_reachable(
    config: DbConfig, service: str
) -> tuple[tuple[str, ...], dict[str, Applied]]:
    """The database's state (``read_state``), read over the first connection that
    works: connecting until one does or ``config.database_wait_s`` passes (backoff to
    2 s). One connection, not a probe then a read: a replica's start makes one fewer."""
    deadline = time.monotonic() + config.database_wait_s
    delay = 0.1
    while True:
        try:
            with connect(config, service) as connection:
                return read_state(connection, service)
        except DatabaseError as exc:
            remaining = deadline - time.monotonic()
            if exc.kind != "database_unreachable":
                raise  # a wrong password or database does not fix itself
            if remaining <= 0:
                exc.message = f"gave up after {config.database_wait_s:g} s: {exc.message}"
                raise
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


def migrate_to_head(
    config: DbConfig, service: str, report: Reporter = log_progress, phases: str = "all"
) -> RunResult:
    """Startup: bring the database to head, exactly once across replicas.

    A lock-free check first: a database already at head takes no lock, and neither does
    one ahead of this code by expand revisions only (a newer release migrated it: this
    code serves on it as it is)."""
    history = sound_history(config, service)
    state = status_of(service, history, *state_once_reachable(config, service))
    refuse_incompatible(state, migrating=False)
    if state.ahead:
        return RunResult(service, "ahead", state.database, state.database, ahead=state.ahead)
    if state.pending == 0 or (phases == "expand" and state.serves("expand")):
        return RunResult(service, "none", state.database, state.database)
    result = upgrade(config, service, report=report, phases=phases)
    if result.action in ("none", "ahead"):  # another replica migrated while this one waited
        return RunResult(service, "migrated elsewhere", state.database, result.after)
    return RunResult(service, result.action, state.database, result.after, result.steps)


def wait_until_compatible(
    config: DbConfig, service: str, timeout_s: float, phases: str = "all"
) -> Status:
    """For a service that does not migrate (``SKIP_MIGRATIONS``): wait, bounded, until
    the database is at a revision this code can serve on (a migrate step runs
    elsewhere). Raises at once for an incompatible database, and after ``timeout_s``."""
    history = read_history(config, service)
    deadline, delay, said = time.monotonic() + timeout_s, 0.2, False
    while True:
        state = status_of(service, history, *state_once_reachable(config, service))
        refuse_incompatible(state, migrating=False)
        if state.serves(phases):
            return state
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"the database did not reach a revision this code can serve on within "
                f"{timeout_s:g} s (it is {state.state}; head {', '.join(state.head)})",
                kind="not_migrated",
                service=service,
            )
        if not said:
            log.warning(
                "%s: not migrating (SKIP_MIGRATIONS): waiting up to %g s for the database "
                "to be migrated by the migrate step (it is %s; head %s)",
                service,
                timeout_s,
                state.state,
                ", ".join(state.head),
            )
            said = True
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)
