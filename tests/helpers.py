"""Small helpers shared by the service tests."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from httpx import Response
from shared_db import settings
from shared_db.config import alembic_config
from shared_db.history import History, sort_ids
from shared_db.services import version_table
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL


def raw(url: URL) -> str:
    """The URL with its password, as an environment variable needs it."""
    return url.render_as_string(hide_password=False)


def free_port() -> int:
    """A port nothing listens on (bound to find it, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sql(url: URL, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on ``url``'s database."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query), params)]
    finally:
        engine.dispose()


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


@contextmanager
def service_client(
    service: str, database: URL, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """A client of ``service``'s app on ``database``; entering it runs the startup migration."""
    monkeypatch.setenv("DATABASE_URL", raw(database))
    settings.reset()
    app = import_module(f"{service}.app").app
    with TestClient(app) as client:
        yield client


def assert_migrated_on_startup(client: TestClient, database: URL, service: str) -> None:
    """``/ready`` is 200 and the version table holds the code's head."""
    heads = ScriptDirectory.from_config(alembic_config(service)).get_heads()
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["service"] == service
    assert sorted(body["database_revision"]) == sorted(body["head"]) == sorted(heads)
    assert sql(database, f"SELECT version_num FROM {version_table(service)}") == [
        (head,) for head in heads
    ]
    assert client.get("/health").json() == {"status": "ok", "service": service}


# A revision that changes the schema, then fails: proves one transaction per revision.
BROKEN_REVISION = '''"""Add a column, then fail (a broken migration).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scores", sa.Column("half_done", sa.Text(), nullable=True))
    op.execute("UPDATE no_such_table SET x = 1")


def downgrade() -> None:
    op.drop_column("scores", "half_done")
'''


def alembic_shape(script: ScriptDirectory) -> dict[str, object]:
    """The graph facts Alembic itself computes, to compare with ``reader_shape``."""
    revisions = list(script.walk_revisions())
    return {
        "heads": sort_ids(script.get_heads()),
        "bases": sort_ids(script.get_bases()),
        "branch_points": sort_ids(r.revision for r in revisions if r.is_branch_point),
        "merge_points": sort_ids(r.revision for r in revisions if r.is_merge_point),
        "down": {r.revision: sorted(r._all_down_revisions) for r in revisions},
        # Alembic propagates a label along its branch; compare the declared ones.
        "labels": {r.revision: sorted(r._orig_branch_labels) for r in revisions},
    }


def reader_shape(history: History) -> dict[str, object]:
    """The same facts from our file reader."""
    return {
        "heads": list(history.heads),
        "bases": list(history.bases),
        "branch_points": list(history.branch_points()),
        "merge_points": list(history.merge_points()),
        "down": {rev: sorted(r.down) for rev, r in history.revisions.items()},
        "labels": {rev: sorted(r.branch_labels) for rev, r in history.revisions.items()},
    }
