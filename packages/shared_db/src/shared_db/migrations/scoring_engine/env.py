"""Alembic environment of the scoring_engine history (logic shared in env_runner)."""

from shared_db.migrations.env_runner import run

run("scoring_engine")
