"""The one factory of Alembic configurations: every front end goes through it."""

from argparse import Namespace
from importlib.util import find_spec

from alembic.config import Config
from sqlalchemy.engine import URL, Connection

from shared_db.paths import script_location, versions_dir

__all__ = ["alembic_config", "script_location", "versions_dir"]

POST_WRITE_HOOKS = {
    "hooks": "ruff_fix, ruff_format",
    "ruff_fix.type": "module",
    "ruff_fix.module": "ruff",
    "ruff_fix.options": "check --fix --quiet REVISION_SCRIPT_FILENAME",
    "ruff_format.type": "module",
    "ruff_format.module": "ruff",
    "ruff_format.options": "format --quiet REVISION_SCRIPT_FILENAME",
}


def alembic_config(
    service: str,
    *,
    url: str | URL | None = None,
    connection: Connection | None = None,
) -> Config:
    """An Alembic ``Config`` for ``service``, equal to ``alembic_<service>.ini``.

    Built in code so that an installed package (no source checkout, no ini file)
    finds its migrations. ``connection`` is handed to env.py as is; ``url`` is
    used instead of the environment's or the provisioned one.
    """
    location = script_location(service)
    # Quiet: Alembic's own progress lines would be printed from library code.
    config = Config(cmd_opts=Namespace(quiet=True))
    config.set_main_option("script_location", str(location))
    config.set_main_option("version_locations", str(location / "versions"))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.set_main_option("truncate_slug_length", "40")
    if find_spec("ruff") is not None:
        # Generated revisions come out lint-clean and formatted, like hand-written code.
        for key, value in POST_WRITE_HOOKS.items():
            config.set_section_option("post_write_hooks", key, value)
    if url is not None:
        rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config
