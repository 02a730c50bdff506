"""``invoke bench``: the performance figures, written to docs/benchmarks.md (+ .json)."""

import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

if TYPE_CHECKING:
    from dev_tasks.bench.figures import Figure


@task(
    help={
        "runs": "runs per figure (the median is kept; default 5)",
        "sizes": "synthetic history sizes for the scaling table (default 500,5000,20000)",
        "skip-tests": "do not time the whole test suite (the slowest figure)",
        "only": "comma-separated figure groups to run: history, clone, upgrade, startup, "
        "concurrent, test (default: all; docs/benchmarks.md is written only for all)",
    }
)
def bench(
    c: Context,
    runs: int = 5,
    sizes: str = "500,5000,20000",
    skip_tests: bool = False,
    only: str = "",
) -> None:
    """Measure ours against raw Alembic/psql, side by side, and write docs/benchmarks.md."""
    from db_devtools.provisioning.resolve import test_server

    from dev_tasks.bench import clones, figures, measure, report, starts
    from dev_tasks.environment import dev_config

    groups = {g.strip() for g in only.split(",") if g.strip()}

    def wanted(group: str) -> bool:
        return not groups or group in groups

    counts = [int(size) for size in sizes.split(",") if size.strip()]
    results: list[Figure] = []
    scaling: list[Figure] = []
    copies: list[Figure] = []
    config = dev_config()
    # Bytecode as an installed environment has it (PYTHONDONTWRITEBYTECODE may be set).
    sources = sorted((config.project_root / "packages").glob("*/src"))
    measure.bytecode([*sources, Path(sysconfig.get_paths()["purelib"])])
    with figures.workdir() as scratch, test_server(config) as server:
        work = Path(scratch)
        if wanted("history"):
            results.append(figures.real_histories(config, runs))
            print(_line(results[-1]))
            for count in counts:
                scaling.append(
                    figures.synthetic_history(
                        count, max(2, runs // 2 if count > 5000 else runs), work
                    )
                )
                print(_line(scaling[-1]))
            headline = next((f for f in scaling if f.key == "synthetic_5000"), None)
            if headline:
                results.append(headline)
        if wanted("clone"):
            figure, copies = clones.template_clones(server, runs, work)
            for row in copies:
                print(_line(row))
            results.append(figure)
            print(_line(figure))
        steps: list[tuple[str, Callable[[], Figure]]] = [
            ("upgrade", lambda: figures.upgrade_synthetic(config, server, runs, work)),
            ("startup", lambda: starts.startup_at_head(server, runs)),
            ("concurrent", lambda: starts.concurrent_starts(server, max(2, runs // 2))),
        ]
        for group, measured in steps:
            if wanted(group):
                results.append(measured())
                print(_line(results[-1]))
    if wanted("test") and not skip_tests:
        results.append(figures.test_suite())
        print(_line(results[-1]))
    if groups:
        print("not written: docs/benchmarks.md is written by a full run (no --only)")
        return
    target = report.write(results, scaling, copies, config.project_root / "docs")
    print(f"wrote {target}")


def _line(f: "Figure") -> str:
    verdict = "" if f.goal.startswith("(") else f"; goal {f.goal}: {'met' if f.met else 'NOT met'}"
    note = f"\n    {f.note}" if f.note and not f.goal.startswith("(") else ""
    return f"{f.title}: {f.ours_s:.3f} s vs {f.baseline_s:.3f} s ({f.ratio:.2f}x{verdict}){note}"
