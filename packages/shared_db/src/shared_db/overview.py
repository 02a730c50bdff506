"""Read-only views of a service's migrations: status, history, offline SQL."""

import io
from dataclasses import dataclass

from alembic import command
from alembic.util.exc import CommandError
from sqlalchemy.engine import URL

from shared_db import commands
from shared_db.config import alembic_config
from shared_db.errors import MigrationError
from shared_db.history import History, read_history, sort_ids
from shared_db.services import check_service


@dataclass(frozen=True)
class Status:
    service: str
    database: tuple[str, ...]
    head: tuple[str, ...]
    pending: int | None  # None: the database is at a revision this code does not know
    unknown: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        if self.unknown:
            return f"unknown revision {', '.join(self.unknown)} (migrated by newer code?)"
        if self.pending == 0:
            return "at head"
        if not self.database:
            return "empty"
        return "behind"


def pending_revisions(history: History, current: tuple[str, ...]) -> set[str]:
    """Revisions between ``current`` and the heads: what ``upgrade head`` would apply."""
    applied: set[str] = set()
    for revision in current:
        applied |= history.ancestors(revision)
    wanted: set[str] = set()
    for head in history.heads:
        wanted |= history.ancestors(head)
    return wanted - applied


def status(service: str, url: str | URL | None = None) -> Status:
    history = read_history(check_service(service))
    current = commands.current(service, url)
    unknown = tuple(rev for rev in current if rev not in history.revisions)
    if unknown:
        return Status(service, current, history.heads, None, unknown)
    return Status(service, current, history.heads, len(pending_revisions(history, current)))


def history_lines(service: str) -> list[str]:
    """Newest first, like ``alembic history``: ``parents -> id (markers), message``."""
    history = read_history(check_service(service))
    heads, bases = set(history.heads), set(history.bases)
    branch_points, merge_points = set(history.branch_points()), set(history.merge_points())
    order = history.topological()
    order += sort_ids(set(history.revisions) - set(order))  # cycles, if any
    lines = []
    for rev_id in reversed(order):
        revision = history.revisions[rev_id]
        markers = [f"({label})" for label in revision.branch_labels]
        markers += ["(head)"] * (rev_id in heads) + ["(base)"] * (rev_id in bases)
        markers += ["(branchpoint)"] * (rev_id in branch_points)
        markers += ["(mergepoint)"] * (rev_id in merge_points)
        parents = ", ".join(revision.down) or "<base>"
        suffix = " ".join(markers)
        lines.append(f"{parents} -> {rev_id}{' ' + suffix if suffix else ''}, {revision.message}")
    return lines


def offline_sql(service: str, revision_range: str) -> str:
    """The SQL ``upgrade`` (or ``downgrade``, for ``HIGH:LOW``) of a range, without a database.

    ``revision_range`` is ``A:B``, or a single target meaning ``base:target``."""
    check_service(service)
    target = revision_range if ":" in revision_range else f"base:{revision_range}"
    start, end = target.split(":", 1)
    history = read_history(service)
    known = set(history.revisions) | {"base", "head", "heads"}
    for rev in (start, end):
        if rev not in known:
            raise MigrationError(
                f"unknown revision {rev!r} in {service}; "
                f"see: invoke migrate.history --service {service}"
            )
    buffer = io.StringIO()
    config = alembic_config(service)
    config.output_buffer = buffer
    downgrade = start != "base" and end in history.ancestors(start) and start != end
    try:
        if downgrade:
            command.downgrade(config, target, sql=True)
        else:
            command.upgrade(config, target, sql=True)
    except CommandError as exc:
        raise MigrationError(f"{service}: cannot render SQL for {revision_range}: {exc}") from exc
    return buffer.getvalue()
