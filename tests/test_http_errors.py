"""Every error a service answers is a problem (RFC 9457) with a request id, on a real
Postgres: hostile input refused before any query, the database's own errors mapped to
what a client can do (503 + Retry-After, 409, 422), anything else a 500 problem with one
log line; request bodies bounded; list endpoints paginated."""

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any
from unittest import mock

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from helpers import assert_problem, execute, service_client
from scoring_engine.settings import ScoringEngineSettings
from shared_db.web.app import create_service_app, session
from shared_db.web.inputs import JSON_MAX_BYTES, JSON_MAX_DEPTH
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

ADMIN = {"X-Admin-Token": "test-admin-token"}
NUL, SURROGATE = "a\x00b", "a\ud800b"


def _json(body: Any) -> bytes:
    """``body`` as JSON text, lone surrogates and non-finite numbers included (as a
    hostile client can send them; httpx's own encoder would refuse)."""
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


def post(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(
        path, content=_json(body), headers={"Content-Type": "application/json", **headers}
    )


@pytest.fixture
def clients(migrated_database: Callable[[str], URL]) -> Iterator[Callable[[str], TestClient]]:
    """``clients(service)``: a client of that service on its own database at head."""
    with ExitStack() as stack:
        made: dict[str, TestClient] = {}

        def get(service: str) -> TestClient:
            if service not in made:
                env = {"ADMIN_TOKEN": ADMIN["X-Admin-Token"]} if service == "api_gateway" else {}
                made[service] = stack.enter_context(
                    service_client(service, migrated_database(service), **env)
                )
            return made[service]

        yield get


def _field(problem: dict[str, Any]) -> list[Any]:
    return [error["loc"] for error in problem.get("errors", [])]


# --- Text Postgres cannot store, numbers that are not numbers -----------------------------

SIGNAL = {"source": "feed", "external_id": "e-1", "payload": {}}
LISTING = {"sku": "sku-1", "title": "A mug", "price_cents": 1200}
CASES: list[tuple[str, str, str, Any, list[Any]]] = [
    # service, method, path, JSON body (None: no body), the location named in the 422
    ("signal_ingestion", "POST", "/signals", {**SIGNAL, "source": NUL}, ["body", "source"]),
    (
        "signal_ingestion",
        "POST",
        "/signals",
        {**SIGNAL, "external_id": NUL},
        ["body", "external_id"],
    ),
    ("signal_ingestion", "POST", "/signals", {**SIGNAL, "source": SURROGATE}, ["body", "source"]),
    (
        "signal_ingestion",
        "POST",
        "/signals",
        {**SIGNAL, "payload": {"k": NUL}},
        ["body", "payload"],
    ),
    ("signal_ingestion", "POST", "/signals", {**SIGNAL, "payload": {NUL: 1}}, ["body", "payload"]),
    (
        "signal_ingestion",
        "POST",
        "/signals",
        {**SIGNAL, "payload": {"k": [SURROGATE]}},
        ["body", "payload"],
    ),
    (
        "signal_ingestion",
        "POST",
        "/signals",
        {**SIGNAL, "payload": {"n": float("nan")}},
        ["body", "payload"],
    ),
    (
        "signal_ingestion",
        "POST",
        "/signals",
        {**SIGNAL, "payload": {"n": float("inf")}},
        ["body", "payload"],
    ),
    ("signal_ingestion", "GET", "/signals?source=%00", None, ["query", "source"]),
    ("signal_ingestion", "GET", "/signals?limit=101", None, ["query", "limit"]),
    ("signal_ingestion", "GET", "/signals?cursor=%00", None, ["query", "cursor"]),
    (
        "scoring_engine",
        "POST",
        "/scores",
        {"signal_id": str(uuid.uuid4()), "value": float("nan")},
        ["body", "value"],
    ),
    (
        "scoring_engine",
        "POST",
        "/scores",
        {"signal_id": str(uuid.uuid4()), "value": 0.5, "model_version": NUL},
        ["body", "model_version"],
    ),
    (
        "scoring_engine",
        "POST",
        f"/scores/{uuid.uuid4()}/mockups",
        {"template": SURROGATE},
        ["body", "template"],
    ),
    ("marketplace_publisher", "POST", "/listings", {**LISTING, "sku": NUL}, ["body", "sku"]),
    (
        "marketplace_publisher",
        "POST",
        "/listings",
        {**LISTING, "title": SURROGATE},
        ["body", "title"],
    ),
    (
        "marketplace_publisher",
        "POST",
        "/listings",
        {**LISTING, "price_cents": 2**31},
        ["body", "price_cents"],
    ),
    (
        "marketplace_publisher",
        "POST",
        "/listings",
        {**LISTING, "price_cents": float("inf")},
        ["body", "price_cents"],
    ),
    (
        "marketplace_publisher",
        "POST",
        "/listings/1/publications",
        {"channel": NUL},
        ["body", "channel"],
    ),
    (
        "marketplace_publisher",
        "DELETE",
        "/listings/1/publications/a%00b",
        None,
        ["path", "channel"],
    ),
    (
        "marketplace_publisher",
        "GET",
        "/listings/99999999999999999999",
        None,
        ["path", "listing_id"],
    ),
    ("api_gateway", "POST", "/admin/keys", {"name": NUL, "scopes": []}, ["body", "name"]),
    ("api_gateway", "DELETE", "/admin/keys/99999999999999999999", None, ["path", "key_id"]),
    ("api_gateway", "DELETE", "/admin/keys/0", None, ["path", "key_id"]),
]


@pytest.mark.parametrize("service", sorted({case[0] for case in CASES}))
def test_hostile_input_is_a_422_naming_the_field(
    service: str, clients: Callable[[str], TestClient]
) -> None:
    client = clients(service)
    for _, method, path, body, location in [c for c in CASES if c[0] == service]:
        headers = {"Content-Type": "application/json", **ADMIN}
        content = None if body is None else _json(body)
        response = client.request(method, path, content=content, headers=headers)
        problem = assert_problem(response, 422)
        assert location in _field(problem), (method, path, problem)
        assert problem["request_id"] == response.headers["x-request-id"]


def test_nothing_hostile_was_stored(clients: Callable[[str], TestClient]) -> None:
    client = clients("signal_ingestion")
    post(client, "/signals", {**SIGNAL, "external_id": NUL})
    assert client.get("/signals").json() == []
    assert client.get("/sources").json() == []


def test_json_deeper_than_the_bound_is_refused(clients: Callable[[str], TestClient]) -> None:
    client = clients("signal_ingestion")

    def nested(depth: int) -> dict[str, Any]:
        value: Any = 1
        for _ in range(depth - 1):
            value = [value]
        return {"k": value}

    accepted = post(client, "/signals", {**SIGNAL, "payload": nested(JSON_MAX_DEPTH)})
    assert accepted.status_code == 201, accepted.text
    too_deep = {**SIGNAL, "external_id": "e-2", "payload": nested(JSON_MAX_DEPTH + 1)}
    refused = post(client, "/signals", too_deep)
    assert "deeper" in assert_problem(refused, 422)["errors"][0]["msg"]
    # Far beyond Python's own recursion limit: still a 422, not a crash.
    deep = (
        b'{"source":"s","external_id":"x","payload":{"k":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    )
    response = client.post("/signals", content=deep, headers={"Content-Type": "application/json"})
    assert "nested too deeply" in assert_problem(response, 422)["detail"]


def test_a_payload_over_the_bound_is_refused(clients: Callable[[str], TestClient]) -> None:
    client = clients("signal_ingestion")
    big = {"blob": "x" * JSON_MAX_BYTES}
    problem = assert_problem(post(client, "/signals", {**SIGNAL, "payload": big}), 422)
    assert f"at most {JSON_MAX_BYTES}" in problem["errors"][0]["msg"]


# --- Request bodies are bounded -----------------------------------------------------------


@pytest.mark.parametrize("service", ["signal_ingestion", "api_gateway"])
def test_a_body_over_the_limit_is_413_declared_or_streamed(
    service: str, migrated_database: Callable[[str], URL]
) -> None:
    env = {"MAX_BODY_BYTES": "4096", "ADMIN_TOKEN": ADMIN["X-Admin-Token"]}
    with service_client(service, migrated_database(service), **env) as client:
        path = "/signals" if service == "signal_ingestion" else "/admin/keys"
        body = _json({**SIGNAL, "payload": {"blob": "x" * 5000}})
        headers = {"Content-Type": "application/json", **ADMIN}
        declared = client.post(path, content=body, headers=headers)
        assert assert_problem(declared, 413)["max_bytes"] == 4096

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield body[:3000]
            yield body[3000:]

        streamed = client.post(path, content=chunks(), headers=headers)
        assert "4096 bytes" in assert_problem(streamed, 413)["detail"]
        small = post(client, path, {**SIGNAL, "payload": {"blob": "x" * 100}}, **ADMIN)
        assert small.status_code != 413


def test_a_non_numeric_content_length_is_400(clients: Callable[[str], TestClient]) -> None:
    client = clients("signal_ingestion")
    response = client.post("/signals", content=b"{}", headers={"Content-Length": "lots"})
    assert_problem(response, 400)


# --- The database's errors ----------------------------------------------------------------


def test_an_unavailable_database_is_503_with_retry_after(
    clients: Callable[[str], TestClient], migrated_database: Callable[[str], URL]
) -> None:
    client = clients("marketplace_publisher")
    assert client.get("/listings").status_code == 200
    assert isinstance(client.app, FastAPI)
    database: URL = client.app.state.db_config.parsed_url("marketplace_publisher")
    admin = database.set(database="postgres")
    name = database.database
    execute(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    execute(admin, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='{name}'")
    try:
        response = client.get("/listings")
        problem = assert_problem(response, 503)
        assert response.headers["retry-after"] == "5"
        assert "unavailable" in problem["detail"]
        assert name not in response.text, "the response says nothing of where the database is"
        ready = client.get("/ready")
        assert ready.status_code == 503
    finally:
        execute(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert client.get("/listings").status_code == 200, "served again once the database is back"


@pytest.fixture
def probe_client(
    migrated_database: Callable[[str], URL],
) -> Iterator[TestClient]:
    """A service app with extra routes that make the database fail in chosen ways."""
    router = APIRouter()

    @router.get("/fail/{how}")
    def fail(how: str, db: Session = Depends(session)) -> dict[str, str]:  # noqa: B008
        statements = {
            "unique": "INSERT INTO mockups.mockups (id, score_id, template) "
            "SELECT id, score_id, template FROM mockups.mockups",
            "check": "INSERT INTO scores (signal_id, value) VALUES (gen_random_uuid(), 7)",
            "not_null": "INSERT INTO scores (signal_id, value) VALUES (NULL, 0.5)",
            "data": "SELECT 'forty-two'::integer",
            "timeout": "SET LOCAL statement_timeout = 50; SELECT pg_sleep(5)",
            "syntax": "SELEC 1",
        }
        if how == "python":
            raise RuntimeError("a bug in a route")
        db.execute(text(statements[how]))
        return {"ok": how}

    app: FastAPI = create_service_app(ScoringEngineSettings, [router])
    database = migrated_database("scoring_engine")
    execute(
        database,
        "INSERT INTO scores (signal_id, value) VALUES (gen_random_uuid(), 0.5);"
        "INSERT INTO mockups.mockups (score_id, template) SELECT id, 't' FROM scores",
    )
    env = {"DATABASE_URL": database.render_as_string(hide_password=False)}
    with mock.patch.dict(os.environ, env), TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("how", "status", "named"),
    [
        ("unique", 409, "pk_mockups"),
        ("check", 422, "value_range"),
        ("not_null", 422, "signal_id"),
        ("data", 422, "integer"),
        ("timeout", 503, None),
    ],
)
def test_database_errors_map_to_what_the_client_can_do(
    probe_client: TestClient, how: str, status: int, named: str | None
) -> None:
    response = probe_client.get(f"/fail/{how}")
    problem = assert_problem(response, status)
    if named:
        assert named in json.dumps(problem), problem
    assert "INSERT" not in response.text and "SELECT" not in response.text
    assert problem["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("how", ["python", "syntax"])
def test_anything_else_is_a_500_problem_and_one_log_line(
    probe_client: TestClient, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = probe_client.get(f"/fail/{how}", headers={"X-Request-Id": "req-123"})
    problem = assert_problem(response, 500)
    assert problem["request_id"] == "req-123" == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if "req-123" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.ERROR and logged[0].exc_info is None
    assert "\n" not in logged[0].getMessage()


def test_the_traceback_is_logged_at_debug(
    probe_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="signalmarket")
    probe_client.get("/fail/python", headers={"X-Request-Id": "req-dbg"})
    [traced] = [r for r in caplog.records if r.exc_info and "req-dbg" in r.getMessage()]
    assert traced.levelno == logging.DEBUG


def test_a_request_id_of_the_caller_is_kept_only_when_sane(
    clients: Callable[[str], TestClient],
) -> None:
    client = clients("signal_ingestion")
    assert (
        client.get("/health", headers={"X-Request-Id": "abc-1"}).headers["x-request-id"] == "abc-1"
    )
    given = client.get("/health", headers={"X-Request-Id": "x" * 500}).headers["x-request-id"]
    assert len(given) == 32 and given != "x" * 500


# --- Pagination ---------------------------------------------------------------------------


def _pages(client: TestClient, path: str) -> list[list[dict[str, Any]]]:
    pages = []
    url: str | None = path
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        link = response.headers.get("link")
        if link is None:
            url = None
        else:
            assert link.startswith("<?") and link.endswith('>; rel="next"'), link
            url = path.split("?")[0] + link[1 : link.index(">")]
    return pages


def test_lists_are_paginated_with_a_next_link(clients: Callable[[str], TestClient]) -> None:
    client = clients("signal_ingestion")
    for i in range(7):
        signal = {**SIGNAL, "source": f"s{i % 2}", "external_id": f"e{i}"}
        assert post(client, "/signals", signal).status_code == 201
    pages = _pages(client, "/signals?limit=3")
    assert [len(p) for p in pages] == [3, 3, 1]
    ids = [s["external_id"] for p in pages for s in p]
    assert sorted(ids) == [f"e{i}" for i in range(7)], "every signal once"
    assert ids == [s["external_id"] for s in client.get("/signals?limit=100").json()], (
        "newest first"
    )
    filtered = _pages(client, "/signals?source=s0&limit=2")
    assert [s["external_id"] for p in filtered for s in p] == ["e6", "e4", "e2", "e0"]
    assert [len(p) for p in _pages(client, "/sources?limit=1")] == [1, 1]
    assert len(client.get("/signals").json()) == 7, "the default page holds 50"


def test_a_forged_cursor_is_a_422(clients: Callable[[str], TestClient]) -> None:
    client = clients("marketplace_publisher")
    for cursor in ["bm90LWpzb24", "WzFd", "WyJ4IiwxXQ", "W1tbW1tbW1tbW1tbW1s"]:
        problem = assert_problem(client.get(f"/listings?cursor={cursor}"), 422)
        assert problem["field"] == "cursor", cursor
