"""The fast history reader and its cache give exactly Alembic's answers, and never a
stale one: every change to a revision file is seen on the next read. (The real
histories are compared in test_history_validate.py.)"""

import os
import time
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from dev_tasks.bench.synthetic import write_history
from helpers import alembic_shape, reader_shape
from shared_db.history import read_directory


@pytest.mark.parametrize("count", [60, 1000])
def test_agrees_with_alembic_on_synthetic_histories(tmp_path: Path, count: int) -> None:
    versions = write_history(tmp_path, "scoring_engine", count)
    config = Config(str(tmp_path / "alembic_scoring_engine.ini"))
    ours = read_directory(versions, use_cache=False)
    assert ours.merge_points(), "the synthetic history has merges"
    assert reader_shape(ours) == alembic_shape(ScriptDirectory.from_config(config))


@pytest.fixture
def cached_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return write_history(tmp_path / "tree", "scoring_engine", 30)


def test_a_second_read_comes_from_the_cache(cached_history: Path) -> None:
    first = read_directory(cached_history)
    cache_files = list((cached_history.parents[2] / "cache").rglob("*.pickle"))
    assert len(cache_files) == 1
    second = read_directory(cached_history)
    assert second.revisions == first.revisions and second.heads == first.heads


def test_every_change_is_seen_despite_the_cache(cached_history: Path) -> None:
    assert read_directory(cached_history).heads == ("0030",)
    # An edit that keeps the size and even the mtime is still seen (ctime changes).
    target = cached_history / "0030_synthetic.py"
    before = target.stat()
    source = target.read_text()
    target.write_text(source.replace('down_revision = "0029"', 'down_revision = "0028"'))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size
    changed = read_directory(cached_history)
    assert changed.revisions["0030"].down == ("0028",)
    assert changed.heads == ("0029", "0030")
    # A new file, a removed file, a file turned invalid.
    (cached_history / "0031_synthetic.py").write_text(
        source.replace('"0030"', '"0031"').replace(
            'down_revision = "0029"', 'down_revision = "0030"'
        )
    )
    assert "0031" in read_directory(cached_history).revisions
    (cached_history / "0031_synthetic.py").unlink()
    assert "0031" not in read_directory(cached_history).revisions
    time.sleep(0.01)
    (cached_history / "0029_synthetic.py").write_text("revision = (\n")
    broken = read_directory(cached_history)
    assert "0029" not in broken.revisions
    assert [u.path.name for u in broken.unreadable] == ["0029_synthetic.py"]


def test_a_corrupt_cache_is_ignored(cached_history: Path) -> None:
    expected = read_directory(cached_history).heads
    for cache in (cached_history.parents[2] / "cache").rglob("*.pickle"):
        cache.write_bytes(b"not a pickle")
    assert read_directory(cached_history).heads == expected
