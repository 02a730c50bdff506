"""Index scores by status and age (the other revision made in parallel on 0002).

Revision ID: 0002b
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002b"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.create_index("ix_scores_status_created_at", "scores", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_scores_status_created_at", table_name="scores")
