"""Synthetic revision histories for the benchmarks: long, with branches and merges."""

import shutil
from pathlib import Path

from shared_db.config import PACKAGED_MIGRATIONS

INI = """[alembic]
script_location = %(here)s/{service}
version_locations = %(here)s/{service}/versions
path_separator = os
"""

REVISION = '''"""Synthetic revision {rev}.

Revision ID: {rev}
Revises: {down_text}
"""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


def _ident(number: int, width: int) -> str:
    return f"{number:0{width}d}"


def write_history(
    root: Path, service: str, count: int, *, fork_every: int = 25, tables_until: int = 0
) -> Path:
    """``count`` revisions of ``service`` under ``root``: a main line that forks into two
    parallel revisions every ``fork_every`` revisions and merges them right after.

    Each non-merge revision creates one small table, so an upgrade does real DDL; with
    ``tables_until``, revisions numbered above it add a column to one of the tables made
    before instead (a long history over a schema that stopped growing in tables).
    Writes ``root/<service>/{env.py, script.py.mako, versions/}`` (the packaged env.py)
    and ``root/alembic_<service>.ini`` for raw Alembic. Returns the versions folder.
    """
    width = max(4, len(str(count)))
    target = root / service
    versions = target / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    for name in ("env.py", "script.py.mako"):
        shutil.copy(PACKAGED_MIGRATIONS / service / name, target / name)
    (root / f"alembic_{service}.ini").write_text(INI.format(service=service))
    number, tip = 1, None
    made_tables: list[str] = []
    while number <= count:
        fork = number % fork_every == 0 and number + 2 <= count
        parents: list[tuple[str, ...]] = (
            [(tip,), (tip,)] if fork and tip else [(tip,) if tip else ()]
        )
        made = []
        for down in parents:
            rev = _ident(number, width)
            if tables_until and number > tables_until and made_tables:
                onto = made_tables[number % len(made_tables)]
                _write(versions, rev, down, create=False, column_on=onto)
            else:
                _write(versions, rev, down, create=True)
                made_tables.append(f"bench_{rev}")
            made.append(rev)
            number += 1
        if len(made) == 2 and number <= count:
            rev = _ident(number, width)
            _write(versions, rev, tuple(made), create=False)
            made = [rev]
            number += 1
        tip = made[-1]
    return versions


def _write(
    versions: Path,
    rev: str,
    down: tuple[str | None, ...],
    *,
    create: bool,
    column_on: str = "",
) -> None:
    parents = tuple(d for d in down if d)
    quoted = [f'"{parent}"' for parent in parents]
    down_literal = {0: "None", 1: "".join(quoted)}.get(len(quoted), f"({', '.join(quoted)})")
    table = f"bench_{rev}"
    if create:
        upgrade = (
            f'    op.create_table("{table}", sa.Column("id", sa.BigInteger(), primary_key=True), '
            f'sa.Column("note", sa.Text()))'
        )
        downgrade = f'    op.drop_table("{table}")'
    elif column_on:
        upgrade = f'    op.add_column("{column_on}", sa.Column("c_{rev}", sa.Text()))'
        downgrade = f'    op.drop_column("{column_on}", "c_{rev}")'
    else:
        upgrade = downgrade = "    pass"
    (versions / f"{rev}_synthetic.py").write_text(
        REVISION.format(
            rev=rev,
            down=down_literal,
            down_text=", ".join(parents) or "",
            upgrade=upgrade,
            downgrade=downgrade,
        )
    )
