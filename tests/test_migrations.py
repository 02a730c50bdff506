"""Every service's history on a freshly created empty database.

The standard checks are pytest-alembic's own tests, run once per service (the
``alembic_config``/``alembic_engine`` fixtures are parametrized in conftest):
upgrade to head, exactly one head, up/down consistency (every revision
downgrades and upgrades again), and models matching the migrated schema.
"""

from decimal import Decimal

import pytest
from alembic.script import ScriptDirectory
from helpers import alembic_script, config_for, head
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from shared_db import commands
from shared_db.config import DbConfig
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


def test_downgrade_to_base_then_upgrade_again(service: str, empty_database: URL) -> None:
    config = config_for(empty_database)
    assert commands.upgrade(config, service).after == head(service)
    assert commands.downgrade(config, service, "base").after == ()
    tables = set(inspect(create_engine(empty_database)).get_table_names())
    bookkeeping = {f"alembic_version_{service}", f"alembic_revisions_{service}"}
    assert tables == bookkeeping, f"tables left after downgrade: {tables}"
    assert commands.upgrade(config, service).after == head(service)


def test_each_service_has_its_own_version_table(service: str, empty_database: URL) -> None:
    commands.upgrade(config_for(empty_database), service)
    engine = create_engine(empty_database)
    with engine.connect() as conn:
        recorded = conn.execute(text(f"SELECT version_num FROM alembic_version_{service}")).all()
    assert [row[0] for row in recorded] == list(head(service))
    assert "alembic_version" not in inspect(engine).get_table_names()


def test_services_share_one_database_without_collisions(empty_database: URL) -> None:
    """DATABASE_URL used as is: four histories side by side in one database."""
    config = config_for(empty_database)
    services = ("api_gateway", "scoring_engine", "marketplace_publisher", "signal_ingestion")
    for service in services:
        commands.upgrade(config, service)
    for service in services:
        assert commands.current(config, service) == head(service)
    # Downgrading one service leaves the others' tables alone.
    commands.downgrade(config, "signal_ingestion", "base")
    assert commands.current(config, "scoring_engine") == head("scoring_engine")
    assert commands.current(config, "signal_ingestion") == ()


# -- scoring_engine: the documented history ---------------------------------------


@pytest.fixture
def scoring_script() -> ScriptDirectory:
    return alembic_script(DbConfig(), "scoring_engine")


def test_status_defaults_to_pending_also_for_existing_rows(empty_database: URL) -> None:
    config = config_for(empty_database)
    commands.upgrade(config, "scoring_engine", "0001")
    engine = create_engine(empty_database)
    signal = "6f1c0b5e-8a51-4d0c-9a7e-2f4d7d1f9a11"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO scores (signal_id, value) VALUES (:s, 0.5)"), {"s": signal})
    commands.upgrade(config, "scoring_engine", "0002")
    commands.upgrade(config, "scoring_engine")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO scores (signal_id, value) VALUES (:s, 0.25)"), {"s": signal})
        rows = conn.execute(text("SELECT value, status FROM scores ORDER BY value")).all()
    assert rows == [(Decimal("0.25000"), "pending"), (Decimal("0.50000"), "pending")]


def test_0003_merges_0002a_and_0002b(scoring_script: ScriptDirectory) -> None:
    merge = scoring_script.get_revision("0003")
    assert merge is not None and merge.is_merge_point
    assert set(merge.down_revision or ()) == {"0002a", "0002b"}
    for parallel in ("0002a", "0002b"):
        revision = scoring_script.get_revision(parallel)
        assert revision is not None and revision.down_revision == "0002"


def test_0010_merges_generated_mockups_into_main_line(scoring_script: ScriptDirectory) -> None:
    merge = scoring_script.get_revision("0010")
    assert merge is not None and merge.is_merge_point
    parents = [scoring_script.get_revision(rev) for rev in merge.down_revision or ()]
    branch_tips = [p for p in parents if p is not None and "generated_mockups" in p.branch_labels]
    main_tips = [p for p in parents if p is not None and "generated_mockups" not in p.branch_labels]
    assert len(branch_tips) == 1 and len(main_tips) == 1
    # The branch is labelled where it leaves the main line, and nowhere else.
    labelled = [
        rev.revision
        for rev in scoring_script.walk_revisions()
        if "generated_mockups" in (getattr(rev.module, "branch_labels", None) or ())
    ]
    assert labelled == ["0005"]
    first = scoring_script.get_revision("0005")
    assert first is not None and first.down_revision == "0004"
    branch = scoring_script.iterate_revisions(branch_tips[0].revision, "0004")
    assert "0005" in {rev.revision for rev in branch}
    assert scoring_script.get_heads() == ["0010"]


def test_file_names_are_sequential_ids_with_slugs(scoring_script: ScriptDirectory) -> None:
    for revision in scoring_script.walk_revisions():
        assert revision.path is not None
        name = revision.path.rsplit("/", 1)[-1]
        assert name.startswith(f"{revision.revision}_"), name
