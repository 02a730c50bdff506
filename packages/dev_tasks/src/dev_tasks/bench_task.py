"""``invoke bench``: the performance figures, written to docs/benchmarks.md (+ .json)."""

import os
import sysconfig
from collections.abc import Callable
from datetime import UTC, datetime
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
        "only": "comma-separated figure groups to measure: history, clone, upgrade, startup, "
        "concurrent, test (default: all); the other figures stay as last written",
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
            results.append(_noted(lambda: figures.real_histories(config, runs)))
            for count in counts:
                runs_here = max(2, runs // 2 if count > 5000 else runs)
                with _Noting() as noting:
                    scaling.append(noting(figures.synthetic_history(count, runs_here, work)))
            headline = next((f for f in scaling if f.key == "synthetic_5000"), None)
            if headline:
                results.append(headline)
        if wanted("clone"):
            with _Noting() as noting:
                figure, copies = clones.template_clones(server, runs, work)
                results.append(noting(figure))
                copies = [noting(row) for row in copies]
        steps: list[tuple[str, Callable[[], Figure]]] = [
            ("upgrade", lambda: figures.upgrade_synthetic(config, server, runs, work)),
            ("startup", lambda: starts.startup_at_head(server, runs)),
            ("concurrent", lambda: starts.concurrent_starts(server, max(2, runs // 2))),
        ]
        for group, measured in steps:
            if wanted(group):
                results.append(_noted(measured))
    if wanted("test") and not skip_tests:
        results.append(_noted(figures.test_suite))
    for figure in [*results, *copies]:
        print(_line(figure))
    all_figures, scaling, copies = report.merged(results, scaling, copies, _docs(config))
    target = report.write(all_figures, scaling, copies, _docs(config))
    print(f"wrote {target}")


def _docs(config: object) -> Path:
    root: Path = config.project_root  # type: ignore[attr-defined]
    return root / "docs"


class _Noting:
    """Around a measurement: each figure it gives says when it was measured, and how busy
    the machine was (the 1-minute load average before and after)."""

    def __enter__(self) -> "_Noting":
        self.started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.before = os.getloadavg()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, figure: "Figure") -> "Figure":
        figure.measured = (
            f"measured {self.started}, load average {self.before:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)"
        )
        return figure


def _noted(measure: Callable[[], "Figure"]) -> "Figure":
    with _Noting() as noting:
        return noting(measure())


def _line(f: "Figure") -> str:
    verdict = "" if f.goal.startswith("(") else f"; goal {f.goal}: {'met' if f.met else 'NOT met'}"
    note = f"\n    {f.note}" if f.note and not f.goal.startswith("(") else ""
    return f"{f.title}: {f.ours_s:.3f} s vs {f.baseline_s:.3f} s ({f.ratio:.2f}x{verdict}){note}"
