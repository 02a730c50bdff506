"""The one factory of Alembic configurations: every path to Alembic goes through it."""

from argparse import Namespace
from importlib.util import find_spec

from alembic.config import Config
from sqlalchemy.engine import Connection

from shared_db.config import DbConfig

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
    config: DbConfig,
    service: str,
    *,
    connection: Connection | None = None,
    post_write_hooks: bool = True,
) -> Config:
    """An Alembic ``Config`` for ``service``, equal to ``alembic_<service>.ini``.

    Built in code so that an installed package (no source checkout, no ini file) finds
    its migrations. ``env.py`` gets ``config`` (``attributes["db_config"]``) and, when
    given, ``connection`` to run on (``attributes["connection"]``). Without
    ``post_write_hooks`` Alembic does not run ruff on a file it writes (and prints
    nothing of it): the dev tooling's authoring runs ruff itself, output captured.
    """
    location = config.script_location(service)
    # Quiet: Alembic's own progress lines would be printed from library code.
    alembic = Config(cmd_opts=Namespace(quiet=True))
    alembic.set_main_option("script_location", str(location))
    alembic.set_main_option("version_locations", str(location / "versions"))
    alembic.set_main_option("path_separator", "os")
    alembic.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    alembic.set_main_option("truncate_slug_length", "40")
    if post_write_hooks and find_spec("ruff") is not None:
        # Generated revisions come out lint-clean and formatted, like hand-written code.
        for key, value in POST_WRITE_HOOKS.items():
            alembic.set_section_option("post_write_hooks", key, value)
    alembic.attributes["db_config"] = config
    if connection is not None:
        alembic.attributes["connection"] = connection
    return alembic
