"""index publications by status

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.create_index(op.f("ix_publications_status"), "publications", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_publications_status"), table_name="publications")
