"""Create score_feedback, human verdicts on scores.

Revision ID: 0007
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.create_table(
        "score_feedback",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("score_id", sa.UUID(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["score_id"],
            ["scores.id"],
            name=op.f("fk_score_feedback_score_id_scores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_feedback")),
    )
    op.create_index(op.f("ix_score_feedback_score_id"), "score_feedback", ["score_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_score_feedback_score_id"), table_name="score_feedback")
    op.drop_table("score_feedback")
