"""check that listing prices are not negative

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
phase: str = "contract"


def upgrade() -> None:
    op.create_check_constraint(
        op.f("ck_listings_price_cents_non_negative"), "listings", "price_cents >= 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_listings_price_cents_non_negative"), "listings", type_="check")
