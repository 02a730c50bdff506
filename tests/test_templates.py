"""A database at head in constant time: templates per history version, and the pytest
plugin the runtime ships for the services' own test suites."""

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from db_devtools.provisioning.databases import ensure_database
from helpers import execute, head, raw, sql
from shared_db import templates
from shared_db.config import PACKAGED_MIGRATIONS, DbConfig
from shared_db.connections import connect_autocommit
from shared_db.pytest_plugin import AdminConnection
from shared_db.services import version_table
from sqlalchemy.engine import URL

SERVICE = "api_gateway"

EXTRA_REVISION = '''"""An extra revision: a new version of the history."""

from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE template_probe_{rev} (id integer)")


def downgrade() -> None:
    op.execute("DROP TABLE template_probe_{rev}")
'''


def databases(server: URL, pattern: str) -> list[str]:
    rows = sql(
        server, "SELECT datname FROM pg_database WHERE datname LIKE :p ORDER BY 1", p=pattern
    )
    return [name for (name,) in rows]


@pytest.fixture
def history_copy(tmp_path: Path) -> DbConfig:
    """A private copy of the packaged histories, with one revision more for SERVICE, so
    its template is this test's own (a checksum no other test shares)."""
    migrations = tmp_path / "migrations"
    shutil.copytree(PACKAGED_MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    rev = f"{int(head(SERVICE)[0]) + 1:04d}"
    # The file name is this test's own: so is the checksum, so is the template.
    name = f"{rev}_probe_{tmp_path.parent.name}_{tmp_path.name}.py".replace("-", "_")
    (migrations / SERVICE / "versions" / name).write_text(
        EXTRA_REVISION.format(rev=rev, down=head(SERVICE)[0])
    )
    return DbConfig(migrations_dir=migrations, caller="test")


def test_a_copy_is_at_head_and_private(pg_server: URL) -> None:
    config = DbConfig(caller="test")
    first = templates.database_at_head(config, pg_server, SERVICE)
    second = templates.database_at_head(config, pg_server, SERVICE)
    try:
        for url in (first, second):
            assert sql(url, f"SELECT version_num FROM {version_table(SERVICE)}") == [
                (h,) for h in head(SERVICE)
            ]
        execute(first, "INSERT INTO api_keys (name, key_prefix, key_hash) "
                       "VALUES ('a', 'p', repeat('a', 64))")  # fmt: skip
        assert sql(first, "SELECT count(*) FROM api_keys") == [(1,)]
        assert sql(second, "SELECT count(*) FROM api_keys") == [(0,)]
    finally:
        templates.drop(first)
        templates.drop(second)
    assert databases(pg_server, first.database or "") == []


def test_a_copy_is_dropped_while_a_connection_to_it_is_still_open(pg_server: URL) -> None:
    url = templates.database_at_head(DbConfig(caller="test"), pg_server, SERVICE)
    with connect_autocommit(url, url.database or "") as left_open:
        templates.drop(url)
        assert databases(pg_server, url.database or "") == []
        with pytest.raises(psycopg.OperationalError):
            left_open.execute("SELECT 1")
    templates.drop(url)  # already gone: nothing to do


def test_the_template_is_built_once_and_reused(pg_server: URL, history_copy: DbConfig) -> None:
    name = templates.template_name(history_copy, SERVICE)
    assert templates.ensure_template(history_copy, pg_server, SERVICE) == name
    oid = sql(pg_server, "SELECT oid FROM pg_database WHERE datname = :n", n=name)
    assert templates.ensure_template(history_copy, pg_server, SERVICE) == name
    assert sql(pg_server, "SELECT oid FROM pg_database WHERE datname = :n", n=name) == oid
    # Nobody connects to it by mistake; it is marked as a template.
    assert sql(
        pg_server, "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = :n", n=name
    ) == [(True, False)]


def test_a_changed_history_gets_a_new_template_and_the_old_one_goes(
    pg_server: URL, history_copy: DbConfig
) -> None:
    old = templates.ensure_template(history_copy, pg_server, SERVICE)
    versions = history_copy.versions_dir(SERVICE)
    probe = sorted(versions.glob("*_probe_*.py"))[-1]
    probe.write_text(probe.read_text().replace("id integer", "id bigint"))
    new = templates.ensure_template(history_copy, pg_server, SERVICE)
    assert new != old
    assert databases(pg_server, old) == [], "the stale template was dropped"
    url = templates.clone(pg_server, new)
    try:
        table = probe.read_text().split("CREATE TABLE ")[1].split(" ")[0]
        assert sql(
            url, "SELECT data_type FROM information_schema.columns WHERE table_name = :t", t=table
        ) == [("bigint",)]
    finally:
        templates.drop(url)


def test_the_kept_checksum_sees_an_edit_of_the_same_size(history_copy: DbConfig) -> None:
    """The checksum is kept per process and keyed by each file's stat: an edit that keeps
    the size (and a file added) still gives a new one."""
    versions = history_copy.versions_dir(SERVICE)
    probe = sorted(versions.glob("*_probe_*.py"))[-1]
    settled = time.time() - 60  # older than the "written just now" guard
    for path in versions.glob("*.py"):
        os.utime(path, (settled, settled))
    first = templates.history_checksum(history_copy, SERVICE)
    assert templates.history_checksum(history_copy, SERVICE) == first
    probe.write_text(probe.read_text().replace("id integer", "id numeric"))  # same size
    second = templates.history_checksum(history_copy, SERVICE)
    assert second != first
    (versions / "9999_extra.py").write_text(EXTRA_REVISION.format(rev="9999", down="0001"))
    assert templates.history_checksum(history_copy, SERVICE) not in (first, second)


def test_concurrent_builders_build_it_once(pg_server: URL, history_copy: DbConfig) -> None:
    name = templates.template_name(history_copy, SERVICE)
    with ThreadPoolExecutor(max_workers=4) as pool:
        names = list(
            pool.map(
                lambda _: templates.ensure_template(history_copy, pg_server, SERVICE), range(4)
            )
        )
    assert names == [name] * 4
    assert databases(pg_server, f"{name}%") == [name], "one template, no half-built leftover"


def test_the_sessions_admin_connection_is_opened_again_when_a_test_ended_it(
    pg_server: URL, database_admin: AdminConnection
) -> None:
    first = database_admin()
    assert database_admin() is first, "one connection for the session"
    pid = first.info.backend_pid
    with connect_autocommit(pg_server, "postgres") as other:
        assert other.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)
    again = database_admin()
    assert again.info.backend_pid != pid and first.closed
    assert again.execute("SELECT 1").fetchone() == (1,)


def test_a_killed_build_is_not_mistaken_for_a_template(
    pg_server: URL, history_copy: DbConfig
) -> None:
    name = templates.template_name(history_copy, SERVICE)
    # What a builder killed halfway leaves: a database under the temporary name.
    ensure_database(pg_server.set(database=f"{name}_building"))
    assert templates.ensure_template(history_copy, pg_server, SERVICE) == name
    assert databases(pg_server, f"{name}%") == [name]
    url = templates.clone(pg_server, name)
    try:
        assert sql(url, f"SELECT count(*) FROM {version_table(SERVICE)}") == [(1,)]
    finally:
        templates.drop(url)


PLUGIN_TESTS = """
from sqlalchemy import text

from shared_db.services import version_table


def test_a_writes_inside_the_transaction(database_transaction):
    conn = database_transaction("scoring_engine")
    conn.execute(text("INSERT INTO scores (signal_id, value) VALUES (gen_random_uuid(), 0.5)"))
    assert conn.execute(text("SELECT count(*) FROM scores")).scalar() == 1


def test_b_sees_nothing_of_it(database_transaction):
    conn = database_transaction("scoring_engine")
    assert conn.execute(text("SELECT count(*) FROM scores")).scalar() == 0


def test_c_a_fresh_database_at_head(migrated_database):
    from sqlalchemy import create_engine

    url = migrated_database("scoring_engine")
    with create_engine(url).connect() as conn:
        table = version_table("scoring_engine")
        assert conn.execute(text(f"SELECT version_num FROM {table}")).scalar() == "{head}"
"""


def test_the_pytest_plugin_in_a_services_own_suite(
    pytester: pytest.Pytester, pg_server: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a service team uses it: only TEST_DATABASE_SERVER_URL set, the fixtures asked for."""
    monkeypatch.setenv("TEST_DATABASE_SERVER_URL", raw(pg_server))
    pytester.makepyfile(test_service=PLUGIN_TESTS.replace("{head}", head("scoring_engine")[0]))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=3)


def test_the_pytest_plugin_says_how_to_give_it_a_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_DATABASE_SERVER_URL", raising=False)
    pytester.makepyfile(
        test_service="def test_x(migrated_database):\n    migrated_database('scoring_engine')\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*override the database_server_url fixture*"])
