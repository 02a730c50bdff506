"""Resolution order of database URLs, the Docker probe, and the URL helpers."""

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared_db import provision, settings, urls
from shared_db.errors import PostgresError, UnknownServiceError
from shared_db.postgres import docker


def test_service_url_wins_over_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db.internal:5432/shared")
    monkeypatch.setenv("SCORING_ENGINE_DATABASE_URL", "postgresql://se:pw2@db2:6543/scores")
    settings.reset()
    scoring = provision.database_url("scoring_engine")
    assert (scoring.host, scoring.port, scoring.database) == ("db2", 6543, "scores")
    assert scoring.drivername == "postgresql+psycopg"
    other = provision.database_url("api_gateway")
    assert (other.host, other.database) == ("db.internal", "shared"), "DATABASE_URL is used as is"


def test_unknown_service_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownServiceError) as error:
        provision.database_url("billing")
    message = str(error.value)
    assert "'billing'" in message
    for service in ("api_gateway", "scoring_engine", "marketplace_publisher", "signal_ingestion"):
        assert service in message


def test_backend_can_be_forced_and_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALMARKET_POSTGRES", "local")
    assert provision.backend() == "local"
    monkeypatch.setenv("SIGNALMARKET_POSTGRES", "kubernetes")
    with pytest.raises(PostgresError, match="SIGNALMARKET_POSTGRES"):
        provision.backend()


def test_passwords_are_masked() -> None:
    url = "postgresql://svc:s3cret@localhost:5432/app"
    assert "s3cret" not in urls.mask(url)
    assert "***" in urls.mask(url)
    assert "s3cret" in urls.render(url, show_password=True)


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A Unix socket that answers like dockerd's /_ping, with a configurable reply."""
    path = tmp_path / "docker.sock"
    replies: list[bytes] = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"]
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(replies[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, replies
    stop.set()
    thread.join()
    listener.close()


def test_docker_is_used_only_when_the_daemon_answers(
    fake_daemon: tuple[Path, list[bytes]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, replies = fake_daemon
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    assert docker.engine_answers() is True
    replies[0] = b"HTTP/1.1 500 Internal Server Error\r\n\r\n"
    assert docker.engine_answers() is False
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    assert docker.engine_answers() is False
    monkeypatch.setenv("SIGNALMARKET_POSTGRES", "auto")
    assert provision.backend() == "local"


def test_service_settings_carry_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from scoring_engine.settings import ScoringEngineSettings

    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db:5432/shared")
    monkeypatch.setenv("SKIP_MIGRATIONS", "YES")
    loaded = ScoringEngineSettings()
    assert loaded.database_url == "postgresql://app:pw@db:5432/shared"
    assert loaded.skip_migrations is True
    assert loaded.resolved_database_url().database == "shared"
    monkeypatch.setenv("SCORING_ENGINE_DATABASE_URL", "postgresql://se:pw@db2:5432/scores")
    assert ScoringEngineSettings().resolved_database_url().host == "db2"
