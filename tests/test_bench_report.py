"""The benchmark's own bookkeeping, without measuring anything: re-measured figures
replace those last written and the others stay; import and profile summaries."""

import json
import time
from pathlib import Path

from dev_tasks.bench import profile, report
from dev_tasks.bench.figures import Figure
from dev_tasks.bench.starts import summarize_importtime


def _figure(key: str, ours: float, **extra: float) -> Figure:
    return Figure(key, f"title {key}", ours, 1.0, "base", "<= 2x", ours <= 2, "n", extra, "m")


def test_a_partial_run_keeps_the_figures_it_did_not_measure(tmp_path: Path) -> None:
    first = [_figure("a", 1.0), _figure("b", 3.0, upgrades=1.0)]
    copies = [_figure("clone_200", 0.05, template_build_s=0.9)]
    report.write(first, [], copies, tmp_path)
    figures, scaling, kept_copies = report.merged([_figure("b", 1.5)], [], [], tmp_path)
    assert [(f.key, f.ours_s, f.met) for f in figures] == [("a", 1.0, True), ("b", 1.5, True)]
    assert scaling == []
    assert [(c.key, c.extra, c.measured) for c in kept_copies] == [
        ("clone_200", {"template_build_s": 0.9}, "m")
    ]
    report.write(figures, scaling, kept_copies, tmp_path)
    written = json.loads((tmp_path / "benchmarks.json").read_text())
    assert [f["key"] for f in written["figures"]] == ["a", "b"]
    assert "| title b | 1.500 s |" in (tmp_path / "benchmarks.md").read_text()


def test_importtime_is_summed_by_top_level_package() -> None:
    output = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       200 |        200 |   sqlalchemy.sql",
            "import time:      1000 |       1200 | sqlalchemy",
            "import time:       500 |        500 | fastapi",
            "INFO something else | with | pipes",
        ]
    )
    assert summarize_importtime(output, top=2) == (
        "0.00 s in all: sqlalchemy 0.00 s, fastapi 0.00 s"
    )
    big = output.replace("1000 |", "900000 |")
    assert summarize_importtime(big, top=1) == "0.90 s in all: sqlalchemy 0.90 s"


def _slow() -> None:
    time.sleep(0.2)


def _quick() -> None:
    time.sleep(0.05)


def _work() -> None:
    _slow()
    _quick()


def test_a_profile_is_summed_into_buckets_that_never_count_twice() -> None:
    session = profile.profile_call(_work)
    slow, quick = profile.function("_slow"), profile.function("_quick")
    parts = dict(
        profile.summarize(session, [profile.Bucket("slow", slow), profile.Bucket("quick", quick)])
    )
    assert parts["slow"] > parts["quick"] > 0
    assert sum(parts.values()) <= session.duration + 0.01
    # The outermost frame a bucket matches takes its callees' time: nothing twice.
    outer = dict(
        profile.summarize(
            session,
            [
                profile.Bucket("slow", slow),
                profile.Bucket("quick", quick),
                profile.Bucket("all the work", profile.function("_work")),
            ],
        )
    )
    assert "slow" not in outer and "quick" not in outer
    assert outer["all the work"] >= parts["slow"] + parts["quick"] - 0.01
