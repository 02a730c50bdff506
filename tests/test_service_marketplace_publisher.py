"""The marketplace_publisher service on a real, initially empty Postgres database."""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import assert_migrated_on_startup, assert_problem, raw, service_client, sql
from httpx import Response
from marketplace_publisher.settings import MarketplacePublisherSettings
from shared_db.web import cli
from sqlalchemy.engine import URL

SERVICE = "marketplace_publisher"
SETTINGS = MarketplacePublisherSettings


@pytest.fixture
def database(migrated_database: Callable[[str], URL]) -> URL:
    """A new database already at the service's head (a copy of its template)."""
    return migrated_database(SERVICE)


@pytest.fixture
def client(database: URL) -> Iterator[TestClient]:
    """A client of the app on a database at head: its startup finds nothing to migrate."""
    with service_client(SERVICE, database) as test_client:
        yield test_client


def create_listing(client: TestClient, sku: str = "SKU-1", **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/listings", json={"sku": sku, "title": "A mug", "price_cents": 1250, **fields}
    )
    assert response.status_code == 201, response.text
    listing: dict[str, Any] = response.json()
    return listing


def publish(client: TestClient, listing_id: int, channel: str) -> Response:
    response: Response = client.post(
        f"/listings/{listing_id}/publications", json={"channel": channel}
    )
    return response


def published_at(publication: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(publication["published_at"])


def test_startup_migrates_the_empty_database(empty_database: URL) -> None:
    with service_client(SERVICE, empty_database) as client:
        assert_migrated_on_startup(client, empty_database, SERVICE)


def test_the_services_own_database_url_wins_over_database_url(empty_database: URL) -> None:
    elsewhere = URL.create("postgresql+psycopg", "nobody", "x", "127.0.0.1", 1, "nothing")
    own = {f"{SERVICE.upper()}_DATABASE_URL": raw(empty_database)}
    with service_client(SERVICE, elsewhere, **own) as client:
        assert_migrated_on_startup(client, empty_database, SERVICE)


# -- listings ------------------------------------------------------------------------


def test_create_and_get_listing(client: TestClient) -> None:
    listing = create_listing(client, currency="EUR")

    assert isinstance(listing["id"], int)
    assert (listing["sku"], listing["title"], listing["price_cents"], listing["currency"]) == (
        "SKU-1",
        "A mug",
        1250,
        "EUR",
    )
    assert listing["created_at"]
    assert listing["updated_at"]
    fetched = client.get(f"/listings/{listing['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == listing


def test_currency_defaults_to_usd_and_price_may_be_zero(client: TestClient) -> None:
    listing = create_listing(client, price_cents=0)

    assert (listing["currency"], listing["price_cents"]) == ("USD", 0)


def test_list_listings_newest_first(client: TestClient) -> None:
    ids = [create_listing(client, sku)["id"] for sku in ("A", "B", "C")]

    assert [item["id"] for item in client.get("/listings").json()] == ids[::-1]
    newest = client.get("/listings", params={"limit": 1}).json()
    assert [item["id"] for item in newest] == [ids[2]]


def test_duplicate_sku_is_409(client: TestClient, database: URL) -> None:
    first = create_listing(client, "SKU-1")

    response = client.post("/listings", json={"sku": "SKU-1", "title": "Another", "price_cents": 5})

    body = assert_problem(response, 409)
    assert "SKU-1" in body["detail"]
    assert sql(database, "SELECT id, title FROM listings") == [(first["id"], "A mug")]
    # The conflict left the service usable.
    assert create_listing(client, "SKU-2")["sku"] == "SKU-2"


def test_concurrent_creates_of_one_sku_make_one_listing(client: TestClient, database: URL) -> None:
    body = {"sku": "SKU-1", "title": "A mug", "price_cents": 1}
    with ThreadPoolExecutor(max_workers=8) as executor:
        responses = list(executor.map(lambda _: client.post("/listings", json=body), range(16)))

    assert sorted(r.status_code for r in responses) == [201] + [409] * 15
    assert sql(database, "SELECT count(*) FROM listings") == [(1,)]


def test_get_unknown_listing_is_404(client: TestClient) -> None:
    body = assert_problem(client.get("/listings/999"), 404)

    assert "999" in body["detail"]


@pytest.mark.parametrize("path", ["/listings/abc", "/listings/0", f"/listings/{2**63}"])
def test_get_listing_with_an_invalid_id_is_422(client: TestClient, path: str) -> None:
    assert_problem(client.get(path), 422)


@pytest.mark.parametrize(
    "change",
    [
        {"price_cents": -1},
        {"price_cents": 2**31},
        {"price_cents": "lots"},
        {"currency": "usd"},
        {"currency": "US"},
        {"currency": "USDX"},
        {"currency": "U1D"},
        {"sku": ""},
        {"sku": "S" * 65},
        {"title": ""},
        {"title": None},
    ],
)
def test_invalid_listing_is_422(client: TestClient, database: URL, change: dict[str, Any]) -> None:
    body = {"sku": "SKU-1", "title": "A mug", "price_cents": 100, **change}

    problem = assert_problem(client.post("/listings", json=body), 422)

    assert problem["errors"]
    assert sql(database, "SELECT count(*) FROM listings") == [(0,)]


@pytest.mark.parametrize("missing", ["sku", "title", "price_cents"])
def test_listing_without_a_required_field_is_422(client: TestClient, missing: str) -> None:
    body = {"sku": "SKU-1", "title": "A mug", "price_cents": 100}
    del body[missing]

    problem = assert_problem(client.post("/listings", json=body), 422)

    assert any(missing in error["loc"] for error in problem["errors"])


# -- publications --------------------------------------------------------------------


def test_first_publish_is_201(client: TestClient, database: URL) -> None:
    listing = create_listing(client)

    response = publish(client, listing["id"], "etsy")

    assert response.status_code == 201, response.text
    publication = response.json()
    assert (publication["listing_id"], publication["channel"], publication["status"]) == (
        listing["id"],
        "etsy",
        "published",
    )
    assert publication["published_at"] is not None
    assert sql(database, "SELECT channel, status FROM publications") == [("etsy", "published")]


def test_publishing_again_is_200_and_changes_nothing(client: TestClient, database: URL) -> None:
    listing = create_listing(client)
    first = publish(client, listing["id"], "etsy")

    again = publish(client, listing["id"], "etsy")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert sql(database, "SELECT count(*) FROM publications") == [(1,)]


def test_concurrent_first_publishes_make_one_publication(client: TestClient, database: URL) -> None:
    listing = create_listing(client)
    with ThreadPoolExecutor(max_workers=8) as executor:
        responses = list(executor.map(lambda _: publish(client, listing["id"], "etsy"), range(16)))

    assert sorted(r.status_code for r in responses) == [200] * 15 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sql(database, "SELECT count(*) FROM publications") == [(1,)]


def test_withdraw_then_republish(client: TestClient, database: URL) -> None:
    listing = create_listing(client)
    first = publish(client, listing["id"], "etsy").json()

    withdrawn = client.delete(f"/listings/{listing['id']}/publications/etsy")

    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json() == {**first, "status": "withdrawn"}
    assert sql(database, "SELECT status FROM publications") == [("withdrawn",)]

    republished = publish(client, listing["id"], "etsy")

    assert republished.status_code == 200, republished.text
    assert republished.json()["id"] == first["id"]
    assert republished.json()["status"] == "published"
    assert published_at(republished.json()) > published_at(first)
    assert sql(database, "SELECT count(*), min(status) FROM publications") == [(1, "published")]


def test_withdrawing_twice_is_200(client: TestClient) -> None:
    listing = create_listing(client)
    publish(client, listing["id"], "etsy")
    client.delete(f"/listings/{listing['id']}/publications/etsy")

    again = client.delete(f"/listings/{listing['id']}/publications/etsy")

    assert again.status_code == 200
    assert again.json()["status"] == "withdrawn"


def test_channels_and_listings_are_independent(client: TestClient) -> None:
    mug, cup = create_listing(client, "MUG"), create_listing(client, "CUP")

    codes = [
        publish(client, mug["id"], "etsy").status_code,
        publish(client, mug["id"], "amazon").status_code,
        publish(client, cup["id"], "etsy").status_code,
    ]
    client.delete(f"/listings/{mug['id']}/publications/etsy")

    assert codes == [201, 201, 201]
    mug_publications = client.get(f"/listings/{mug['id']}/publications").json()
    assert [(p["channel"], p["status"]) for p in mug_publications] == [
        ("amazon", "published"),
        ("etsy", "withdrawn"),
    ]
    cup_publications = client.get(f"/listings/{cup['id']}/publications").json()
    assert [(p["channel"], p["status"]) for p in cup_publications] == [("etsy", "published")]


def test_listing_without_publications(client: TestClient) -> None:
    listing = create_listing(client)

    response = client.get(f"/listings/{listing['id']}/publications")

    assert response.status_code == 200
    assert response.json() == []


def test_publications_of_an_unknown_listing_are_404(client: TestClient) -> None:
    assert_problem(publish(client, 999, "etsy"), 404)
    assert_problem(client.get("/listings/999/publications"), 404)
    assert_problem(client.delete("/listings/999/publications/etsy"), 404)


def test_withdrawing_from_an_unpublished_channel_is_404(client: TestClient) -> None:
    listing = create_listing(client)
    publish(client, listing["id"], "etsy")

    body = assert_problem(client.delete(f"/listings/{listing['id']}/publications/amazon"), 404)

    assert "amazon" in body["detail"]


@pytest.mark.parametrize("body", [{}, {"channel": ""}, {"channel": "c" * 65}, {"channel": 3}])
def test_invalid_publication_is_422(client: TestClient, body: dict[str, Any]) -> None:
    listing = create_listing(client)

    assert_problem(client.post(f"/listings/{listing['id']}/publications", json=body), 422)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m SERVICE --help`` (the entry point itself runs in test_packages)."""
    with pytest.raises(SystemExit) as exited:
        cli.run(SETTINGS, ["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m {SERVICE} ")
    assert "--port" in out
