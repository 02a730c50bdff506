"""Let reviewers comment on their feedback.

Revision ID: 0009
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.add_column("score_feedback", sa.Column("comment", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("score_feedback", "comment")
