"""The tasks' one configuration, read from the environment when a task starts."""

import os
from collections.abc import Iterable
from typing import Any

from db_devtools.config import DevConfig


def dev_config(**overrides: Any) -> DevConfig:
    """The configuration of this invocation (``os.environ`` read once, here)."""
    return DevConfig.from_environ(os.environ, **overrides)


def with_databases(config: DevConfig, services: Iterable[str]) -> DevConfig:
    """``config`` with every one of ``services``' databases provisioned if needed."""
    from db_devtools.provisioning.resolve import with_databases as provision

    return provision(config, services)
