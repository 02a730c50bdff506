"""``python -m <service>``: migrate, then serve with uvicorn; exit 1 if startup fails."""

import argparse
import logging
import sys
from importlib import import_module

import uvicorn

from shared_db.errors import SharedDbError
from shared_db.web.app import prepare_database
from shared_db.web.settings import ServiceSettings


def run(service: str, settings: ServiceSettings, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {service}", description=f"Run {service}.")
    parser.add_argument("--host", default=settings.host, help=f"default: {settings.host}")
    parser.add_argument("--port", type=int, default=settings.port, help=f"default: {settings.port}")
    parser.add_argument("--log-level", default=settings.log_level, help="debug, info, warning")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Keep Alembic's "Running upgrade A -> B" lines, not its plugin chatter.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").setLevel(args.log_level.upper())
    # Migrate before serving, so that a failure is one log line and exit code 1
    # (a failing lifespan makes uvicorn log a traceback instead).
    app = import_module(f"{service}.app").app
    try:
        prepare_database(settings, settings.resolved_database_url())
    except SharedDbError as exc:
        logging.getLogger("signalmarket.startup").error("%s: startup failed: %s", service, exc)
        return 1
    app.state.database_prepared = True
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    server = uvicorn.Server(config)
    server.run()
    # uvicorn returns normally when the lifespan startup failed: turn that into exit 1.
    return 0 if server.started else 1


def main(service: str, settings: ServiceSettings) -> None:
    sys.exit(run(service, settings))
