"""``invoke bench``: the performance figures, written to docs/benchmarks.md (+ .json)."""

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
    }
)
def bench(
    c: Context, runs: int = 5, sizes: str = "500,5000,20000", skip_tests: bool = False
) -> None:
    """Measure ours against raw Alembic/psql, side by side, and write docs/benchmarks.md."""
    from db_devtools.provisioning.resolve import test_server

    from dev_tasks.bench import figures, report
    from dev_tasks.environment import dev_config

    counts = [int(size) for size in sizes.split(",") if size.strip()]
    results = []
    config = dev_config()
    with figures.workdir() as scratch, test_server(config) as server:
        from pathlib import Path

        work = Path(scratch)
        results.append(figures.real_histories(config, runs))
        print(_line(results[-1]))
        scaling = []
        for count in counts:
            scaling.append(
                figures.synthetic_history(count, max(2, runs // 2 if count > 5000 else runs), work)
            )
            print(_line(scaling[-1]))
        headline = next((f for f in scaling if f.key == "synthetic_5000"), None)
        if headline:
            results.append(headline)
        for figure in (
            figures.upgrade_synthetic(config, server, runs, work),
            figures.startup_at_head(server, runs),
            figures.concurrent_starts(server),
        ):
            results.append(figure)
            print(_line(figure))
    if not skip_tests:
        results.append(figures.test_suite())
        print(_line(results[-1]))
    target = report.write(results, scaling, config.project_root / "docs")
    print(f"wrote {target}")


def _line(f: "Figure") -> str:
    verdict = "" if f.goal.startswith("(") else f"; goal {f.goal}: {'met' if f.met else 'NOT met'}"
    return f"{f.title}: {f.ours_s:.3f} s vs {f.baseline_s:.3f} s ({f.ratio:.2f}x{verdict})"
