"""The api_gateway service on a real Postgres: API keys, scopes, and forwarding.

The upstream services run in this process, reached through ``httpx.ASGITransport``
(their apps with their own databases); one test sends a request through the gateway's
own HTTP client to a real scoring_engine process, over TCP, and back.
"""

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_gateway.settings import UPSTREAMS, ApiGatewaySettings
from db_devtools.provisioning.databases import scratch_database
from db_devtools.provisioning.ports import free_port
from dev_tasks.readiness import Target, wait_ready
from fastapi import FastAPI
from fastapi.testclient import TestClient
from helpers import assert_migrated_on_startup, assert_problem, raw, service_client, sql
from sqlalchemy.engine import URL

SERVICE = "api_gateway"
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"X-Admin-Token": ADMIN_TOKEN}


@pytest.fixture
def gateway_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The gateway's environment besides its database: an admin token, and upstreams on
    closed ports (tests that need a live one route it in-process, see ``upstream_apps``)."""
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    return {
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "UPSTREAM_TIMEOUT": "5",
        **{f"{service.upper()}_URL": f"http://127.0.0.1:{free_port()}" for service in UPSTREAMS},
    }


@pytest.fixture
def database(migrated_database: Callable[[str], URL]) -> URL:
    """A new database already at the service's head (a copy of its template)."""
    return migrated_database(SERVICE)


@pytest.fixture
def client(database: URL, gateway_env: dict[str, str]) -> Iterator[TestClient]:
    """A client of the gateway on a database at head: its startup finds nothing to migrate."""
    with service_client(SERVICE, database, **gateway_env) as test_client:
        yield test_client


def create_key(client: TestClient, *scopes: str, name: str = "test") -> dict[str, Any]:
    response = client.post(
        "/admin/keys", json={"name": name, "scopes": list(scopes)}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def http_client(client: TestClient, replacement: httpx.AsyncClient) -> Iterator[None]:
    """Within: the gateway forwards with ``replacement`` instead of its own HTTP client."""
    state = app_of(client).state
    real = state.http_client
    state.http_client = replacement
    try:
        yield
    finally:
        state.http_client = real
        assert client.portal is not None
        client.portal.call(replacement.aclose)


def mock_upstreams(
    client: TestClient, handler: Callable[[httpx.Request], httpx.Response]
) -> AbstractContextManager[None]:
    """Within: the gateway forwards to ``handler`` instead of the network."""
    return http_client(client, httpx.AsyncClient(transport=httpx.MockTransport(handler)))


def app_of(client: TestClient) -> FastAPI:
    app = client.app
    assert isinstance(app, FastAPI)
    return app


def upstream_apps(client: TestClient, apps: Mapping[str, FastAPI]) -> AbstractContextManager[None]:
    """Within: the gateway reaches these services' apps in this process, through
    ``httpx.ASGITransport`` at the URLs its settings name; the others as configured."""
    settings: ApiGatewaySettings = app_of(client).state.settings
    mounts = {
        settings.upstream_url(service): httpx.ASGITransport(app=app)
        for service, app in apps.items()
    }
    return http_client(client, httpx.AsyncClient(mounts=mounts, timeout=settings.upstream_timeout))


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
    empty_database: URL, gateway_env: dict[str, str], value: str | None
) -> None:
    env = {k: v for k, v in gateway_env.items() if k != "ADMIN_TOKEN"}
    if value is not None:
        env["ADMIN_TOKEN"] = value
    with service_client(SERVICE, empty_database, **env) as client:
        body = {"name": "k", "scopes": []}
        for headers in ({}, ADMIN, {"X-Admin-Token": ""}):
            problem = assert_problem(client.post("/admin/keys", json=body, headers=headers), 403)
            assert problem["detail"] == "admin API disabled: set ADMIN_TOKEN"


def test_created_key_is_shown_once_and_only_its_hash_is_stored(
    client: TestClient, database: URL
) -> None:
    created = create_key(client, "scoring_engine:read", "scoring_engine:write", name="partner")
    plaintext = created["key"]
    assert created["name"] == "partner"
    assert created["scopes"] == ["scoring_engine:read", "scoring_engine:write"]
    assert plaintext.startswith(f"sm_{created['key_prefix']}_")
    assert len(plaintext) > 40

    [(key_id, prefix, key_hash)] = sql(database, "SELECT id, key_prefix, key_hash FROM api_keys")
    assert (key_id, prefix) == (created["id"], created["key_prefix"])
    assert key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext.split("_", 2)[2]  # the secret may itself contain "_"
    for table in ("api_keys", "api_key_scopes"):
        for (row,) in sql(database, f"SELECT row_to_json(t)::text FROM {table} t"):
            assert plaintext not in row and secret not in row, f"{table} stores the key: {row}"
    scopes = sql(database, "SELECT scope FROM api_key_scopes ORDER BY scope")
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


def test_a_revoked_key_is_refused(client: TestClient, database: URL) -> None:
    created = create_key(client, "scoring_engine:read")
    headers = {"X-API-Key": created["key"]}
    assert_problem(client.get("/scoring_engine/scores", headers=headers), 502)  # accepted
    [(last_used,)] = sql(database, "SELECT last_used_at FROM api_keys")
    assert last_used is not None

    revoked = client.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"]
    assert_problem(client.get("/scoring_engine/scores", headers=headers), 401)
    again = client.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"], "revoking is idempotent"
    assert sql(database, "SELECT count(*) FROM api_keys") == [(1,)], "the row is kept"


def test_unknown_service_is_404_listing_the_valid_ones(client: TestClient) -> None:
    key = create_key(client, "scoring_engine:read")["key"]
    for headers in ({"X-API-Key": key}, {}):
        problem = assert_problem(client.get("/billing/invoices", headers=headers), 404)
        assert "'billing'" in problem["detail"]
        expected = ["signal_ingestion", "scoring_engine", "marketplace_publisher"]
        assert problem["services"] == expected
        for service in expected:
            assert service in problem["detail"]


def test_startup_migrates_the_empty_database(empty_database: URL) -> None:
    with service_client(SERVICE, empty_database) as client:
        assert_migrated_on_startup(client, empty_database, SERVICE)


def test_the_gateways_own_database_url_wins_over_database_url(
    empty_database: URL, gateway_env: dict[str, str]
) -> None:
    elsewhere = URL.create("postgresql+psycopg", "nobody", "x", "127.0.0.1", 1, "nothing")
    own = {"API_GATEWAY_DATABASE_URL": raw(empty_database)}
    with service_client(SERVICE, elsewhere, **gateway_env, **own) as client:
        assert_migrated_on_startup(client, empty_database, SERVICE)


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


def test_forwarding_returns_the_upstreams_paging_link_and_passes_the_request_id(
    client: TestClient,
) -> None:
    seen: list[httpx.Request] = []
    body = b"[" + b",".join(b'{"n":%d}' % i for i in range(20_000)) + b"]"

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"content-type": "application/json", "link": '<?cursor=abc>; rel="next"'}
        return httpx.Response(200, content=body, headers={**headers, "x-secret": "internal"})

    key = create_key(client, "signal_ingestion:read")["key"]
    with mock_upstreams(client, upstream):
        response = client.get(
            "/signal_ingestion/signals", headers={"X-API-Key": key, "X-Request-Id": "trace-7"}
        )
    assert response.status_code == 200
    assert response.content == body, "the whole body, as the upstream sent it"
    assert response.headers["link"] == '<?cursor=abc>; rel="next"'
    assert "x-secret" not in response.headers, "only the listed upstream headers come back"
    assert response.headers["x-request-id"] == "trace-7"
    assert seen[0].headers["x-request-id"] == "trace-7", "the upstream logs the same id"


def test_a_body_over_the_limit_never_reaches_the_upstream(
    database: URL, gateway_env: dict[str, str]
) -> None:
    calls: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(201)

    with service_client(SERVICE, database, **gateway_env, MAX_BODY_BYTES="2048") as client:
        key = create_key(client, "signal_ingestion:write")["key"]
        with mock_upstreams(client, upstream):
            response = client.post(
                "/signal_ingestion/signals", content=b"x" * 5000, headers={"X-API-Key": key}
            )
            small = client.post(
                "/signal_ingestion/signals", content=b"x" * 100, headers={"X-API-Key": key}
            )
    assert assert_problem(response, 413)["max_bytes"] == 2048
    assert small.status_code == 201
    assert len(calls) == 1, "only the small request was forwarded"


# --- End to end: gateway -> service -> its database, and back -----------------------------


@pytest.fixture
def upstream_database(pg_server: URL) -> Iterator[URL]:
    """An empty database of the upstream service (the gateway has its own)."""
    with scratch_database(pg_server, "upstream") as database:
        yield database


def test_each_service_is_reached_at_its_own_url(
    client: TestClient, migrated_database: Callable[[str], URL]
) -> None:
    """``/<service>/health`` reaches that service's own app, for each of the three."""
    key = create_key(client, *(f"{service}:read" for service in UPSTREAMS))["key"]
    with ExitStack() as stack:
        upstreams = [
            stack.enter_context(service_client(service, migrated_database(service)))
            for service in UPSTREAMS
        ]
        apps = {service: app_of(c) for service, c in zip(UPSTREAMS, upstreams, strict=True)}
        with upstream_apps(client, apps):
            for service in UPSTREAMS:
                answer = client.get(f"/{service}/health", headers={"X-API-Key": key})
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"status": "ok", "service": service}


def test_one_request_travels_gateway_service_database_and_back(
    client: TestClient, upstream_database: URL
) -> None:
    key = create_key(client, "scoring_engine:write", "scoring_engine:read")["key"]
    headers = {"X-API-Key": key}
    signal_id = uuid.uuid4()
    with (
        service_client("scoring_engine", upstream_database) as upstream,
        upstream_apps(client, {"scoring_engine": app_of(upstream)}),
    ):
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
        others = client.get(
            "/scoring_engine/scores", params={"signal_id": str(uuid.uuid4())}, headers=headers
        )
        assert others.status_code == 200 and others.json() == []

        missing = client.get(f"/scoring_engine/scores/{uuid.uuid4()}", headers=headers)
        assert missing.status_code == 404, "the upstream's status comes back as is"
        assert missing.headers["content-type"].startswith("application/problem+json")

    rows = sql(
        upstream_database,
        "SELECT signal_id, value, status FROM scores WHERE id = :id",
        id=uuid.UUID(score["id"]),
    )
    assert rows == [(signal_id, Decimal("0.50000"), "pending")]


# --- Over the network: the gateway's own HTTP client, a real scoring_engine process -------


@pytest.fixture
def scoring_engine_process(upstream_database: URL, tmp_path: Path) -> Iterator[str]:
    """A real scoring_engine process on its own empty database; yields its base URL."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("DATABASE_URL") and k != "SKIP_MIGRATIONS"
    }
    env["DATABASE_URL"] = raw(upstream_database)
    log_path = tmp_path / "scoring_engine.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scoring_engine", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def exited() -> str | None:
        return None if process.poll() is None else log_path.read_text()

    try:
        wait_ready([Target("scoring_engine", f"{base}/ready", exited)], timeout=60)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_gateways_own_client_forwards_over_tcp(
    empty_database: URL,
    gateway_env: dict[str, str],
    scoring_engine_process: str,
    upstream_database: URL,
) -> None:
    """What the in-process transport cannot show: the HTTP client the gateway builds
    itself, at the upstream URL from its settings, carries a request to a service
    process and its answer back."""
    env = {**gateway_env, "SCORING_ENGINE_URL": scoring_engine_process}
    with service_client(SERVICE, empty_database, **env) as client:
        key = create_key(client, "scoring_engine:write", "scoring_engine:read")["key"]
        headers = {"X-API-Key": key}
        signal_id = str(uuid.uuid4())
        created = client.post(
            "/scoring_engine/scores", json={"signal_id": signal_id, "value": 0.25}, headers=headers
        )
        assert created.status_code == 201, created.text
        listed = client.get(
            "/scoring_engine/scores", params={"signal_id": signal_id}, headers=headers
        )
        assert listed.status_code == 200, listed.text
        assert listed.json() == [created.json()]
    assert sql(upstream_database, "SELECT count(*) FROM scores") == [(1,)]
