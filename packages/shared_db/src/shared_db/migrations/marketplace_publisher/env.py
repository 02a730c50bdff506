"""Alembic environment of the marketplace_publisher history (logic shared in env_runner)."""

from shared_db.migrations.env_runner import run

run("marketplace_publisher")
