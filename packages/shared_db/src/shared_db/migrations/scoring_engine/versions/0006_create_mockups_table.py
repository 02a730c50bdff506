"""Create mockups.mockups, the mockups generated for a score.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.create_table(
        "mockups",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("score_id", sa.UUID(), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("image_uri", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["score_id"],
            ["public.scores.id"],
            name=op.f("fk_mockups_score_id_scores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mockups")),
        schema="mockups",
    )
    op.create_index(op.f("ix_mockups_score_id"), "mockups", ["score_id"], schema="mockups")


def downgrade() -> None:
    op.drop_index(op.f("ix_mockups_score_id"), table_name="mockups", schema="mockups")
    op.drop_table("mockups", schema="mockups")
