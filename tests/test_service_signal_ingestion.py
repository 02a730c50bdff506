"""The signal_ingestion service on a real, initially empty Postgres database."""

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import assert_migrated_on_startup, assert_problem, raw, service_client, sql
from httpx import Response
from shared_db.web import cli
from signal_ingestion.settings import SignalIngestionSettings
from sqlalchemy.engine import URL

SERVICE = "signal_ingestion"
SETTINGS = SignalIngestionSettings


@pytest.fixture
def database(migrated_database: Callable[[str], URL]) -> URL:
    """A new database already at the service's head (a copy of its template)."""
    return migrated_database(SERVICE)


@pytest.fixture
def client(database: URL) -> Iterator[TestClient]:
    """A client of the app on a database at head: its startup finds nothing to migrate."""
    with service_client(SERVICE, database) as test_client:
        yield test_client


def post_signal(client: TestClient, source: str, external_id: str, **payload: Any) -> Response:
    body = {"source": source, "external_id": external_id, "payload": payload}
    response: Response = client.post("/signals", json=body)
    return response


def test_startup_migrates_the_empty_database(empty_database: URL) -> None:
    with service_client(SERVICE, empty_database) as client:
        assert_migrated_on_startup(client, empty_database, SERVICE)


def test_the_services_own_database_url_wins_over_database_url(empty_database: URL) -> None:
    elsewhere = URL.create("postgresql+psycopg", "nobody", "x", "127.0.0.1", 1, "nothing")
    own = {f"{SERVICE.upper()}_DATABASE_URL": raw(empty_database)}
    with service_client(SERVICE, elsewhere, **own) as client:
        assert_migrated_on_startup(client, empty_database, SERVICE)


def test_post_signal_creates_it_and_its_source(client: TestClient) -> None:
    response = post_signal(client, "shopify", "order-1", total=12, tags=["a"])

    assert response.status_code == 201, response.text
    signal = response.json()
    uuid.UUID(signal["id"])
    assert signal["source"] == "shopify"
    assert signal["external_id"] == "order-1"
    assert signal["payload"] == {"total": 12, "tags": ["a"]}
    assert signal["received_at"]
    sources = client.get("/sources").json()
    assert [(s["id"], s["name"], s["kind"], s["active"]) for s in sources] == [
        (signal["source_id"], "shopify", "api", True)
    ]


def test_post_signal_payload_defaults_to_empty(client: TestClient) -> None:
    response = client.post("/signals", json={"source": "feed", "external_id": "x"})

    assert response.status_code == 201, response.text
    assert response.json()["payload"] == {}


def test_post_signal_is_idempotent(client: TestClient, database: URL) -> None:
    first = post_signal(client, "shopify", "order-1", total=12)
    again = post_signal(client, "shopify", "order-1", total=99)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the same signal, payload unchanged
    rows = sql(
        database,
        "SELECT s.id, s.payload FROM signals s JOIN signal_sources src ON src.id = s.source_id"
        " WHERE src.name = :name AND s.external_id = :external_id",
        name="shopify",
        external_id="order-1",
    )
    assert rows == [(uuid.UUID(first.json()["id"]), {"total": 12})]
    assert sql(database, "SELECT count(*) FROM signal_sources") == [(1,)]


def test_concurrent_posts_of_one_signal_record_it_once(client: TestClient, database: URL) -> None:
    with ThreadPoolExecutor(max_workers=8) as executor:
        responses = list(executor.map(lambda _: post_signal(client, "burst", "e1"), range(16)))

    assert sorted(r.status_code for r in responses) == [200] * 15 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sql(database, "SELECT count(*) FROM signals") == [(1,)]
    assert sql(database, "SELECT count(*) FROM signal_sources") == [(1,)]


def test_same_external_id_from_another_source_is_another_signal(client: TestClient) -> None:
    first = post_signal(client, "shopify", "42")
    other = post_signal(client, "etsy", "42")
    second = post_signal(client, "shopify", "43")

    assert [r.status_code for r in (first, other, second)] == [201, 201, 201]
    assert len({r.json()["id"] for r in (first, other, second)}) == 3
    assert first.json()["source_id"] == second.json()["source_id"] != other.json()["source_id"]
    assert [s["name"] for s in client.get("/sources").json()] == ["etsy", "shopify"]


def test_get_signal(client: TestClient) -> None:
    created = post_signal(client, "shopify", "order-1", total=12).json()

    response = client.get(f"/signals/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


def test_get_unknown_signal_is_404(client: TestClient) -> None:
    missing = uuid.uuid4()

    body = assert_problem(client.get(f"/signals/{missing}"), 404)

    assert str(missing) in body["detail"]
    assert body["title"] == "Not Found"


def test_get_signal_with_a_malformed_id_is_422(client: TestClient) -> None:
    assert_problem(client.get("/signals/not-a-uuid"), 422)


def test_list_signals_newest_first_by_source_and_limit(client: TestClient) -> None:
    ids = [post_signal(client, source, f"e{i}").json()["id"] for i, source in enumerate("abab")]

    everything = client.get("/signals")
    of_a = client.get("/signals", params={"source": "a"})
    newest_two = client.get("/signals", params={"limit": 2})
    of_unknown = client.get("/signals", params={"source": "nope"})

    assert [s["id"] for s in everything.json()] == ids[::-1]
    assert [s["id"] for s in of_a.json()] == [ids[2], ids[0]]
    assert {s["source"] for s in of_a.json()} == {"a"}
    assert [s["id"] for s in newest_two.json()] == [ids[3], ids[2]]
    assert of_unknown.status_code == 200
    assert of_unknown.json() == []


def test_list_with_an_empty_database(client: TestClient) -> None:
    assert client.get("/signals").json() == []
    assert client.get("/sources").json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"external_id": "x"},
        {"source": "feed"},
        {"source": "", "external_id": "x"},
        {"source": "feed", "external_id": ""},
        {"source": "s" * 129, "external_id": "x"},
        {"source": "feed", "external_id": "x" * 513},
        {"source": "feed", "external_id": "x", "payload": [1, 2]},
        {"source": "feed", "external_id": "x", "payload": "text"},
    ],
)
def test_post_invalid_signal_is_422(
    client: TestClient, database: URL, body: dict[str, Any]
) -> None:
    problem = assert_problem(client.post("/signals", json=body), 422)

    assert problem["errors"]
    assert sql(database, "SELECT count(*) FROM signals") == [(0,)]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"limit": "x"}, {"source": ""}])
def test_list_signals_with_invalid_parameters_is_422(
    client: TestClient, params: dict[str, Any]
) -> None:
    assert_problem(client.get("/signals", params=params), 422)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m SERVICE --help`` (the entry point itself runs in test_packages)."""
    with pytest.raises(SystemExit) as exited:
        cli.run(SETTINGS, ["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m {SERVICE} ")
    assert "--port" in out
