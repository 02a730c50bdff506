"""Record which model version computed a score.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.add_column(
        "scores",
        sa.Column("model_version", sa.String(64), server_default=sa.text("'v1'"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("scores", "model_version")
