"""The development database provider of Alembic's own command line.

``env.py`` calls this (entry point ``signalmarket.database_provider``) when
``alembic -c packages/shared_db/alembic_<service>.ini ...`` runs with no database URL
in the environment, so the raw commands keep their zero setup in a checkout. It is a
front end: it reads the environment once, like the Invoke tasks do.
"""

import os
import sys

from shared_db.urls import render

from db_devtools.config import DevConfig
from db_devtools.provisioning.resolve import choice
from db_devtools.provisioning.resolve import database_url as provisioned_url


def database_url(service: str) -> str:
    """``service``'s database URL (with its password), provisioned when needed."""
    config = DevConfig.from_environ(os.environ)
    fallback = choice(config).fallback
    if fallback:
        sys.stderr.write(f"warning: {fallback}\n")  # a front end: raw alembic's
    return render(provisioned_url(config, service), show_password=True)
