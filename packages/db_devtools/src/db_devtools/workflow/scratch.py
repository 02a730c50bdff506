"""Places to try a change before it is made: a history assembled in a temporary folder,
and scratch databases on the development server. Nothing of the checkout, and no
service's own database, is touched; both are gone afterwards."""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from shared_db.runner import Progress
from shared_db.urls import render
from sqlalchemy.engine import URL

from db_devtools.config import DevConfig
from db_devtools.provisioning.databases import scratch_database
from db_devtools.provisioning.resolve import admin_url
from db_devtools.workflow.head_marker import MARKER


@contextlib.contextmanager
def history_folder(
    config: DevConfig, service: str, files: Mapping[str, str]
) -> Iterator[DevConfig]:
    """``config`` with ``service``'s history made of ``files`` (name -> source) only, in a
    temporary folder beside a copy of its ``env.py`` and template."""
    with tempfile.TemporaryDirectory(prefix=f"migrate-{service}-") as folder:
        location = Path(folder) / service
        versions = location / "versions"
        versions.mkdir(parents=True)
        for item in config.script_location(service).iterdir():
            if item.is_file() and item.name != MARKER:
                shutil.copy2(item, location / item.name)
        for name, source in files.items():
            (versions / name).write_text(source, encoding="utf-8")
        yield config.replace(migrations_dir=Path(folder))


@contextlib.contextmanager
def scratch(config: DevConfig, service: str, prefix: str) -> Iterator[tuple[DevConfig, URL]]:
    """A new, empty database on the server of ``service``'s database (the development
    server), as ``service``'s database in the configuration yielded; dropped after."""
    with scratch_database(admin_url(config, service), f"{prefix}_{service}") as url:
        yield config.with_urls({service: render(url, show_password=True)}), url


def quiet(_progress: Progress) -> None:
    """A runner reporter that reports nothing (a scratch run's steps are not news)."""
