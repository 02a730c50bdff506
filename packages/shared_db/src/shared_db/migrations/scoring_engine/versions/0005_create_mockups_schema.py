"""Create the mockups schema: first revision of the generated_mockups branch.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = ("generated_mockups",)
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS mockups")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS mockups")
