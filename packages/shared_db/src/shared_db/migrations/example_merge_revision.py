"""Example: a merge revision, as ``invoke migrate.merge --service scoring_engine`` writes it.

This file documents the shape of a merge; it is NOT a revision of any history.
Alembic loads revisions only from ``migrations/<service>/versions/``, and this file
sits one level above, so it is never part of a graph.

When two branches each add a revision on the same parent (say ``0011`` and
``0012``, both on ``0010``), the history has two heads after the git merge and
``alembic upgrade head`` refuses to choose. A merge revision names both heads as its
``down_revision`` and usually changes nothing itself; applying it records that both
lines are in. Write one with::

    invoke migrate.merge --service scoring_engine

which finds the heads itself, picks the next sequential ID (here ``0013``), and writes
``versions/0013_merge_heads_0011_0012.py``. ``invoke migrate.validate`` then passes.
If the two branches' changes conflict (both alter the same column), put the
reconciling operations in ``upgrade()``/``downgrade()`` of the merge revision.

The seed history keeps two real merges: ``scoring_engine/versions/0003`` (0002a and
0002b) and ``0010`` (the ``generated_mockups`` branch back into the main line).
"""

from collections.abc import Sequence

revision: str = "0013"
down_revision: str | Sequence[str] | None = ("0011", "0012")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to do: the merge only joins the two lines of history."""


def downgrade() -> None:
    """Nothing to undo: downgrading past it splits the history into two heads again."""
