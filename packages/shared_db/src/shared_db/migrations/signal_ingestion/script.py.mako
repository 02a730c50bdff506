<%! from shared_db.history import docstring_text %>\
"""${docstring_text(message)}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}
# "expand": the previous release's code keeps working on the new schema (it only adds);
# "contract": it may not (drops, renames, NOT NULL, checked constraints). See docs/migrations.md.
phase: str = ${repr(config.attributes.get("phase", "contract"))}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
