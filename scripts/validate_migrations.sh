#!/usr/bin/env bash
# Validates the four migration histories; the exit code is the verdict (0 = sound).
# A thin wrapper over `invoke migrate.validate`: arguments pass through, e.g.
#   scripts/validate_migrations.sh --offline
#   scripts/validate_migrations.sh --against origin/main
#   scripts/validate_migrations.sh --service scoring_engine --json
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/invoke ]; then
  exec .venv/bin/invoke migrate.validate "$@"
fi
exec poetry run invoke migrate.validate "$@"
