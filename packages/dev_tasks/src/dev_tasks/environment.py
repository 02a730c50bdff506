"""The tasks' one configuration, read from the environment when a task starts."""

import os
import sys
from collections.abc import Iterable
from typing import Any

from db_devtools.config import DevConfig

_announced: set[str] = set()


def dev_config(**overrides: Any) -> DevConfig:
    """The configuration of this invocation (``os.environ`` read once, here)."""
    return DevConfig.from_environ(os.environ, **overrides)


def announce_backend(config: DevConfig) -> str:
    """The backend that provides Postgres; when an engine answers but the Docker path
    cannot be used, say why once per process (one warning line on stderr)."""
    from db_devtools.provisioning.resolve import choice

    chosen = choice(config)
    if chosen.fallback and chosen.fallback not in _announced:
        _announced.add(chosen.fallback)
        print(f"warning: {chosen.fallback}", file=sys.stderr)
    return chosen.backend


def with_databases(config: DevConfig, services: Iterable[str]) -> DevConfig:
    """``config`` with every one of ``services``' databases provisioned if needed."""
    from db_devtools.provisioning.resolve import with_databases as provision

    services = list(services)
    if any(config.url_for(service) is None for service in services):
        announce_backend(config)
    return provision(config, services)
