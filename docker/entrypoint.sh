#!/bin/sh
# Entry point of the service images (docker/Dockerfile): runs the image's service, which
# migrates its own database to head (unless SKIP_MIGRATIONS is 1/true/yes), then serves
# with uvicorn. Extra arguments go to the service, e.g. `docker run IMAGE --log-level debug`;
# `docker run IMAGE migrate` migrates and exits (docker/compose.yaml's migrate_<service>).
# `python` is the virtualenv's (/opt/venv/bin, first on PATH), whichever the base image.
set -eu

: "${SERVICE:?SERVICE is not set: build the image with --build-arg SERVICE=<service>}"
exec python -m "$SERVICE" --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" "$@"
