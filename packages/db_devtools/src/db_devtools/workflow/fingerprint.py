"""A schema fingerprint: what a history built in a database, read from the catalog.

Schemas, extensions, tables and views (with their columns: type, default, nullability,
identity, generation, collation, in order), constraints, indexes, sequences (and their
position), enums, domains, composite types, functions and procedures, triggers, row
level security policies, comments, and the rows of every table. Two databases with
equal fingerprints hold the same schema and the same data, however they got there:
``migrate.squash`` proves its baseline with it, independently of the ``pg_dump`` output
the baseline is made of. The migration runner's own tables (version, records) are left
out: they say how a database got there, not what it is.
"""

import hashlib
import json
from typing import Any

from shared_db.connections import connect_autocommit
from shared_db.records import records_table
from shared_db.services import version_table
from sqlalchemy.engine import URL

Fingerprint = dict[str, list[tuple[Any, ...]]]

_USER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
)
# Objects created by an extension are the extension's, not the history's.
_NOT_EXTENSION = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = {catalog}::regclass "
    "AND d.objid = {oid} AND d.deptype = 'e')"
)

_QUERIES: dict[str, str] = {
    "schemas": f"SELECT n.nspname FROM pg_namespace n WHERE {_USER}",
    "extensions": "SELECT extname, n.nspname FROM pg_extension e "
    "JOIN pg_namespace n ON n.oid = e.extnamespace",
    "relations": f"""SELECT n.nspname, c.relname, c.relkind, c.relpersistence,
            c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
          AND c.relname <> ALL(%(skip)s)
          AND {_NOT_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}""",
    # Column order by position among the live columns: a column dropped by some
    # revision leaves a gap in attnum that a rebuilt table does not have.
    "columns": f"""SELECT n.nspname, c.relname,
            row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
            a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
            pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
            CASE WHEN a.attcollation <> t.typcollation THEN co.collname END
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE {_USER} AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND c.relname <> ALL(%(skip)s)
          AND {_NOT_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}""",
    "constraints": f"""SELECT n.nspname, coalesce(c.relname, t.typname), k.conname,
            k.contype, pg_get_constraintdef(k.oid, true), k.convalidated
        FROM pg_constraint k
        JOIN pg_namespace n ON n.oid = k.connamespace
        LEFT JOIN pg_class c ON c.oid = k.conrelid
        LEFT JOIN pg_type t ON t.oid = k.contypid
        WHERE {_USER} AND coalesce(c.relname, '') <> ALL(%(skip)s)
          AND {_NOT_EXTENSION.format(catalog="'pg_constraint'", oid="k.oid")}""",
    "indexes": f"""SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes n
        WHERE {_USER.replace("n.nspname", "n.schemaname")} AND tablename <> ALL(%(skip)s)""",
    "sequences": f"""SELECT s.schemaname, s.sequencename, s.data_type::text, s.start_value,
            s.min_value, s.max_value, s.increment_by, s.cycle, s.cache_size, s.last_value,
            (SELECT dc.relname || '.' || a.attname FROM pg_depend d
               JOIN pg_class dc ON dc.oid = d.refobjid
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
               AND d.deptype IN ('a', 'i') LIMIT 1)
        FROM pg_sequences s
        JOIN pg_namespace n ON n.nspname = s.schemaname
        JOIN pg_class c ON c.relname = s.sequencename AND c.relnamespace = n.oid
        WHERE {_USER}""",
    "enums": f"""SELECT n.nspname, t.typname,
            array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE {_USER} GROUP BY n.nspname, t.typname""",
    "domains": f"""SELECT n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod),
            t.typnotnull, t.typdefault
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {_USER} AND t.typtype = 'd'
          AND {_NOT_EXTENSION.format(catalog="'pg_type'", oid="t.oid")}""",
    "routines": f"""SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
            p.prokind,
            CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_USER} AND {_NOT_EXTENSION.format(catalog="'pg_proc'", oid="p.oid")}""",
    "triggers": f"""SELECT n.nspname, c.relname, g.tgname, pg_get_triggerdef(g.oid, true),
            g.tgenabled
        FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER} AND NOT g.tgisinternal""",
    "views": f"""SELECT n.nspname, c.relname, pg_get_viewdef(c.oid, true)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER} AND c.relkind IN ('v', 'm')""",
    "policies": """SELECT schemaname, tablename, policyname, permissive, roles::text[],
            cmd, qual, with_check FROM pg_policies""",
    "comments": f"""SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
        FROM pg_description d
        WHERE d.classoid IN ('pg_class'::regclass, 'pg_type'::regclass,
                             'pg_proc'::regclass, 'pg_constraint'::regclass,
                             'pg_namespace'::regclass, 'pg_trigger'::regclass)
          AND NOT EXISTS (SELECT 1 FROM pg_namespace n
                          WHERE n.oid = d.objoid AND d.classoid = 'pg_namespace'::regclass
                            AND NOT ({_USER}))
          AND NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n
                            ON n.oid = c.relnamespace
                          WHERE c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
                            AND NOT ({_USER}))
          AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n
                            ON n.oid = p.pronamespace
                          WHERE p.oid = d.objoid AND d.classoid = 'pg_proc'::regclass
                            AND NOT ({_USER}))
          AND NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n
                            ON n.oid = t.typnamespace
                          WHERE t.oid = d.objoid AND d.classoid = 'pg_type'::regclass
                            AND NOT ({_USER}))
          AND NOT EXISTS (SELECT 1 FROM pg_depend e
                          WHERE e.objid = d.objoid AND e.deptype = 'e')""",
}


def runner_tables(service: str) -> list[str]:
    """The migration runner's tables of ``service``: left out of fingerprints and dumps."""
    return [version_table(service), records_table(service), f"alembic_checksums_{service}"]


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, int | float | bool | str) or value is None:
        return value
    return str(value)


def fingerprint(url: URL, service: str) -> Fingerprint:
    """The fingerprint of the database at ``url`` (``service``'s runner tables left out)."""
    skip = runner_tables(service)
    found: Fingerprint = {}
    with connect_autocommit(url, service=service) as conn:
        for name, query in _QUERIES.items():
            rows = conn.execute(query, {"skip": skip}).fetchall()
            found[name] = sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)
        tables = [
            (schema, table)
            for schema, table, kind, *_rest in found["relations"]
            if kind in ("r", "p")
        ]
        for schema, table in tables:
            rows = conn.execute(
                f'SELECT to_jsonb(t)::text FROM "{schema}"."{table}" t'  # names from the catalog
            ).fetchall()
            found[f"rows {schema}.{table}"] = sorted((row[0],) for row in rows)
    return found


def digest(found: Fingerprint) -> str:
    """A short, stable name of a fingerprint (``sha256:`` and 12 hex digits)."""
    text = json.dumps(sorted(found.items()), default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def differences(left: Fingerprint, right: Fingerprint, limit: int = 3) -> list[str]:
    """What differs, in a few short phrases (for an error message)."""
    found = []
    for key in sorted(set(left) | set(right)):
        only_left = set(left.get(key, [])) - set(right.get(key, []))
        only_right = set(right.get(key, [])) - set(left.get(key, []))
        for row in sorted(only_left, key=repr)[:1]:
            found.append(f"{key}: {row!r} only in the first")
        for row in sorted(only_right, key=repr)[:1]:
            found.append(f"{key}: {row!r} only in the second")
    return found[:limit]


def counts(found: Fingerprint) -> dict[str, int]:
    """How many of each kind: tables, indexes, constraints, enums, functions, rows."""
    return {
        "tables": sum(1 for row in found["relations"] if row[2] in ("r", "p")),
        "indexes": len(found["indexes"]),
        "constraints": sum(1 for row in found["constraints"] if row[3] != "n"),  # not NOT NULL
        "enums": len(found["enums"]),
        "functions": len(found["routines"]),
        "rows": sum(len(rows) for key, rows in found.items() if key.startswith("rows ")),
    }
