"""``migrate.plan``: what an upgrade would run, before it runs.

Per service: the pending revisions in the order the runner applies them, each with its
phase, its statements (rendered offline, as the lint does), the table lock each
statement takes (from PostgreSQL's table of lock modes), and how long it took where an
earlier run recorded it (e.g. staging's database, given with ``--timings-from``).
Rendered as text for a terminal or as Markdown for a pull-request comment.
"""

import re
from dataclasses import dataclass, field

from shared_db import records
from shared_db.connections import connect
from shared_db.errors import SharedDbError
from shared_db.urls import normalize, where
from sqlalchemy.engine import URL

from db_devtools.config import DevConfig

# (pattern, lock) in order: the first match wins. From the PostgreSQL documentation,
# "Explicit Locking": the lock each command takes on the table it names.
LOCKS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I | re.S), lock)
    for pattern, lock in (
        (r"^(SET|BEGIN|COMMIT)\b", ""),
        (r"^CREATE\s+(TABLE|SCHEMA|TYPE|SEQUENCE|EXTENSION)\b", "none (a new object)"),
        (r"^CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\b", "SHARE UPDATE EXCLUSIVE (writes go on)"),
        (r"^CREATE\s+(UNIQUE\s+)?INDEX\b", "SHARE (blocks writes)"),
        (r"^DROP\s+INDEX\s+CONCURRENTLY\b", "SHARE UPDATE EXCLUSIVE (writes go on)"),
        (r"^ALTER\s+TABLE\b.*\bVALIDATE\s+CONSTRAINT\b", "SHARE UPDATE EXCLUSIVE (writes go on)"),
        (r"^ALTER\s+TABLE\b.*\bFOREIGN\s+KEY\b", "SHARE ROW EXCLUSIVE (blocks writes)"),
        (r"^(ALTER|DROP)\s+(TABLE|INDEX)\b", "ACCESS EXCLUSIVE (blocks reads and writes)"),
        (r"^COMMENT\s+ON\b", "SHARE UPDATE EXCLUSIVE (writes go on)"),
        (r"^(INSERT|UPDATE|DELETE)\b", "ROW EXCLUSIVE (rows only)"),
        (r"^TRUNCATE\b", "ACCESS EXCLUSIVE (blocks reads and writes)"),
    )
)


def lock_of(statement: str) -> str:
    for pattern, lock in LOCKS:
        if pattern.search(statement):
            return lock
    return "unknown: see the PostgreSQL documentation (Explicit Locking)"


@dataclass(frozen=True)
class Statement:
    sql: str
    lock: str


@dataclass(frozen=True)
class Step:
    revision: str
    message: str
    phase: str | None
    statements: tuple[Statement, ...]
    seconds: float | None  # from an earlier run, where one was recorded


@dataclass
class ServicePlan:
    service: str
    current: tuple[str, ...]
    head: tuple[str, ...]
    steps: list[Step] = field(default_factory=list)
    note: str = ""  # why there is nothing to plan (at head, ahead...)

    @property
    def expected_s(self) -> float | None:
        known = [s.seconds for s in self.steps if s.seconds is not None]
        return sum(known) if known and len(known) == len(self.steps) else None


def _statements(rendered: str) -> list[Statement]:
    found = []
    for chunk in rendered.split(";\n"):
        lines = [line for line in chunk.strip().splitlines() if not line.startswith("--")]
        statement = " ".join(" ".join(lines).split())
        if statement and lock_of(statement):
            found.append(Statement(statement, lock_of(statement)))
    return found


def timings(config: DevConfig, service: str, sources: list[str]) -> dict[str, float]:
    """Recorded durations of ``service``'s revisions in the ``sources`` (database URLs:
    the database named, and the service's own database on that server)."""
    found: dict[str, float] = {}
    for source in sources:
        url = normalize(source)
        for database in dict.fromkeys((url.database, service)):
            target = url.set(database=database)
            try:
                with connect(config, service, target) as connection:
                    for rev, record in records.applied(connection, service).items():
                        if record.duration_s is not None:
                            found.setdefault(rev, record.duration_s)
            except SharedDbError:
                continue  # not there: another layout of databases
    return found


def plan(config: DevConfig, service: str, sources: list[str] | None = None) -> ServicePlan:
    """The plan of ``service``'s database (``config`` holds its URL)."""
    from alembic.script import ScriptDirectory
    from shared_db import runner
    from shared_db.alembic_config import alembic_config
    from shared_db.soundness import loaded
    from shared_db.status import read_state, status_of

    from db_devtools.workflow.lint import render_upgrade

    history = runner.sound_history(config, service)
    with connect(config, service) as connection:
        current, applied = read_state(connection, service)
    state = status_of(service, history, current, applied)
    result = ServicePlan(service, current, history.heads)
    if state.unknown or state.ahead:
        result.note = f"nothing to plan: the database is {state.state}"
        return result
    if state.pending == 0:
        result.note = "nothing to plan: at head"
        return result
    script = loaded(service, ScriptDirectory.from_config(alembic_config(config, service)))
    durations = timings(config, service, sources or [])
    for revision, _step in runner.plan_steps(script, service, current, "head", False):
        found = history.revisions[revision]
        rendered = render_upgrade(script, revision)
        result.steps.append(
            Step(
                revision,
                found.message,
                found.phase,
                tuple(_statements(rendered)),
                durations.get(revision),
            )
        )
    return result


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} s"


def as_text(plans: list[ServicePlan], database: dict[str, URL]) -> str:
    lines = []
    for p in plans:
        at = ", ".join(p.current) or "base"
        head = ", ".join(p.head)
        lines.append(f"{p.service} ({where(database[p.service])}): at {at}, head {head}")
        if p.note:
            lines.append(f"  {p.note}")
            continue
        lines.append(f"  {len(p.steps)} revision(s), expected {_seconds(p.expected_s)}")
        for step in p.steps:
            lines.append(
                f"  {step.revision} {step.message} [{step.phase or 'no phase'}] "
                f"(earlier: {_seconds(step.seconds)})"
            )
            for statement in step.statements:
                lines.append(f"      {statement.sql[:100]}")
                lines.append(f"        lock: {statement.lock}")
    return "\n".join(lines) + "\n"


def as_markdown(plans: list[ServicePlan], database: dict[str, URL]) -> str:
    lines = ["## Migration plan", ""]
    for p in plans:
        at = ", ".join(p.current) or "base"
        lines.append(f"### {p.service}")
        lines.append("")
        summary = p.note or f"{len(p.steps)} revision(s), expected {_seconds(p.expected_s)}"
        head = ", ".join(p.head)
        lines.append(f"`{where(database[p.service])}` at **{at}**, head **{head}**: {summary}")
        lines.append("")
        if p.note:
            continue
        lines.append("| revision | phase | statement | lock | earlier run |")
        lines.append("|---|---|---|---|---|")
        for step in p.steps:
            first = True
            for statement in step.statements or (Statement("(no statement)", ""),):
                sql = statement.sql[:120].replace("|", "\\|")
                revision = f"{step.revision} {step.message}" if first else ""
                phase = (step.phase or "**none**") if first else ""
                took = _seconds(step.seconds) if first else ""
                lines.append(f"| {revision} | {phase} | `{sql}` | {statement.lock} | {took} |")
                first = False
        lines.append("")
    return "\n".join(lines)
