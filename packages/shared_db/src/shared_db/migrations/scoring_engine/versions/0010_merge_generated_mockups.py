"""Merge the generated_mockups branch back into the main line.

Revision ID: 0010
Revises: 0009, 0008
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | Sequence[str] | None = ("0009", "0008")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
