"""The migration runner: the one function through which a database's revision changes.

Service startup, ``migrate.upgrade``/``downgrade``/``stamp``, the test fixtures and
the containers all come here, so they share its guarantees:

1. The history is checked first: a history Alembic would reject (duplicate IDs, a
   cycle, a missing parent, several heads, an unreadable file) migrates nothing.
2. A per-service session-level advisory lock, on a dedicated connection, is held for
   the whole run (a transaction-level lock would be released by autocommit blocks such
   as ``CREATE INDEX CONCURRENTLY``); the wait for it is bounded. Two runners never
   interleave, whichever front end started them.
3. Under the lock the revision is read again, then the revisions are applied one by
   one, each in its own transaction, so a failure leaves the last good revision applied
   and the error names the failing one.
4. A database at a revision this code does not know was migrated by newer code: it is
   never downgraded or "fixed" from here.
"""

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy.engine import Connection

from shared_db import records
from shared_db.config import DbConfig
from shared_db.connections import connect, connect_autocommit, first_line
from shared_db.errors import DatabaseError, MigrationError
from shared_db.history import History, read_history
from shared_db.soundness import fatal_problems
from shared_db.status import at_head, unknown_revisions

log = logging.getLogger("signalmarket.migrate")

if TYPE_CHECKING:  # Alembic is imported only when there is something to apply
    from alembic.runtime.migration import MigrationStep
    from alembic.script import ScriptDirectory


@dataclass(frozen=True)
class RunResult:
    service: str
    # "none" (nothing to do), "migrated elsewhere" (another process did it while this one
    # waited for the lock), "upgraded", "downgraded" or "stamped".
    action: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    steps: tuple[str, ...] = field(default=())  # revisions applied (or undone), in order


def lock_key(service: str) -> int:
    """A stable signed 64-bit advisory-lock key per service."""
    digest = hashlib.sha256(f"signalmarket:migrate:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# -- the guards ----------------------------------------------------------------------


def require_sound(service: str, history: History) -> None:
    """Refuse a history that Alembic would reject or misread."""
    problems = fatal_problems(service, history)
    if problems:
        first = problems[0]
        raise MigrationError(
            f"the history cannot be used: {first.message}",
            kind="unsound_history",
            service=service,
            revision=first.revision,
            cause=first.kind,
            path=first.path,
        )


def refuse_unknown(service: str, history: History, current: tuple[str, ...]) -> None:
    """A database at a revision this code does not know was migrated by newer code."""
    unknown = unknown_revisions(history, current)
    if unknown:
        raise MigrationError(
            f"the database is at revision {', '.join(unknown)}, which this code does not "
            "know (it was migrated by a newer version); refusing to migrate it",
            kind="unknown_revision",
            service=service,
            revision=unknown[0],
        )


# -- the lock ------------------------------------------------------------------------


def _try_lock(conn: psycopg.Connection[tuple[Any, ...]], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def _locked(config: DbConfig, service: str, work: Callable[[Connection], RunResult]) -> RunResult:
    """Run ``work`` on a connection to ``service``'s database under its migration lock."""
    url = config.parsed_url(service)
    key = lock_key(service)
    lock_conn = connect_autocommit(
        url,
        timeout_s=config.connect_timeout_s,
        application_name=config.application_name(service),
        service=service,
    )
    with lock_conn:
        deadline = time.monotonic() + config.lock_wait_s
        while not _try_lock(lock_conn, key):
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"waited {config.lock_wait_s:g} s for the migration lock; another "
                    "process holds it (a long migration, or a stuck session)",
                    kind="lock_timeout",
                    service=service,
                )
            time.sleep(0.05)
        try:
            with connect(config, service) as connection:
                return work(connection)
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


# -- applying revisions --------------------------------------------------------------


def _script(config: DbConfig, service: str) -> "ScriptDirectory":
    from alembic.script import ScriptDirectory

    from shared_db.alembic_config import alembic_config

    return ScriptDirectory.from_config(alembic_config(config, service))


def _plan(
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


def _apply(
    config: DbConfig, service: str, connection: Connection, target: str, down: bool
) -> RunResult:
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    from shared_db.migrations.env_runner import SESSION_SETTINGS, runner_options

    history = read_history(config, service)
    require_sound(service, history)
    before = records.current_revisions(connection, service)
    refuse_unknown(service, history, before)
    _check_target(service, history, target)
    if not down and target in ("head", "heads") and at_head(history, before):
        connection.rollback()
        return RunResult(service, "none", before, before)
    if down:
        _check_downgrade(service, history, before, target)
    script = _script(config, service)
    steps = _plan(script, service, before, target, down)
    for statement in SESSION_SETTINGS:
        connection.exec_driver_sql(statement)
    connection.commit()  # session settings stay; each revision runs in its own transaction
    queue: list[MigrationStep] = []
    context = MigrationContext.configure(
        connection,
        opts={**runner_options(service, script), "fn": lambda _heads, _ctx: queue},
    )
    done: list[str] = []
    verb = "undoing" if down else "applying"
    for number, (revision, step) in enumerate(steps, 1):
        queue[:] = [step]
        log.info("%s: %s %s (%d of %d)", service, verb, revision, number, len(steps))
        started = time.perf_counter()
        try:
            with Operations.context(context):
                context.run_migrations()
        except DatabaseError:
            raise
        except Exception as exc:
            connection.rollback()
            at = records.current_revisions(connection, service)
            connection.rollback()
            raise MigrationError(
                f"revision {revision} failed: {first_line(exc)}; the database stays at "
                f"{', '.join(at) or 'base'}",
                kind="revision_failed",
                service=service,
                revision=revision,
                cause=first_line(exc),
            ) from exc
        log.info("%s: %s done in %.3f s", service, revision, time.perf_counter() - started)
        done.append(revision)
    after = records.current_revisions(connection, service)
    connection.commit()
    action = "downgraded" if down else "upgraded"
    return RunResult(service, action if done else "none", before, after, tuple(done))


def upgrade(config: DbConfig, service: str, target: str = "head") -> RunResult:
    """Upgrade ``service``'s database to ``target`` under the migration lock."""
    return _locked(config, service, lambda conn: _apply(config, service, conn, target, False))


def downgrade(config: DbConfig, service: str, target: str = "-1") -> RunResult:
    """Downgrade ``service``'s database to ``target`` under the migration lock."""
    return _locked(config, service, lambda conn: _apply(config, service, conn, target, True))


def stamp(config: DbConfig, service: str, revision: str) -> RunResult:
    """Record ``revision`` as applied without running anything (under the lock)."""

    def work(connection: Connection) -> RunResult:
        from alembic.runtime.migration import MigrationContext

        from shared_db.services import version_table

        history = read_history(config, service)
        require_sound(service, history)
        _check_target(service, history, revision)
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


def wait_for_database(config: DbConfig, service: str) -> None:
    """Connect until it works or ``config.database_wait_s`` passes (backoff to 2 s)."""
    url = config.parsed_url(service)
    deadline = time.monotonic() + config.database_wait_s
    delay = 0.1
    while True:
        try:
            connect_autocommit(url, timeout_s=config.connect_timeout_s, service=service).close()
            return
        except DatabaseError as exc:
            remaining = deadline - time.monotonic()
            if exc.kind != "database_unreachable":
                raise  # a wrong password or database does not fix itself
            if remaining <= 0:
                exc.message = f"gave up after {config.database_wait_s:g} s: {exc.message}"
                raise
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


def migrate_to_head(config: DbConfig, service: str) -> RunResult:
    """Startup: bring the database to head, exactly once across replicas.

    A lock-free check first: a database already at head takes no lock."""
    wait_for_database(config, service)
    history = read_history(config, service)
    require_sound(service, history)
    with connect(config, service) as connection:
        before = records.current_revisions(connection, service)
    refuse_unknown(service, history, before)
    if at_head(history, before):
        return RunResult(service, "none", before, before)
    result = upgrade(config, service)
    if result.action == "none":  # another replica migrated while this one waited
        return RunResult(service, "migrated elsewhere", before, result.after)
    return RunResult(service, result.action, before, result.after, result.steps)
