"""Which tables and columns a revision touches, read from the operations its
``upgrade()`` asks for (recorded offline, nothing run): ``migrate.rebase`` warns when
the revisions it moves touch what the revisions they now follow touch too."""

import re
from typing import Any

from alembic.operations import ops

from db_devtools.workflow.changes import flatten, recorded_operations

# Tables named by hand-written SQL (op.execute): a heuristic, good enough for a warning.
_SQL_TABLE = re.compile(
    r"\b(?:TABLE|INTO|UPDATE|FROM|JOIN|ON|REFERENCES)\s+(?:ONLY\s+)?"
    r"(?:IF\s+(?:NOT\s+)?EXISTS\s+)?([A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?)",
    re.IGNORECASE,
)
_NOT_TABLES = frozenset({"only", "if", "select", "table", "conflict", "delete", "update"})


Touch = tuple[str, str]  # (table, column); column "" for the table itself


def _name(table: object, schema: object = None) -> str:
    return f"{schema}.{table}" if schema else str(table)


def _touched(operation: ops.MigrateOperation) -> set[Touch]:
    table = getattr(operation, "table_name", None) or getattr(operation, "source_table", None)
    schema = getattr(operation, "schema", None) or getattr(operation, "source_schema", None)
    found: set[Touch] = set()
    if table:
        found.add((_name(table, schema), ""))
    column = getattr(operation, "column_name", None)
    if isinstance(operation, ops.AddColumnOp):
        column = operation.column.name
    if table and column:
        found.add((_name(table, schema), str(column)))
    if isinstance(operation, ops.CreateIndexOp) and table:
        found |= {(_name(table, schema), c) for c in operation.columns if isinstance(c, str)}
    referent = getattr(operation, "referent_table", None)
    if referent:
        found.add((_name(referent, getattr(operation, "referent_schema", None)), ""))
    if isinstance(operation, ops.RenameTableOp):
        found.add((_name(operation.new_table_name, schema), ""))
    if isinstance(operation, ops.ExecuteSQLOp):
        statement = str(operation.sqltext)
        found |= {
            (name.lower().removeprefix("public."), "")
            for name in _SQL_TABLE.findall(statement)
            if name.lower() not in _NOT_TABLES
        }
    return found


def touched(script: Any, revision: str) -> set[Touch] | None:
    """The tables (``schema.table`` outside ``public``) and columns the revision's
    upgrade touches; ``None`` when it cannot be read without a database."""
    try:
        operations = recorded_operations(script, revision)
    except Exception:  # upgrade() needs a live database (op.get_bind())
        return None
    return {touch for operation in flatten(operations) for touch in _touched(operation)}


def overlap(mine: set[Touch], theirs: set[Touch]) -> list[str]:
    """The tables both touch, each with the columns both name: ``scores (status)``."""
    tables = sorted({t for t, _c in mine} & {t for t, _c in theirs})
    described = []
    for table in tables:
        columns = sorted(c for t, c in mine & theirs if t == table and c)
        described.append(f"{table} ({', '.join(columns)})" if columns else table)
    return described
