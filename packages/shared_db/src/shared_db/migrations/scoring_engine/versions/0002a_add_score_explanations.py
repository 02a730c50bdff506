"""Add score explanations (one of two revisions made in parallel on 0002).

Revision ID: 0002a
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002a"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.create_table(
        "score_explanations",
        sa.Column("score_id", sa.UUID(), nullable=False),
        sa.Column(
            "features",
            sa.dialects.postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["score_id"],
            ["scores.id"],
            name=op.f("fk_score_explanations_score_id_scores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("score_id", name=op.f("pk_score_explanations")),
    )


def downgrade() -> None:
    op.drop_table("score_explanations")
