"""Add the status column to scores; existing rows become 'pending'.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    # NOT NULL with a server default: Postgres fills existing rows with 'pending'.
    op.add_column(
        "scores",
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("scores", "status")
