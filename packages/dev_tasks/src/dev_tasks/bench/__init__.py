"""``invoke bench``: measured side by side with raw Alembic and psql on this machine."""
