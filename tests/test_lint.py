"""migrate.lint: squawk on the SQL of each revision, with reviewed per-revision exceptions."""

from pathlib import Path

import pytest
from db_devtools.config import DevConfig
from db_devtools.errors import WorkflowError
from db_devtools.workflow import lint
from helpers import VERSIONS, Repo, alembic_script, head, invoke
from shared_db.config import DbConfig
from shared_db.history import read_history

# The packaged histories, no cache, no database.
CONFIG = DevConfig(caller="test")


def test_a_range_of_the_real_history() -> None:
    findings = lint.lint(CONFIG, "scoring_engine", "0001:0002")
    assert [(f.revision, f.path.name, f.rule) for f in findings] == [
        ("0002", "0002_add_status_column.py", "prefer-text-field")
    ]
    assert lint.lint(CONFIG, "scoring_engine", "base:0001") == []


def test_range_arithmetic() -> None:
    history = read_history(DbConfig(), "scoring_engine")
    # 0008 is on the mockups branch: the other branch's 0007 and 0009 are above it.
    assert lint.revisions_in_range(history, "0008:0010") == ["0007", "0009", "0010"]
    later = lint.revisions_in_range(history, "0010:head")
    assert (later or ["0010"])[-1:] == list(head("scoring_engine"))
    assert lint.revisions_in_range(history, "0008:head") == ["0007", "0009", "0010", *later]
    assert lint.revisions_in_range(history, "base:0002") == ["0001", "0002"]
    with pytest.raises(WorkflowError, match=r"a range is A:B, not '0002'"):
        lint.revisions_in_range(history, "0002")
    with pytest.raises(WorkflowError, match="unknown revision '9999' in the range 0001:9999"):
        lint.revisions_in_range(history, "0001:9999")


def test_rendered_sql_sets_the_session_timeouts() -> None:
    rendered = lint.render_upgrade(alembic_script(DbConfig(), "scoring_engine"), "0002")
    assert rendered.startswith("SET lock_timeout = '2s';")
    assert "ALTER TABLE scores ADD COLUMN status VARCHAR(16) DEFAULT 'pending' NOT NULL" in rendered


INDEX_REVISION = '''"""Index scores by value.

Revision ID: 0011
"""

from alembic import op
{marker}
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    op.create_index("ix_scores_value", "scores", ["value"])


def downgrade() -> None:
    op.drop_index("ix_scores_value", table_name="scores")
'''

INDEX_FILE = "0011_index_scores_value.py"


def _write(repo: Repo, marker: str = "") -> Path:
    """The revision, written by hand, and the head marker naming it (as validate asks)."""
    path = repo.path / VERSIONS / INDEX_FILE
    path.write_text(INDEX_REVISION.format(marker=marker))
    (path.parent.parent / "head.txt").write_text(f"{path.stem}\n")
    return path


def test_new_revisions_are_linted_and_a_reviewed_marker_allows_a_rule(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "feature")
    _write(repo)
    assert lint.new_revisions(repo.config(), "scoring_engine") == ["0011"]
    found = repo.invoke("migrate.lint", "--service", "scoring_engine")
    assert found.code == 1
    lines = found.out.strip().splitlines()
    assert len(lines) == 1, "revisions already on main are not linted by default"
    assert lines[0].startswith(f"scoring_engine: {INDEX_FILE}: require-concurrent-index-creation: ")
    # The fix: the rule's page, or the reviewed marker to add to that very file.
    assert "https://squawkhq.com/docs/require-concurrent-index-creation" in lines[0]
    assert lines[0].endswith(
        f"add to {VERSIONS / INDEX_FILE}: "
        "# migrate-lint: allow require-concurrent-index-creation -- <why>"
    )
    assert found.err.strip() == "migrate.lint: 1 finding(s)"
    validate = repo.invoke("migrate.validate", "--offline", "--service", "scoring_engine")
    assert validate.code == 1 and lines[0] in validate.out.splitlines()
    no_lint = repo.invoke(
        "migrate.validate", "--offline", "--service", "scoring_engine", "--no-lint"
    )
    assert no_lint.code == 0, no_lint.output
    assert no_lint.out.strip() == "scoring_engine: ok, head 0011 (files only)"

    _write(repo, "# migrate-lint: allow require-concurrent-index-creation -- scores has 2k rows\n")
    allowed = repo.invoke("migrate.lint", "--service", "scoring_engine")
    assert allowed.code == 0, allowed.output
    assert allowed.out.strip() == "no lint findings"


def test_a_marker_needs_a_reason(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "feature")
    _write(repo, "# migrate-lint: allow require-concurrent-index-creation\n")
    result = repo.invoke("migrate.lint", "--service", "scoring_engine")
    assert result.one_line_error() == (
        f"error: {INDEX_FILE}: a migrate-lint marker needs rules and a reason: "
        "# migrate-lint: allow <rule>[, <rule>] -- <why it is safe here>"
    )


def test_a_bad_range_is_one_line_with_an_example() -> None:
    result = invoke("migrate.lint", "--service", "scoring_engine", "--range", "0002")
    assert result.one_line_error() == ("error: a range is A:B, not '0002'; e.g. --range 0004:head")


def test_markers_are_per_revision(tmp_path: Path) -> None:
    path = tmp_path / "0011_x.py"
    path.write_text(
        "# migrate-lint: allow prefer-text-field, require-concurrent-index-creation -- small\n"
        "# migrate-lint: allow adding-required-field -- backfilled in 0010\n"
    )
    assert lint.allowed_rules(path) == {
        "prefer-text-field",
        "require-concurrent-index-creation",
        "adding-required-field",
    }
    path.write_text("# migrate-lint: allow 9-lives -- because\n")
    with pytest.raises(WorkflowError, match="9-lives is not a squawk rule name"):
        lint.allowed_rules(path)


CONCURRENT_REVISION = '''"""Index scores by value, concurrently.

Revision ID: 0011
"""

from alembic import op
{marker}
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY {exists}ix_scores_value ON scores (value)")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_scores_value")
'''


@pytest.mark.parametrize(
    ("exists", "marker", "findings"),
    [
        ("", "", 1),
        ("IF NOT EXISTS ", "", 0),
        ("", "# migrate-lint: allow idempotent-autocommit -- scores is tiny, reviewed\n", 0),
    ],
)
def test_an_autocommit_statement_must_run_twice_safely(
    repo: Repo, exists: str, marker: str, findings: int
) -> None:
    """A killed run may have built the index without its revision being recorded."""
    path = repo.path / VERSIONS / INDEX_FILE
    path.write_text(CONCURRENT_REVISION.format(marker=marker, exists=exists))
    found = [
        f
        for f in lint.lint(repo.config(), "scoring_engine", "0010:0011")
        if f.rule == lint.IDEMPOTENT_AUTOCOMMIT
    ]
    assert len(found) == findings, found
    if findings:
        assert "'CREATE INDEX CONCURRENTLY ix_scores_value ON scores (value)' fails when run " in (
            found[0].message
        )
        result = repo.invoke("migrate.lint", "--service", "scoring_engine", "--range", "0010:0011")
        assert result.code == 1
        assert (
            "make it run twice safely (IF NOT EXISTS, IF EXISTS) or, once reviewed, add to "
            in result.out
        )


def test_statements_outside_a_transaction_are_checked_by_kind() -> None:
    rendered = (
        "COMMIT;\n\nALTER TYPE mood ADD VALUE 'ok';\n\nREINDEX INDEX CONCURRENTLY ix;\n\n"
        "UPDATE t SET a = 1;\n\nBEGIN;\n\nCREATE INDEX ix2 ON t (a);\n"
    )
    found = lint.autocommit_findings(rendered)
    assert len(found) == 2, found
    assert "\"ALTER TYPE mood ADD VALUE 'ok'\" fails when run again" in found[0]
    assert "'UPDATE t SET a = 1' cannot be shown to run twice safely" in found[1]


PHASED_REVISION = '''"""Change scores.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
{phase}

def upgrade() -> None:
    {body}


def downgrade() -> None:
    pass
'''


@pytest.mark.parametrize(
    ("phase", "body", "rule", "says"),
    [
        ("", 'op.add_column("scores", sa.Column("note", sa.Text()))', "phase-required",
         "it declares no phase"),
        ('phase = "expand"', 'op.drop_column("scores", "model_version")',
         "phase-matches-operations",
         "it is marked expand but would remove column scores.model_version"),
        ('phase = "expand"', 'op.alter_column("scores", "status", nullable=False)',
         "phase-matches-operations", "set scores.status NOT NULL"),
        ('phase = "expand"', 'op.execute("ALTER TABLE scores RENAME COLUMN status TO state")',
         "phase-matches-operations", "renames"),
        ('phase = "expand"', 'op.add_column("scores", sa.Column("note", sa.Text()))', None, ""),
        ('phase = "contract"', 'op.drop_column("scores", "model_version")', None, ""),
    ],
)  # fmt: skip
def test_a_revisions_phase_is_required_and_must_match_what_it_does(
    repo: Repo, phase: str, body: str, rule: str | None, says: str
) -> None:
    path = repo.path / VERSIONS / "0011_change_scores.py"
    path.write_text(PHASED_REVISION.format(phase=phase, body=body))
    found = [
        f
        for f in lint.lint(repo.config(), "scoring_engine", "0010:0011")
        if f.rule in lint.OWN_RULES
    ]
    if rule is None:
        assert found == []
        return
    assert [f.rule for f in found] == [rule]
    assert says in found[0].message
    result = repo.invoke("migrate.lint", "--service", "scoring_engine", "--range", "0010:0011")
    assert result.code == 1
    assert (
        f"(see docs/migrations.md, Deploying) or, once reviewed, add: # migrate-lint: allow {rule}"
        in result.out
    )
