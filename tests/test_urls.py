"""Database URLs: one masking function, libpq's query parameters honoured everywhere.

A URL may hold secrets in its user part and in its query (``?password=``,
``?sslpassword=``, a provider's ``?token=``); ``shared_db.urls.mask`` hides both and is
what every message shows. The query's other parameters are libpq's connection
parameters: every connection (plain psycopg, SQLAlchemy engines, the migration runner, a
service) passes them through, proven on the real test server with a role of its own
whose password only the query carries.
"""

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import execute, head, invoke, raw, service_client, sql
from shared_db import commands
from shared_db.config import DbConfig
from shared_db.connections import connect, connect_autocommit, engine
from shared_db.errors import ConfigurationError, DatabaseError
from shared_db.urls import mask, normalize, render, scrub, where
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

SECRET = "hunter2"

# (a URL, what mask() shows): the password in the user part, in the query, both,
# percent-encoded, with secret-looking query parameters and ones that are not secret.
MASKED = [
    (
        "postgresql://app:hunter2@db.example.com:5432/app",
        "postgresql+psycopg://app:***@db.example.com:5432/app",
    ),
    (
        "postgresql://app@db.example.com:5432/app?password=hunter2",
        "postgresql+psycopg://app:***@db.example.com:5432/app",
    ),
    (
        "postgresql://app:other@db/app?password=hunter2&sslmode=disable",
        "postgresql+psycopg://app:***@db/app?sslmode=disable",
    ),
    ("postgresql://app:hunter2%40%2F%3A%25@db/app", "postgresql+psycopg://app:***@db/app"),
    (
        "postgresql://app@db/app?sslpassword=hunter2&sslkey=/keys/client.key&sslcert=/keys/c.crt",
        "postgresql+psycopg://app@db/app?sslcert=%2Fkeys%2Fc.crt&sslkey=%2Fkeys%2Fclient.key"
        "&sslpassword=***",
    ),
    (
        "postgresql:///app?host=/run/postgresql&password=hunter2",
        "postgresql+psycopg:///app?host=%2Frun%2Fpostgresql&password=***",
    ),
    (
        "postgresql://app@db/app?api_key=hunter2&access_token=hunter2&client_secret=hunter2"
        "&passfile=/home/app/.pgpass&application_name=report&options=-c%20search_path%3Dx",
        "postgresql+psycopg://app@db/app?access_token=***&api_key=***&application_name=report"
        "&client_secret=***&options=-c+search_path%3Dx&passfile=%2Fhome%2Fapp%2F.pgpass",
    ),
    (
        "postgresql://app:hunter2@[::1]:5432/app?password=hunter2&password=hunter3",
        "postgresql+psycopg://app:***@[::1]:5432/app?password=***&password=***",
    ),
    ("postgres://app:hunter2@h1,h2:5433/app", "postgresql+psycopg://app:***@h1,h2:5433/app"),
]


@pytest.mark.parametrize(("url", "shown"), MASKED)
def test_mask_hides_the_password_wherever_it_is(url: str, shown: str) -> None:
    assert mask(url) == shown
    assert render(url) == shown
    assert SECRET not in mask(url) and "hunter3" not in mask(url)


@pytest.mark.parametrize(("url", "_shown"), MASKED)
def test_render_with_the_password_is_the_same_url(url: str, _shown: str) -> None:
    """What ``db.url --show-password`` prints (and a subprocess is given) connects the
    same way: the same parameters, the password included."""
    shown = render(url, show_password=True)
    again = normalize(shown)
    assert again == normalize(url)
    assert make_url(shown).query == normalize(url).query


def test_a_query_password_moves_to_the_user_part() -> None:
    """The same for libpq; SQLAlchemy's own ``str(url)`` (an engine's repr, a log line
    that formats the URL object) then masks it too."""
    url = normalize("postgresql://app@db/app?password=hunter2&sslmode=require")
    assert url.password == SECRET and "password" not in url.query
    assert SECRET not in str(url) and SECRET not in repr(engine(url))
    assert url.query == {"sslmode": "require"}


def test_scrub_masks_the_secrets_of_a_url_in_any_text() -> None:
    url = "postgresql://app:p%40ss%2Fword@db/app?sslpassword=hunter2&token=t0ken"
    message = "could not use p@ss/word, p%40ss%2Fword, hunter2 or t0ken at db"
    assert scrub(message, url) == "could not use ***, ***, *** or *** at db"
    assert scrub("nothing secret", "not a url") == "nothing secret"


def test_a_password_equal_to_a_shown_name_does_not_garble_messages() -> None:
    # The development defaults: postgres/postgres, and each service role's own name.
    message = 'permission denied for table alembic_version_signal_ingestion at "postgres"'
    for url in (
        "postgresql://postgres:postgres@127.0.0.1:54329/postgres",
        "postgresql://signal_ingestion:signal_ingestion@db/signal_ingestion",
    ):
        assert scrub(message, url) == message
    assert scrub(message, "postgresql://u:signal_ingestion@db/app") == (
        'permission denied for table alembic_version_*** at "postgres"'
    )


def test_where_names_the_host_port_and_database_only() -> None:
    assert where(normalize("postgresql://app:hunter2@db:6543/app")) == "db:6543/app"
    socket = normalize("postgresql://app@/app?host=/run/postgresql&port=5433&password=x")
    assert where(socket) == "/run/postgresql:5433/app"
    assert where(normalize("postgresql:///app")) == "localhost:5432/app"


# URLs that are not a PostgreSQL URL: refused saying why, quoting nothing of them.
GARBAGE = [
    ("not a url at all", "the database URL cannot be parsed: it has no scheme (postgresql://)"),
    ("", "the database URL is empty"),
    ("   \t ", "the database URL is empty"),
    ("http://example.com/db", "the database URL uses 'http', not PostgreSQL"),
    ("mysql://u:hunter2@h/db", "the database URL uses 'mysql', not PostgreSQL"),
    (
        "postgresql://u:hunter2@[::1/db",
        "the database URL cannot be parsed: an IPv6 host needs its closing ']' (e.g. [::1]:5432)",
    ),
    (
        "postgresql://u:hunter2@host:notaport/db",
        "the database URL cannot be parsed: its port is not a number",
    ),
    # No '@': libpq would read the password as the port.
    ("postgresql://u:hunter2/db", "the database URL cannot be parsed: its port is not a number"),
    (
        "postgresql://u:hun@ter2@host/db",
        "the database URL cannot be parsed: its host contains '@' (an '@' in the password "
        "must be written %40)",
    ),
    (
        "postgresql://u:hunter2@host:99999/db",
        "the database URL cannot be parsed: its port is not between 1 and 65535",
    ),
]


@pytest.mark.parametrize(("url", "why"), GARBAGE)
def test_garbage_is_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        normalize(url)
    assert refused.value.kind == "invalid_database_url"
    assert str(refused.value) == f"{why}; expected postgresql://user:password@host:port/database"
    assert SECRET not in str(refused.value) and "ter2" not in str(refused.value)


def test_a_variable_set_empty_is_refused_not_ignored() -> None:
    """``DATABASE_URL=$UNSET_VARIABLE invoke migrate.upgrade`` must not migrate the
    development database: an empty value is a wrong value, named."""
    for environ, variable in (
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"SCORING_ENGINE_DATABASE_URL": " ", "DATABASE_URL": "postgresql://a@b/c"}, "SCORING_"),
    ):
        config = DbConfig.from_environ(environ)
        assert config.url_for("scoring_engine") is not None
        with pytest.raises(ConfigurationError) as refused:
            config.parsed_url("scoring_engine")
        assert str(refused.value).startswith(f"scoring_engine: {variable}")
        assert "the database URL is empty" in str(refused.value)
    assert DbConfig.from_environ({}).url_for("scoring_engine") is None
    with pytest.raises(ConfigurationError, match=r"^DATABASE_URL: the database URL is empty"):
        DbConfig.from_environ({"DATABASE_URL": ""}).parsed_database_url()


# -- on the real server: a role whose password only the query carries ---------------


@dataclass(frozen=True)
class Role:
    name: str
    password: str
    database: URL  # as the superuser

    def url(self, **query: str) -> str:
        """``postgresql://<role>@host:port/db?password=...&<query>`` (the libpq style)."""
        base = self.database.set(drivername="postgresql", username=self.name, password=None)
        return raw(base.update_query_dict({"password": self.password, **query}))


@pytest.fixture
def role(empty_database: URL) -> Iterator[Role]:
    """A login role with a password, owning a fresh database (with a schema ``url_schema``)."""
    name = f"qp_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(8)}"
    execute(empty_database, f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    execute(empty_database, f'ALTER DATABASE "{empty_database.database}" OWNER TO {name}')
    execute(empty_database, f"CREATE SCHEMA url_schema AUTHORIZATION {name}")
    yield Role(name, password, empty_database)
    execute(empty_database, f"REASSIGN OWNED BY {name} TO CURRENT_USER")
    execute(empty_database, f"DROP OWNED BY {name}")
    execute(empty_database, f"DROP ROLE {name}")


SESSION = "SELECT current_user, current_setting('application_name'), current_schema()"


def _parameters(connection: Any) -> dict[str, str]:
    """The libpq parameters a psycopg connection was made with."""
    parameters: dict[str, str] = connection.info.get_parameters()
    return parameters


def test_query_parameters_reach_a_plain_connection(role: Role) -> None:
    url = normalize(
        role.url(
            application_name="from-the-url",
            options="-c search_path=url_schema,public",
            connect_timeout="7",
            keepalives_idle="42",
        )
    )
    with connect_autocommit(url, timeout_s=3) as conn:
        assert conn.execute(SESSION).fetchone() == (
            role.name,
            "from-the-url",
            "url_schema",
        )
        parameters = _parameters(conn)
    # The URL says what the user wants; our defaults fill in the rest.
    assert parameters["connect_timeout"] == "7" and parameters["keepalives_idle"] == "42"
    assert parameters["keepalives_count"] == "3"
    # An application_name given by our code is ours: it names a migration connection.
    with connect_autocommit(url, application_name="migrate-lock:x") as conn:
        assert conn.execute(SESSION).fetchone() == (
            role.name,
            "migrate-lock:x",
            "url_schema",
        )


def test_query_parameters_reach_engines_and_migration_connections(role: Role) -> None:
    url = role.url(application_name="from-the-url", options="-c search_path=url_schema,public")
    made = engine(url, connect_timeout_s=3)
    try:
        with made.connect() as connection:
            row = connection.execute(text(SESSION)).one()
            parameters = _parameters(connection.connection.driver_connection)
    finally:
        made.dispose()
    assert tuple(row) == (role.name, "from-the-url", "url_schema")
    assert parameters["connect_timeout"] == "3"
    config = DbConfig(database_url=url, caller="test")
    with connect(config, "scoring_engine", kind="migrate") as connection:
        user, name, path = connection.execute(text(SESSION)).one()
    # The migration connection names itself (the runner finds migrators by it); the
    # session settings we make are SETs: the user's options stay.
    assert (user, path) == (role.name, "url_schema")
    assert name.startswith("migrate:scoring_engine:test@")


def test_an_unpooled_engine_is_kept_per_url_and_settings_and_keeps_no_connection(
    role: Role,
) -> None:
    """Commands and migrations connect once per use over an engine kept for the process
    (a new engine would ask its server its settings again); the connection itself is
    closed after each use, also after the engine was disposed of."""
    url = normalize(role.url())
    kept = engine(url, application_name="kept-engine")
    assert engine(url, application_name="kept-engine") is kept
    assert engine(url, application_name="another-name") is not kept
    assert engine(url, connect_timeout_s=3, application_name="kept-engine") is not kept
    assert engine(url, pooled=True) is not engine(url, pooled=True)
    pids = []
    for _ in range(2):
        with kept.connect() as connection:
            pids.append(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
        kept.dispose()
    assert pids[0] != pids[1], "one connection per use"
    named = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kept-engine'"
    deadline = time.monotonic() + 10  # a closed connection's server process is ending
    while sql(role.database, named) != [(0,)]:
        assert time.monotonic() < deadline, "a connection of the kept engine stayed open"
        time.sleep(0.05)


def test_a_wrong_query_password_is_refused_and_never_shown(role: Role) -> None:
    url = normalize(role.url()).set(password="not-the-password-x1")
    with pytest.raises(DatabaseError) as refused:
        connect_autocommit(url, timeout_s=3, service="scoring_engine")
    assert f'password authentication failed for user "{role.name}"' in str(refused.value)
    assert "not-the-password-x1" not in str(refused.value)


def test_sslmode_and_a_socket_folder_from_the_query_are_used(role: Role) -> None:
    """``sslmode=require`` reaches libpq (the test server has no SSL: refused); a socket
    folder given as ``?host=`` is where the connection goes."""
    ((ssl, sockets, port),) = sql(
        role.database,
        "SELECT current_setting('ssl'), current_setting('unix_socket_directories'), "
        "current_setting('port')",
    )
    if ssl == "off":
        with pytest.raises(DatabaseError) as refused:
            connect_autocommit(normalize(role.url(sslmode="require")), timeout_s=3)
        assert "SSL" in str(refused.value)
        made = engine(role.url(sslmode="require"), connect_timeout_s=3)
        with pytest.raises(Exception, match="SSL"), made.connect():
            pass
        made.dispose()
    folder = next((f.strip() for f in str(sockets).split(",") if f.strip()), "")
    if not folder or not Path(folder, f".s.PGSQL.{port}").exists():
        pytest.skip("the test server's socket is not on this machine")
    over_socket = raw(
        URL.create(
            "postgresql",
            username=role.name,
            database=role.database.database,
            query={"host": folder, "port": str(port), "password": role.password},
        )
    )
    assert where(normalize(over_socket)) == f"{folder}:{port}/{role.database.database}"
    with connect_autocommit(normalize(over_socket), timeout_s=3) as conn:
        row = conn.execute("SELECT current_user, inet_server_addr() IS NULL").fetchone()
    assert row == (role.name, True)
    made = engine(over_socket)
    try:
        with made.connect() as connection:
            assert connection.execute(text("SELECT inet_server_addr() IS NULL")).scalar()
    finally:
        made.dispose()


def test_migrate_and_serve_on_a_query_password_url(role: Role) -> None:
    """The tasks, the runner and a service's settings take the libpq-style URL as it is."""
    url = role.url(sslmode="disable", connect_timeout="5", application_name="x")
    env = {"DATABASE_URL": url}
    result = invoke("migrate.upgrade", "--service", "scoring_engine", env=env, clean=True)
    assert result.code == 0, result.output
    assert role.password not in result.output
    config = DbConfig(database_url=url, caller="test")
    assert commands.current(config, "scoring_engine") == head("scoring_engine")
    status = invoke("migrate.status", "--service", "scoring_engine", env=env, clean=True)
    assert status.code == 0 and "at head" in status.out, status.output
    # A service's settings: it starts (migrating nothing more) and is ready.
    with service_client("scoring_engine", role.database, DATABASE_URL=url) as client:
        ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["database"] == f"{role.database.host}:{role.database.port}/" + str(
        role.database.database
    )
    assert role.password not in ready.text


def test_db_tasks_mask_query_secrets() -> None:
    url = "postgresql://app@127.0.0.1:1/app?password=hunter2&sslpassword=hunter3&sslmode=disable"
    env = {"DATABASE_URL": url, "SIGNALMARKET_POSTGRES": "local"}
    up = invoke("db.up", env=env, clean=True)
    assert up.code == 0, up.output
    assert up.out.strip() == (
        "DATABASE_URL is set: using postgresql+psycopg://app:***@127.0.0.1:1/app"
        "?sslmode=disable&sslpassword=***, no server started"
    )
    shown = invoke("db.url", "--service", "api_gateway", env=env, clean=True)
    assert shown.code == 0, shown.output
    assert "hunter2" not in shown.output and "hunter3" not in shown.output
    assert "sslpassword=***" in shown.out
