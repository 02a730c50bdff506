"""The schema (and rows) of a database as SQL statements: what a squashed baseline runs.

``pg_dump`` (from the same PostgreSQL binaries the project's local server uses) writes
the tables, indexes, constraints, types, functions, triggers, comments and rows
(``INSERT`` statements) of a scratch database that a history was replayed on, without
the migration runner's own tables, owners or privileges. Its script is cut into
statements here (quotes, dollar quotes and comments respected), without the ``SET``
lines and psql meta-commands that only matter to psql. The statements that take a
database back to empty (the baseline's downgrade) are read from the catalog.
"""

import os
import subprocess
from pathlib import Path

from psycopg.conninfo import make_conninfo
from shared_db.connections import connect_autocommit, psycopg_arguments
from shared_db.urls import where
from sqlalchemy.engine import URL

from db_devtools.config import DevConfig
from db_devtools.errors import ProvisioningError, WorkflowError
from db_devtools.provisioning.binaries import find_bin_dir
from db_devtools.workflow.fingerprint import runner_tables

# Functions are created before the tables their bodies may name (pg_dump's order).
PRELUDE = "SET LOCAL check_function_bodies = false"


def pg_dump_binary(config: DevConfig) -> Path:
    try:
        binary = find_bin_dir(config.pg_bin) / "pg_dump"
    except ProvisioningError as exc:
        raise WorkflowError(f"pg_dump is not available: {exc.message}", kind="no_pg_dump") from None
    if not os.access(binary, os.X_OK):
        raise WorkflowError(f"pg_dump is not available (not in {binary.parent})", kind="no_pg_dump")
    return binary


def dump_sql(config: DevConfig, url: URL, service: str) -> str:
    """The plain SQL script of ``pg_dump`` for the database at ``url``."""
    arguments = psycopg_arguments(url)
    password = arguments.pop("password", None)
    command = [
        str(pg_dump_binary(config)),
        "--dbname",
        make_conninfo(**{k: v for k, v in arguments.items() if v is not None}),
        "--no-owner",
        "--no-privileges",
        "--no-tablespaces",
        "--no-security-labels",
        "--no-publications",
        "--no-subscriptions",
        "--column-inserts",
        *(f"--exclude-table=*.{table}" for table in runner_tables(service)),
    ]
    env = os.environ | ({"PGPASSWORD": str(password)} if password else {})
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkflowError(f"pg_dump did not run: {exc}", kind="pg_dump_failed") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise WorkflowError(
            f"pg_dump failed on {where(url)}: {reason}", kind="pg_dump_failed", cause=reason
        )
    return result.stdout


def split_statements(script: str) -> list[str]:
    """The statements of an SQL script, without comments and psql meta-commands (a line
    starting with a backslash between statements); quotes, quoted identifiers and dollar
    quotes are respected, so a ``;`` inside them does not end a statement."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if ch == "\\" and not "".join(current).strip():
            end = script.find("\n", i)
            i = n if end < 0 else end + 1  # a psql meta-command: its whole line
            continue
        if ch == "-" and script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end  # the newline is kept
            continue
        if ch == "/" and script.startswith("/*", i):
            i = _block_comment_end(script, i)
            continue
        if ch in "'\"":
            end = _quoted_end(script, i, ch)
            current.append(script[i:end])
            i = end
            continue
        if ch == "$":
            tag = _dollar_tag(script, i)
            if tag is not None:
                close = script.find(tag, i + len(tag))
                end = n if close < 0 else close + len(tag)
                current.append(script[i:end])
                i = end
                continue
        if ch == ";":
            statements.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _quoted_end(script: str, start: int, quote: str) -> int:
    """The index after a quoted string or identifier starting at ``start`` (``''`` and
    ``""`` are escaped quotes; in an ``E'...'`` string a backslash escapes too)."""
    escapes = quote == "'" and start > 0 and script[start - 1] in "eE"
    i = start + 1
    while i < len(script):
        if escapes and script[i] == "\\":
            i += 2
            continue
        if script[i] == quote:
            if script.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    return len(script)


def _dollar_tag(script: str, start: int) -> str | None:
    """``$tag$`` (or ``$$``) starting at ``start``; ``None`` for a parameter like ``$1``."""
    if start > 0 and (script[start - 1].isalnum() or script[start - 1] == "_"):
        return None
    end = start + 1
    while end < len(script) and (script[end].isalnum() or script[end] == "_"):
        end += 1
    tag = script[start : end + 1]
    if end < len(script) and script[end] == "$" and not tag[1:2].isdigit():
        return tag
    return None


def _block_comment_end(script: str, start: int) -> int:
    depth, i = 0, start
    while i < len(script):
        if script.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif script.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(script)


def _psql_only(statement: str) -> bool:
    """Session settings for psql's restore (the runner sets its own)."""
    head = statement.split(None, 1)[0].upper()
    return head == "SET" or statement.startswith("SELECT pg_catalog.set_config(")


def schema_statements(config: DevConfig, url: URL, service: str) -> list[str]:
    """The statements that rebuild the database at ``url`` (its schema and rows) from
    empty, in pg_dump's order: schemas, types, functions, tables, rows, constraints,
    indexes, triggers."""
    body = [s for s in split_statements(dump_sql(config, url, service)) if not _psql_only(s)]
    return [PRELUDE, *body]


def drop_statements(url: URL, service: str) -> list[str]:
    """The statements that take the database at ``url`` back to empty: its own schemas
    dropped whole, then what it made in ``public`` (tables, views, sequences, routines,
    types), then the extensions it created. ``IF EXISTS ... CASCADE`` everywhere, so the
    order of dependencies does not matter."""
    skip = runner_tables(service)
    with connect_autocommit(url, service=service) as conn:
        rows = conn.execute(_DROPPABLE, {"skip": skip}).fetchall()
    return [str(row[0]) for row in rows]


_OWN = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"
_DROPPABLE = f"""
SELECT format('DROP SCHEMA IF EXISTS %%I CASCADE', nspname), 1, nspname
FROM pg_namespace
WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
  AND nspname NOT LIKE 'pg\\_%%'
UNION ALL
SELECT format('DROP %%s IF EXISTS public.%%I CASCADE',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE'
                             ELSE 'TABLE' END, c.relname), 2, c.relname
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND c.relname <> ALL(%(skip)s) AND {_OWN.format(oid="c.oid")}
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                                        AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT format('DROP %%s IF EXISTS public.%%I(%%s) CASCADE',
              CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                             ELSE 'FUNCTION' END,
              p.proname, pg_get_function_identity_arguments(p.oid)), 3, p.proname
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND {_OWN.format(oid="p.oid")}
UNION ALL
SELECT format('DROP %%s IF EXISTS public.%%I CASCADE',
              CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname), 4, t.typname
FROM pg_type t
WHERE t.typnamespace = 'public'::regnamespace AND {_OWN.format(oid="t.oid")}
  AND t.typtype IN ('e', 'd', 'r', 'm', 'c')
  AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
UNION ALL
SELECT format('DROP EXTENSION IF EXISTS %%I CASCADE', extname), 5, extname
FROM pg_extension WHERE extname <> 'plpgsql'
ORDER BY 2, 3
"""
