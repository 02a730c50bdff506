"""index signals by received_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.create_index(op.f("ix_signals_received_at"), "signals", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_signals_received_at"), table_name="signals")
