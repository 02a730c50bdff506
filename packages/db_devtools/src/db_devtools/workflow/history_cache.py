"""The histories as the workflow reads them: every file compiled, results cached.

A file whose inode, size, mtime and ctime are unchanged since the last read comes
from a cache under the configuration's ``cache_dir``; any change to a file, or a new
or removed file, is read again. A read-only cache folder only costs speed.
"""

import hashlib
import os
import pickle
from pathlib import Path

from shared_db.history import History, Revision, Unreadable, parse_revision_file

from db_devtools.config import DevConfig

Stamp = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns
# What a file says, in plain tuples (cheap to pickle): a revision's fields, or why not.
Fields = (
    tuple[
        str,
        tuple[str, ...],
        tuple[str, ...],
        tuple[str, ...],
        str,
        str | None,
        tuple[tuple[str, str], ...],
    ]
    | str
)
CACHE_VERSION = 5


def _cache_file(cache_dir: Path, directory: Path) -> Path:
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:24]
    return cache_dir / "history" / f"{key}.pickle"


def _load(path: Path) -> dict[str, tuple[Stamp, Fields]]:
    try:
        with path.open("rb") as handle:
            version, entries = pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError):
        return {}
    return entries if version == CACHE_VERSION and isinstance(entries, dict) else {}


def _save(path: Path, entries: dict[str, tuple[Stamp, Fields]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        with scratch.open("wb") as handle:
            pickle.dump((CACHE_VERSION, entries), handle, protocol=pickle.HIGHEST_PROTOCOL)
        scratch.replace(path)  # atomic: readers see the old or the new cache, never half
    except OSError:
        pass


def _fields(path: Path) -> Fields:
    try:
        r = parse_revision_file(path, check_syntax=True)
    except ValueError as exc:
        return str(exc)
    return (r.id, r.down, r.branch_labels, r.depends_on, r.message, r.phase, r.replaces)


def read_directory(directory: Path, cache_dir: Path | None) -> History:
    """The history in ``directory``, every file compiled; cached when ``cache_dir`` is set."""
    stamps: list[tuple[str, Stamp]] = []
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                if entry.name.endswith(".py") and entry.name != "__init__.py" and entry.is_file():
                    st = entry.stat()
                    stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    stamps.append((entry.name, stamp))
    except FileNotFoundError:
        return History()
    stamps.sort()
    cache_path = _cache_file(cache_dir, directory) if cache_dir else None
    cached = _load(cache_path) if cache_path else {}
    fresh: dict[str, tuple[Stamp, Fields]] = {}
    changed = len(cached) != len(stamps)
    for name, stamp in stamps:
        hit = cached.get(name)
        if hit is None or hit[0] != stamp:
            hit, changed = (stamp, _fields(directory / name)), True
        fresh[name] = hit
    if cache_path and changed:
        _save(cache_path, fresh)
    history = History()
    for name, (_stamp, fields) in fresh.items():
        if isinstance(fields, str):
            history.unreadable.append(Unreadable(directory / name, fields))
        else:
            history.add(
                Revision(
                    fields[0],
                    fields[1],
                    fields[2],
                    fields[3],
                    directory / name,
                    fields[4],
                    fields[5],
                    fields[6],
                )
            )
    return history


def read_history(config: DevConfig, service: str) -> History:
    """``service``'s history as the workflow sees it (cached, every file compiled)."""
    return read_directory(config.versions_dir(service), config.cache_dir)
