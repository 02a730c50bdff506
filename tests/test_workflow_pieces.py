"""The pieces under rebase and squash that need neither git nor a database: header
rewrites of revision files, the SQL statement splitter, the head marker's checks, and
which revisions a rebase moves where."""

from pathlib import Path

import pytest
from db_devtools.errors import WorkflowError
from db_devtools.workflow import head_marker
from db_devtools.workflow.rebase import plan_moves
from db_devtools.workflow.rewrite import rewrite_header
from db_devtools.workflow.schema_dump import split_statements
from db_devtools.workflow.validate import validate_directory
from dev_tasks.hints import for_problem
from helpers import config_for
from shared_db.history import History, Revision, parse_revision_file, read_directory
from shared_db.services import SERVICES

ANNOTATED = '''"""Add the émoji column — with a tab\tand "quotes".

Revision ID: 0012
Revises: 0009, 0008
Create Date: 2026-01-01
"""

from collections.abc import Sequence

revision: str = "0012"
down_revision: str | Sequence[str] | None = ('0009',   '0008')  # keep me
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0004"
phase: str = "expand"

EMOJI = "🎉 revision = '0012'"


def upgrade() -> None:
    pass  # revision = "0012"
'''


def test_the_header_is_rewritten_and_every_other_byte_kept() -> None:
    new = rewrite_header(ANNOTATED, revision="0015", down=("0014", "0013"), depends_on=("0011",))
    assert new == (
        ANNOTATED.replace("Revision ID: 0012", "Revision ID: 0015")
        .replace("Revises: 0009, 0008", "Revises: 0014, 0013")
        .replace('revision: str = "0012"', 'revision: str = "0015"')
        .replace("('0009',   '0008')", "('0014',   '0013')")  # its own quotes and spacing
        .replace(
            'depends_on: str | Sequence[str] | None = "0004"',
            'depends_on: str | Sequence[str] | None = "0011"',
        )
    )
    parsed = parse_revision_file_from(new)
    assert (parsed.id, parsed.down, parsed.depends_on) == ("0015", ("0014", "0013"), ("0011",))


def parse_revision_file_from(source: str) -> Revision:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "0015_x.py"
        path.write_text(source, encoding="utf-8")
        return parse_revision_file(path, check_syntax=True)


def test_a_merge_becomes_a_single_parent_and_back() -> None:
    single = rewrite_header(ANNOTATED, down=("0014",))
    # The file's own quotes are kept.
    assert "down_revision: str | Sequence[str] | None = '0014'  # keep me" in single
    assert "Revises: 0014\n" in single
    merged = rewrite_header(single, down=("0014", "0013"))
    assert "down_revision: str | Sequence[str] | None = ('0014', '0013')  # keep me" in merged
    base = rewrite_header(single, down=())
    assert "down_revision: str | Sequence[str] | None = None  # keep me" in base


def test_a_plain_file_and_its_quotes() -> None:
    source = "'''doc'''\nrevision = '0003'\ndown_revision = None\n"
    assert rewrite_header(source, revision="0004", down=("0003",)) == (
        "'''doc'''\nrevision = '0004'\ndown_revision = \"0003\"\n"
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ('revision = "00" + "12"\ndown_revision = None\n', "no literal `revision"),
        ('revision = "0012"\ndown_revision = PARENT\n', "its down_revision is not a literal"),
        ('revision = "0012"\n', "it declares no down_revision"),
        ("def (:\n", "syntax error on line 1"),
    ],
)
def test_what_cannot_be_rewritten_says_why(source: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        rewrite_header(source, revision="0013", down=("0011",))


def test_statements_are_split_where_sql_ends_them() -> None:
    script = (
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n"
        "SET statement_timeout = 0;\n"
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $fn$ SELECT 'a;b' -- c; d\n $fn$;\n"
        "INSERT INTO t VALUES ('it''s; fine', E'back\\'s; slash;', \"odd;name\");\n"
        "/* a; /* nested; */ comment */ SELECT $1;\n"
        "SELECT $$;$$ ;\n\\unrestrict abc123\n"
    )
    assert split_statements(script) == [
        "SET statement_timeout = 0",
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $fn$ SELECT 'a;b' -- c; d\n $fn$",
        "INSERT INTO t VALUES ('it''s; fine', E'back\\'s; slash;', \"odd;name\")",
        "SELECT $1",
        "SELECT $$;$$",
    ]


# -- the head marker -----------------------------------------------------------------


def _history(tmp_path: Path) -> Path:
    versions = tmp_path / "scoring_engine" / "versions"
    versions.mkdir(parents=True)
    for rev, down in (("0001", None), ("0002", "0001")):
        parent = f'"{down}"' if down else "None"
        (versions / f"{rev}_step.py").write_text(
            f'"""step {rev}"""\nrevision = "{rev}"\ndown_revision = {parent}\n'
        )
    return versions


def test_the_marker_is_checked_against_the_head(tmp_path: Path) -> None:
    versions = _history(tmp_path)
    assert validate_directory("scoring_engine", versions).problems == [], "no marker: unchecked"
    head_marker.write(versions, "0002_step")
    assert validate_directory("scoring_engine", versions).problems == []

    marker = versions.parent / "head.txt"
    marker.write_text("0001_step\n")
    (stale,) = validate_directory("scoring_engine", versions).problems
    assert for_problem(stale) == (
        "scoring_engine: the head marker head.txt says '0001_step', but the head is "
        f"0002_step.py; run: echo 0002_step > {marker}"
    )
    marker.write_text("<<<<<<< HEAD\n0002_step\n=======\n0002_other\n>>>>>>> main\n")
    (conflict,) = validate_directory("scoring_engine", versions).problems
    assert for_problem(conflict) == (
        "scoring_engine: the head marker head.txt holds git's conflict markers: a merge or "
        "rebase stopped on it (two branches each added revisions); move this branch's "
        "revisions on top of the other side's: run: invoke migrate.rebase --service "
        "scoring_engine"
    )
    # A history that is broken itself is reported as such, not as a wrong marker.
    (versions / "0003_fork.py").write_text(
        '"""fork"""\nrevision = "0003"\ndown_revision = "0001"\n'
    )
    assert [p.kind for p in validate_directory("scoring_engine", versions).problems] == [
        "multiple_heads"
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_each_history_of_the_project_has_a_marker_naming_its_head(service: str) -> None:
    versions = config_for().versions_dir(service)
    marker = head_marker.read(versions)
    assert marker is not None and not marker.conflicted
    assert marker.text == f"{head_marker.expected(read_directory(versions))}\n"


# -- which revisions a rebase moves, and where -------------------------------------------


def _write(folder: Path, rev: str, *down: str, depends_on: str | None = None) -> Revision:
    parents = "None" if not down else f'"{down[0]}"' if len(down) == 1 else repr(down)
    path = folder / f"{rev}_{rev}.py"
    path.write_text(
        f'"""{rev}\n\nRevision ID: {rev}\nRevises: {", ".join(down)}\n"""\n'
        f'revision = "{rev}"\ndown_revision = {parents}\n'
        f"depends_on = {depends_on!r}\n"
    )
    return parse_revision_file(path)


def _base(tmp_path: Path, *chain: str) -> History:
    folder = tmp_path / "base"
    folder.mkdir()
    return History.from_revisions(
        _write(folder, rev, *((chain[i - 1],) if i else ())) for i, rev in enumerate(chain)
    )


def test_a_branch_with_a_merge_moves_as_a_whole(tmp_path: Path) -> None:
    base = _base(tmp_path, "0001", "0002", "0003")
    mine = tmp_path / "mine"
    mine.mkdir()
    checkout = [
        _write(mine, "0003a", "0002"),
        _write(mine, "0003b", "0002"),
        _write(mine, "0004", "0003a", "0003b", depends_on="0003a"),
    ]
    moves, landed, forks = plan_moves("scoring_engine", "main", base, checkout)
    assert [(m.old.id, m.new_id, m.new_down, m.new_depends_on) for m in moves] == [
        ("0003a", "0004", ("0003",), ()),
        ("0003b", "0005", ("0003",), ()),
        ("0004", "0006", ("0004", "0005"), ("0004",)),
    ]
    assert (landed, forks) == (["0003"], ["0002"])
    assert "Revises: 0004, 0005\n" in moves[2].source


def test_a_merge_with_the_other_side_becomes_a_single_parent(tmp_path: Path) -> None:
    base = _base(tmp_path, "0001", "0002", "0003")
    mine = tmp_path / "mine"
    mine.mkdir()
    checkout = [_write(mine, "0003x", "0002"), _write(mine, "0004x", "0003x", "0002")]
    moves, _landed, _forks = plan_moves("scoring_engine", "main", base, checkout)
    assert [(m.new_id, m.new_down) for m in moves] == [("0004", ("0003",)), ("0005", ("0004",))]


def test_what_a_rebase_cannot_move_says_why(tmp_path: Path) -> None:
    base = _base(tmp_path, "0001", "0002")
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(WorkflowError, match="revises 0009, which main does not have") as raised:
        plan_moves("scoring_engine", "main", base, [_write(mine, "0003", "0009")])
    assert raised.value.kind == "unknown_parent"
    # ... unless an earlier stop of a git rebase moved it: then it is below main's head.
    moves, _landed, _forks = plan_moves(
        "scoring_engine", "HEAD", base, [_write(mine, "0004", "0009")], frozenset({"0009"})
    )
    assert [(m.new_id, m.new_down) for m in moves] == [("0003", ("0002",))]
    two = [_write(mine, "0005", "0001"), _write(mine, "0006", "0001")]
    with pytest.raises(WorkflowError, match="the revisions to move have 2 heads") as raised:
        plan_moves("scoring_engine", "main", base, two)
    assert raised.value.kind == "moved_heads"


def test_revisions_on_top_already_do_not_move(tmp_path: Path) -> None:
    base = _base(tmp_path, "0001", "0002")
    mine = tmp_path / "mine"
    mine.mkdir()
    assert plan_moves("scoring_engine", "main", base, [_write(mine, "0003", "0002")])[0] == []
