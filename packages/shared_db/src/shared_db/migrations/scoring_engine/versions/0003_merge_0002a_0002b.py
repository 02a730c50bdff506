"""Merge the parallel revisions 0002a and 0002b.

Revision ID: 0003
Revises: 0002a, 0002b
"""

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | Sequence[str] | None = ("0002a", "0002b")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "expand"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
