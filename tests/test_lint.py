"""migrate.lint: squawk on the SQL of each revision, with reviewed per-revision exceptions."""

from pathlib import Path

import pytest
from conftest import VERSIONS, Repo
from shared_db import lint
from shared_db.errors import MigrationError
from shared_db.history import read_history


def test_a_range_of_the_real_history() -> None:
    findings = lint.lint("scoring_engine", "0001:0002")
    assert [(f.revision, f.path.name, f.rule) for f in findings] == [
        ("0002", "0002_add_status_column.py", "prefer-text-field")
    ]
    assert lint.lint("scoring_engine", "base:0001") == []


def test_range_arithmetic() -> None:
    history = read_history("scoring_engine")
    assert lint.revisions_in_range(history, "0008:head") == ["0007", "0009", "0010"]
    assert lint.revisions_in_range(history, "base:0002") == ["0001", "0002"]
    with pytest.raises(MigrationError, match="takes A:B"):
        lint.revisions_in_range(history, "0002")
    with pytest.raises(MigrationError, match="unknown revision '9999'"):
        lint.revisions_in_range(history, "0001:9999")


def test_rendered_sql_sets_the_session_timeouts() -> None:
    from alembic.script import ScriptDirectory
    from shared_db.config import alembic_config

    rendered = lint.render_upgrade(
        ScriptDirectory.from_config(alembic_config("scoring_engine")), "0002"
    )
    assert rendered.startswith("SET lock_timeout = '10s';")
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


def upgrade() -> None:
    op.create_index("ix_scores_value", "scores", ["value"])


def downgrade() -> None:
    op.drop_index("ix_scores_value", table_name="scores")
'''


def _write(repo: Repo, marker: str = "") -> Path:
    path = repo.path / VERSIONS / "0011_index_scores_value.py"
    path.write_text(INDEX_REVISION.format(marker=marker))
    return path


def test_new_revisions_are_linted_and_a_reviewed_marker_allows_a_rule(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "feature")
    _write(repo)
    found = repo.invoke("migrate.lint", "--service", "scoring_engine")
    assert found.returncode == 1
    lines = found.stdout.strip().splitlines()
    assert len(lines) == 1, "revisions already on main are not linted by default"
    assert lines[0].startswith(
        "scoring_engine: 0011_index_scores_value.py: require-concurrent-index-creation: "
    )
    assert "# migrate-lint: allow require-concurrent-index-creation -- <why>" in lines[0]
    validate = repo.invoke("migrate.validate", "--offline", "--service", "scoring_engine")
    assert validate.returncode == 1 and "require-concurrent-index-creation" in validate.stdout
    no_lint = repo.invoke(
        "migrate.validate", "--offline", "--service", "scoring_engine", "--no-lint"
    )
    assert no_lint.returncode == 0, no_lint.stdout

    _write(repo, "# migrate-lint: allow require-concurrent-index-creation -- scores has 2k rows\n")
    allowed = repo.invoke("migrate.lint", "--service", "scoring_engine")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert allowed.stdout.strip() == "no lint findings"


def test_a_marker_needs_a_reason(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "feature")
    _write(repo, "# migrate-lint: allow require-concurrent-index-creation\n")
    result = repo.invoke("migrate.lint", "--service", "scoring_engine")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: 0011_index_scores_value.py: a migrate-lint marker needs rules and a reason: "
        "# migrate-lint: allow <rule>[, <rule>] -- <why it is safe here>"
    )


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
