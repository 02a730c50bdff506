"""Read-only views of a history for developers: the revision list and offline SQL."""

import io

from shared_db import records
from shared_db.connections import connect
from shared_db.errors import MigrationError
from shared_db.history import sort_ids
from shared_db.records import Applied
from shared_db.services import check_service

from db_devtools.config import DevConfig
from db_devtools.workflow.history_cache import read_history


def history_lines(config: DevConfig, service: str, *, applied: bool = False) -> list[str]:
    """Newest first, like ``alembic history``: ``parents -> id (markers), message``; with
    ``applied`` (``config`` holds the database's URL), when each revision was applied to
    the database and how long it took, from the runner's records."""
    history = read_history(config, check_service(service))
    records_of: dict[str, Applied] = {}
    if applied:
        with connect(config, service) as connection:
            records_of = records.applied(connection, service)
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
        if revision.phase:
            markers.append(f"[{revision.phase}]")
        parents = ", ".join(revision.down) or "<base>"
        suffix = " ".join(markers)
        line = f"{parents} -> {rev_id}{' ' + suffix if suffix else ''}, {revision.message}"
        if applied:
            record = records_of.get(rev_id)
            line += f"  ({_when(record)})"
        lines.append(line)
    return lines


def _when(record: Applied | None) -> str:
    if record is None:
        return "not applied"
    took = f", {record.duration_s:.2f} s" if record.duration_s is not None else ""
    return f"applied {record.applied_at:%Y-%m-%d %H:%M:%S}{took}"


def offline_sql(config: DevConfig, service: str, revision_range: str) -> str:
    """The SQL ``upgrade`` (or ``downgrade``, for ``HIGH:LOW``) of a range, without a database.

    ``revision_range`` is ``A:B``, or a single target meaning ``base:target``."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError
    from shared_db.alembic_config import alembic_config
    from shared_db.soundness import loaded, sound_history

    check_service(service)
    target = revision_range if ":" in revision_range else f"base:{revision_range}"
    start, end = target.split(":", 1)
    history = sound_history(config, service)  # a history Alembic would reject: one line
    known = set(history.revisions) | {"base", "head", "heads"}
    for rev in (start, end):
        if rev not in known:
            raise MigrationError(
                f"unknown revision {rev!r}", kind="unknown_target", service=service, revision=rev
            )
    buffer = io.StringIO()
    alembic = alembic_config(config, service)
    loaded(service, ScriptDirectory.from_config(alembic))  # every file imports
    alembic.output_buffer = buffer
    downgrade = start != "base" and end in history.ancestors(start) and start != end
    try:
        if downgrade:
            command.downgrade(alembic, target, sql=True)
        else:
            command.upgrade(alembic, target, sql=True)
    except CommandError as exc:
        raise MigrationError(
            f"cannot render SQL for {revision_range}: {exc}", kind="sql_failed", service=service
        ) from exc
    return buffer.getvalue()
