"""Create the scores table.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.create_table(
        "scores",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("signal_id", sa.UUID(), nullable=False),
        sa.Column("value", sa.Numeric(6, 5), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("value >= 0 AND value <= 1", name=op.f("ck_scores_value_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scores")),
    )
    op.create_index("ix_scores_signal_id", "scores", ["signal_id"])


def downgrade() -> None:
    op.drop_index("ix_scores_signal_id", table_name="scores")
    op.drop_table("scores")
