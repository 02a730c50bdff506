"""The fast history readers give exactly Alembic's answers, and the workflow's cache
never a stale one: every change to a revision file is seen on the next read. (The real
histories are compared in test_history_validate.py.)"""

import os
import time
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from db_devtools.workflow import history_cache
from dev_tasks.bench.synthetic import write_history
from helpers import alembic_shape, reader_shape
from shared_db.history import History, read_directory


@pytest.mark.parametrize("count", [60, 1000])
def test_agrees_with_alembic_on_synthetic_histories(tmp_path: Path, count: int) -> None:
    versions = write_history(tmp_path, "scoring_engine", count)
    config = Config(str(tmp_path / "alembic_scoring_engine.ini"))
    ours = read_directory(versions)
    assert ours.merge_points(), "the synthetic history has merges"
    assert reader_shape(ours) == alembic_shape(ScriptDirectory.from_config(config))
    # The workflow's reader (every file compiled, no cache) reads the same graph.
    compiled = history_cache.read_directory(versions, None)
    assert compiled.revisions == ours.revisions and compiled.unreadable == []


@pytest.fixture
def cached_history(tmp_path: Path) -> Path:
    return write_history(tmp_path / "tree", "scoring_engine", 30)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_a_second_read_comes_from_the_cache(
    cached_history: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = history_cache.read_directory(cached_history, cache_dir)
    cache_files = list(cache_dir.rglob("*.pickle"))
    assert len(cache_files) == 1
    saved = cache_files[0].stat().st_mtime_ns

    def no_parsing(path: Path) -> history_cache.Fields:
        raise AssertionError(f"{path.name} was parsed again")

    monkeypatch.setattr(history_cache, "_fields", no_parsing)
    second = history_cache.read_directory(cached_history, cache_dir)
    assert second.revisions == first.revisions and second.heads == first.heads
    assert cache_files[0].stat().st_mtime_ns == saved, "an unchanged cache is not rewritten"


def test_every_change_is_seen_despite_the_cache(cached_history: Path, cache_dir: Path) -> None:
    def read() -> History:
        return history_cache.read_directory(cached_history, cache_dir)

    assert read().heads == ("0030",)
    # An edit that keeps the size and even the mtime is still seen (ctime changes).
    target = cached_history / "0030_synthetic.py"
    before = target.stat()
    source = target.read_text()
    target.write_text(source.replace('down_revision = "0029"', 'down_revision = "0028"'))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size
    changed = read()
    assert changed.revisions["0030"].down == ("0028",)
    assert changed.heads == ("0029", "0030")
    # A new file, a removed file, a file turned invalid.
    (cached_history / "0031_synthetic.py").write_text(
        source.replace('"0030"', '"0031"').replace(
            'down_revision = "0029"', 'down_revision = "0030"'
        )
    )
    assert "0031" in read().revisions
    (cached_history / "0031_synthetic.py").unlink()
    assert "0031" not in read().revisions
    time.sleep(0.01)
    (cached_history / "0029_synthetic.py").write_text("revision = (\n")
    broken = read()
    assert "0029" not in broken.revisions
    assert [u.path.name for u in broken.unreadable] == ["0029_synthetic.py"]
    # ... and read back from the cache, still unreadable, for the same reason.
    again = read()
    assert again.unreadable == broken.unreadable


def test_a_corrupt_cache_is_ignored(cached_history: Path, cache_dir: Path) -> None:
    expected = history_cache.read_directory(cached_history, cache_dir).heads
    caches = list(cache_dir.rglob("*.pickle"))
    assert caches
    for cache in caches:
        cache.write_bytes(b"not a pickle")
    assert history_cache.read_directory(cached_history, cache_dir).heads == expected


def test_an_unwritable_cache_only_costs_speed(cached_history: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")  # the cache cannot be made below a file
    history = history_cache.read_directory(cached_history, blocker / "cache")
    assert history.heads == ("0030",) and len(history.revisions) == 30
    assert blocker.read_text(encoding="utf-8") == ""


def test_each_folder_has_its_own_cache(tmp_path: Path, cache_dir: Path) -> None:
    small = write_history(tmp_path / "small", "scoring_engine", 3)
    large = write_history(tmp_path / "large", "scoring_engine", 5)
    assert history_cache.read_directory(small, cache_dir).heads == ("0003",)
    assert history_cache.read_directory(large, cache_dir).heads == ("0005",)
    assert history_cache.read_directory(small, cache_dir).heads == ("0003",)
    assert len(list(cache_dir.rglob("*.pickle"))) == 2
