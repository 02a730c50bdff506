"""Track the rendering status of each mockup.

Revision ID: 0008
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.add_column(
        "mockups",
        sa.Column("status", sa.String(16), server_default=sa.text("'queued'"), nullable=False),
        schema="mockups",
    )


def downgrade() -> None:
    op.drop_column("mockups", "status", schema="mockups")
