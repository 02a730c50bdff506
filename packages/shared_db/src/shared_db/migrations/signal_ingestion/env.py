"""Alembic environment of the signal_ingestion history (logic shared in env_runner)."""

from shared_db.migrations.env_runner import run

run("signal_ingestion")
