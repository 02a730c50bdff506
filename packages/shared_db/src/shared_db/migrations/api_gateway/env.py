"""Alembic environment of the api_gateway history (logic shared in env_runner)."""

from shared_db.migrations.env_runner import run

run("api_gateway")
