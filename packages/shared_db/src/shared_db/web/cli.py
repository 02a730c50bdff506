"""``python -m <service> [serve]``: migrate, then serve with uvicorn.
``python -m <service> migrate``: migrate only, then exit (a deployment's migrate step:
a Kubernetes Job or init container, compose's one-shot service). Exit codes: see
``shared_db.exit_codes``."""

import argparse
import logging
import sys
from importlib import import_module

from shared_db.web.app import StartupFailed, start
from shared_db.web.settings import ServiceSettings


def run(settings_class: type[ServiceSettings], argv: list[str] | None = None) -> int:
    service = settings_class.service
    parser = argparse.ArgumentParser(prog=f"python -m {service}", description=f"Run {service}.")
    parser.add_argument(
        "command",
        nargs="?",
        choices=("serve", "migrate"),
        default="serve",
        help="serve (default: migrate on startup unless SKIP_MIGRATIONS, then serve), or "
        "migrate (migrate the database to head and exit: 0 when done)",
    )
    parser.add_argument("--host", help="default: HOST, else 127.0.0.1")
    parser.add_argument("--port", type=int, help="default: PORT, else the service's port")
    parser.add_argument("--log-level", default="", help="debug, info, warning (default: LOG_LEVEL)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(args.log_level or "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The runner logs each revision it applies; Alembic's own INFO lines repeat them.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Migrate before serving, so that a failure is one log line and exit code 1
    # (a failing lifespan makes uvicorn log a traceback instead).
    try:
        settings, config = start(settings_class, migrate_only=args.command == "migrate")
    except StartupFailed as failed:
        return failed.code  # start() logged the one line
    if args.command == "migrate":
        return 0
    log_level = args.log_level or settings.log_level
    logging.getLogger().setLevel(log_level.upper())

    import uvicorn

    app = import_module(f"{service}.app").app
    app.state.prepared = (settings, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_level=log_level.lower(),
        )
    )
    server.run()
    # uvicorn returns normally when the lifespan startup failed: turn that into exit 1.
    return 0 if server.started else 1


def main(settings_class: type[ServiceSettings]) -> None:
    sys.exit(run(settings_class))
