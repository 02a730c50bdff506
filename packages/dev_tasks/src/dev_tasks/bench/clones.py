"""A fresh database at head for a test: a copy of the history's template against
``upgrade head`` on a new empty database, as a test fixture gets one (in this process,
Alembic already imported for both), for histories of 12 to 1,000 revisions."""

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from db_devtools.provisioning.databases import drop_database, ensure_database
from shared_db.config import DbConfig
from sqlalchemy.engine import URL

from dev_tasks.bench import profile
from dev_tasks.bench.figures import SERVICE, Figure
from dev_tasks.bench.measure import bytecode
from dev_tasks.bench.synthetic import write_history

FLAT = 1.5  # a 1,000-revision history over the same schema may cost this much more
COPY_RUNS = 9


@dataclass(frozen=True)
class History:
    key: str
    label: str
    config: DbConfig


def _histories(workdir: Path) -> list[History]:
    found = [History("12", "scoring_engine's own (12 revisions)", DbConfig(caller="test"))]
    for count, tables_until, key in ((200, 0, "200"), (1000, 0, "1000"), (1000, 200, "1000/200")):
        tree = workdir / f"clone-{key.replace('/', '-')}"
        versions = write_history(tree, SERVICE, count, tables_until=tables_until)
        bytecode([versions])
        label = f"synthetic, {count} revisions" + (
            f", tables made by the first {tables_until} only" if tables_until else ""
        )
        found.append(History(key, label, DbConfig(migrations_dir=tree, caller="test")))
    return found


def _copy(config: DbConfig, server: URL) -> float:
    """Seconds to get a new database at head from the template (then dropped)."""
    from shared_db import templates

    started = time.perf_counter()
    url = templates.database_at_head(config, server, SERVICE)
    took = time.perf_counter() - started
    templates.drop(url)
    return took


def _upgrade_fresh(config: DbConfig, empty: URL) -> float:
    """Seconds to create ``empty`` and upgrade it to head (it is left for the next run)."""
    from shared_db import runner

    drop_database(empty)
    started = time.perf_counter()
    ensure_database(empty)
    migrate = config.replace(database_urls={SERVICE: empty.render_as_string(hide_password=False)})
    runner.upgrade(migrate, SERVICE, report=lambda _progress: None)
    return time.perf_counter() - started


def template_clones(server: URL, runs: int, workdir: Path) -> tuple[Figure, list[Figure]]:
    """The headline (200 revisions) and one row per history."""
    from shared_db import templates

    rows, histories = [], _histories(workdir)
    empty = server.set(database="bench_fresh")
    for history in histories:
        started = time.perf_counter()
        templates.ensure_template(history.config, server, SERVICE)
        build = time.perf_counter() - started
        # A copy is cheap: more runs of it (its time is a few hundredths of a second, as
        # noisy as the differences between rows); fewer runs of the slow baseline on the
        # long histories (about 5 s each).
        slow = history.key not in ("12", "200")
        copies, upgrades = [], []
        for attempt in range(max(runs, COPY_RUNS)):
            copies.append(_copy(history.config, server))
            if attempt < (max(2, runs // 2) if slow else runs):
                upgrades.append(_upgrade_fresh(history.config, empty))
        drop_database(empty)
        rows.append(
            Figure(
                f"clone_{history.key}", history.label,
                statistics.median(copies), statistics.median(upgrades),
                "new empty database + upgrade head", "(scaling row)", True,
                extra={"template_build_s": build},
            )
        )  # fmt: skip
    by_key = {row.key: row for row in rows}
    headline, flat = by_key["clone_200"], by_key["clone_1000/200"]
    is_flat = flat.ours_s <= FLAT * headline.ours_s
    where = _where_a_copy_goes(server, next(h.config for h in histories if h.key == "200"))
    return (
        Figure(
            "template_clone",
            "a fresh database at head for a test, synthetic 200-revision history: a copy of "
            "its template",
            headline.ours_s, headline.baseline_s, "new empty database + upgrade head",
            "<= 0.1x; flat as the history grows", headline.ratio <= 0.1 and is_flat,
            note=f"1,000 revisions over the 200-revision schema: {flat.ours_s:.3f} s "
            f"({flat.ours_s / headline.ours_s:.2f}x the 200-revision copy; flat means <= "
            f"{FLAT}x); one table per revision, 1,000 tables: "
            f"{by_key['clone_1000'].ours_s:.3f} s: a copy follows the schema's size "
            "(Postgres copies each relation's files), not the history's length; the "
            f"template is built once per history version; where a copy's time goes: {where}",
        ),
        rows,
    )  # fmt: skip


def _where_a_copy_goes(server: URL, config: DbConfig) -> str:
    """One copy of the 200-revision template, profiled in this process."""
    from shared_db import templates

    made: list[URL] = []
    session = profile.profile_call(
        lambda: made.append(templates.database_at_head(config, server, SERVICE))
    )
    templates.drop(made[0])
    summary = profile.summarize(
        session,
        [
            profile.Bucket("the history's checksum (a stat per file)", profile.function(
                "history_checksum", "shared_db")),
            profile.Bucket("CREATE DATABASE ... TEMPLATE (the server copies)", profile.function(
                "_clone", "shared_db")),
            profile.Bucket("connecting", profile.function("connect_autocommit", "shared_db")),
            profile.Bucket("is the template there", profile.function("_ensure", "shared_db")),
        ],
    )  # fmt: skip
    return profile.line(summary)
