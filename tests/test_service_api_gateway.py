"""The api_gateway service on a real Postgres: API keys, scopes, and forwarding.

The last test sends one request through the gateway to a real scoring_engine process
and its own database, and back.
"""

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import assert_problem, free_port, raw, sql
from shared_db import settings
from shared_db.databases import scratch_database
from sqlalchemy.engine import URL

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
UPSTREAM_ENV = ("SIGNAL_INGESTION_URL", "SCORING_ENGINE_URL", "MARKETPLACE_PUBLISHER_URL")


@pytest.fixture
def gateway_env(empty_database: URL, monkeypatch: pytest.MonkeyPatch) -> URL:
    """The gateway's environment: its own empty database, an admin token, and upstreams
    on closed ports (tests that need a live one point its URL elsewhere)."""
    monkeypatch.setenv("DATABASE_URL", raw(empty_database))
    monkeypatch.delenv("API_GATEWAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("SKIP_MIGRATIONS", raising=False)
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("UPSTREAM_TIMEOUT", "5")
    for name in UPSTREAM_ENV:
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    settings.reset()
    return empty_database


def start_gateway() -> TestClient:
    from api_gateway.app import app

    return TestClient(app)


@pytest.fixture
def client(gateway_env: URL) -> Iterator[TestClient]:
    """A client of the gateway, whose startup migrated its empty database."""
    with start_gateway() as test_client:
        yield test_client


def create_key(client: TestClient, *scopes: str, name: str = "test") -> dict[str, Any]:
    response = client.post(
        "/admin/keys", json={"name": name, "scopes": list(scopes)}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def mock_upstreams(
    client: TestClient, handler: Callable[[httpx.Request], httpx.Response]
) -> Iterator[None]:
    """Within: the gateway forwards to ``handler`` instead of the network."""
    state = client.app.state  # type: ignore[attr-defined]
    real = state.http_client
    state.http_client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    try:
        yield
    finally:
        state.http_client = real


# --- Admin API ----------------------------------------------------------------------------


def test_admin_api_needs_the_admin_token(client: TestClient) -> None:
    body = {"name": "k", "scopes": []}
    missing = assert_problem(client.post("/admin/keys", json=body), 401)
    assert "X-Admin-Token" in missing["detail"]
    wrong = client.post("/admin/keys", json=body, headers={"X-Admin-Token": "nope"})
    assert_problem(wrong, 401)
    assert_problem(client.delete("/admin/keys/1", headers={"X-Admin-Token": "nope"}), 401)
    assert_problem(client.post("/admin/keys", json={"bad": 1}), 401)  # auth before validation
    assert ADMIN_TOKEN not in wrong.text


@pytest.mark.parametrize("value", [None, ""])
def test_admin_api_is_disabled_without_admin_token(
    gateway_env: URL, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("ADMIN_TOKEN")
    else:
        monkeypatch.setenv("ADMIN_TOKEN", value)
    with start_gateway() as client:
        body = {"name": "k", "scopes": []}
        for headers in ({}, ADMIN, {"X-Admin-Token": ""}):
            problem = assert_problem(client.post("/admin/keys", json=body, headers=headers), 403)
            assert problem["detail"] == "admin API disabled: set ADMIN_TOKEN"


def test_created_key_is_shown_once_and_only_its_hash_is_stored(
    client: TestClient, gateway_env: URL
) -> None:
    created = create_key(client, "scoring_engine:read", "scoring_engine:write", name="partner")
    plaintext = created["key"]
    assert created["name"] == "partner"
    assert created["scopes"] == ["scoring_engine:read", "scoring_engine:write"]
    assert plaintext.startswith(f"sm_{created['key_prefix']}_")
    assert len(plaintext) > 40

    [(key_id, prefix, key_hash)] = sql(gateway_env, "SELECT id, key_prefix, key_hash FROM api_keys")
    assert (key_id, prefix) == (created["id"], created["key_prefix"])
    assert key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext.split("_", 2)[2]  # the secret may itself contain "_"
    for table in ("api_keys", "api_key_scopes"):
        for (row,) in sql(gateway_env, f"SELECT row_to_json(t)::text FROM {table} t"):
            assert plaintext not in row and secret not in row, f"{table} stores the key: {row}"
    scopes = sql(gateway_env, "SELECT scope FROM api_key_scopes ORDER BY scope")
    assert scopes == [("scoring_engine:read",), ("scoring_engine:write",)]

    other = create_key(client, "scoring_engine:read")
    assert other["key"] != plaintext, "every key is new"


def test_unknown_scopes_are_refused(client: TestClient) -> None:
    response = client.post(
        "/admin/keys", json={"name": "k", "scopes": ["scoring_engne:read"]}, headers=ADMIN
    )
    problem = assert_problem(response, 422)
    assert "scoring_engne:read" in str(problem["errors"])


def test_revoking_an_unknown_key_is_404(client: TestClient) -> None:
    assert_problem(client.delete("/admin/keys/424242", headers=ADMIN), 404)


# --- Authentication and scopes ------------------------------------------------------------


def test_forwarding_needs_a_known_api_key(client: TestClient) -> None:
    response = client.get("/scoring_engine/scores")
    missing = assert_problem(response, 401)
    assert "X-API-Key" in missing["detail"]
    assert response.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    key = create_key(client, "scoring_engine:read")["key"]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for wrong in ("nonsense", forged, "sm_00000000_secret"):
        assert_problem(client.get("/scoring_engine/scores", headers={"X-API-Key": wrong}), 401)


def test_a_key_needs_the_scope_of_the_method(client: TestClient) -> None:
    key = create_key(client, "scoring_engine:read")["key"]
    headers = {"X-API-Key": key}
    problem = assert_problem(client.post("/scoring_engine/scores", json={}, headers=headers), 403)
    assert problem["required_scope"] == "scoring_engine:write"
    assert "scoring_engine:write" in problem["detail"]
    other = assert_problem(client.get("/signal_ingestion/signals", headers=headers), 403)
    assert "signal_ingestion:read" in other["detail"]
    # With the scope, the request goes on (to a closed port here).
    assert_problem(client.get("/scoring_engine/scores", headers=headers), 502)


def test_a_revoked_key_is_refused(client: TestClient, gateway_env: URL) -> None:
    created = create_key(client, "scoring_engine:read")
    headers = {"X-API-Key": created["key"]}
    assert_problem(client.get("/scoring_engine/scores", headers=headers), 502)  # accepted
    [(last_used,)] = sql(gateway_env, "SELECT last_used_at FROM api_keys")
    assert last_used is not None

    revoked = client.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"]
    assert_problem(client.get("/scoring_engine/scores", headers=headers), 401)
    again = client.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"], "revoking is idempotent"
    assert sql(gateway_env, "SELECT count(*) FROM api_keys") == [(1,)], "the row is kept"


def test_unknown_service_is_404_listing_the_valid_ones(client: TestClient) -> None:
    key = create_key(client, "scoring_engine:read")["key"]
    for headers in ({"X-API-Key": key}, {}):
        problem = assert_problem(client.get("/billing/invoices", headers=headers), 404)
        assert "'billing'" in problem["detail"]
        expected = ["signal_ingestion", "scoring_engine", "marketplace_publisher"]
        assert problem["services"] == expected
        for service in expected:
            assert service in problem["detail"]


def test_health_and_ready_are_served(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "service": "api_gateway"}
    assert client.get("/ready").status_code == 200


# --- Forwarding ---------------------------------------------------------------------------


def test_forwarding_passes_the_request_on_without_the_api_key(client: TestClient) -> None:
    """Method, path, query, body and content-type go on; X-API-Key does not."""
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(418, content=b"<teapot/>", headers={"content-type": "text/xml"})

    key = create_key(client, "marketplace_publisher:write")["key"]
    with mock_upstreams(client, upstream):
        response = client.put(
            "/marketplace_publisher/listings/a%20b/x?q=1&q=2&name=caf%C3%A9",
            content=b"raw body",
            headers={"X-API-Key": key, "Content-Type": "text/plain", "X-Admin-Token": "t"},
        )
    assert response.status_code == 418
    assert response.content == b"<teapot/>"
    assert response.headers["content-type"] == "text/xml"
    [request] = seen
    assert request.method == "PUT"
    assert request.url.host == "127.0.0.1"
    assert request.url.raw_path == b"/listings/a%20b/x?q=1&q=2&name=caf%C3%A9"
    assert request.content == b"raw body"
    assert request.headers["content-type"] == "text/plain"
    assert "x-api-key" not in request.headers
    assert "x-admin-token" not in request.headers
    assert key not in str(request.headers)


def test_upstream_down_is_502_naming_the_service(client: TestClient) -> None:
    key = create_key(client, "scoring_engine:read")["key"]
    response = client.get("/scoring_engine/scores", headers={"X-API-Key": key})
    problem = assert_problem(response, 502)
    assert problem["service"] == "scoring_engine"
    assert "scoring_engine" in problem["detail"]
    assert key not in response.text


def test_upstream_timeout_is_504(client: TestClient) -> None:
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    key = create_key(client, "scoring_engine:read")["key"]
    with mock_upstreams(client, too_slow):
        response = client.get("/scoring_engine/scores", headers={"X-API-Key": key})
    problem = assert_problem(response, 504)
    assert problem["service"] == "scoring_engine"
    assert key not in response.text


# --- End to end: gateway -> scoring_engine -> its database, and back -----------------------


@pytest.fixture
def scoring_engine(pg_server: URL, tmp_path: Path) -> Iterator[tuple[str, URL]]:
    """A real scoring_engine process on its own empty database: (base URL, database URL)."""
    with scratch_database(pg_server, "upstream") as database:
        port = free_port()
        env = {**os.environ, "DATABASE_URL": raw(database)}
        env.pop("SCORING_ENGINE_DATABASE_URL", None)
        env.pop("SKIP_MIGRATIONS", None)
        log_path = tmp_path / "scoring_engine.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "scoring_engine", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, log_path)
            yield base, database
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"scoring_engine exited {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"scoring_engine not ready within 30 s:\n{log_path.read_text()}")


def test_one_request_travels_gateway_service_database_and_back(
    gateway_env: URL, scoring_engine: tuple[str, URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, upstream_database = scoring_engine
    monkeypatch.setenv("SCORING_ENGINE_URL", base)
    with start_gateway() as client:
        key = create_key(client, "scoring_engine:write", "scoring_engine:read")["key"]
        headers = {"X-API-Key": key}
        signal_id = uuid.uuid4()

        created = client.post(
            "/scoring_engine/scores",
            json={"signal_id": str(signal_id), "value": 0.5},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        assert created.headers["content-type"] == "application/json"
        score = created.json()
        assert score["status"] == "pending"
        assert score["signal_id"] == str(signal_id)
        assert Decimal(str(score["value"])) == Decimal("0.5")

        fetched = client.get(f"/scoring_engine/scores/{score['id']}", headers=headers)
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == score

        listed = client.get(
            "/scoring_engine/scores", params={"signal_id": str(signal_id)}, headers=headers
        )
        assert [s["id"] for s in listed.json()] == [score["id"]], "the query string went along"

        missing = client.get(f"/scoring_engine/scores/{uuid.uuid4()}", headers=headers)
        assert missing.status_code == 404, "the upstream's status comes back as is"
        assert missing.headers["content-type"].startswith("application/problem+json")

    rows = sql(
        upstream_database,
        "SELECT signal_id, value, status FROM scores WHERE id = :id",
        id=uuid.UUID(score["id"]),
    )
    assert rows == [(signal_id, Decimal("0.50000"), "pending")]
