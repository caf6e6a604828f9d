#!/usr/bin/env bash
# Run a command with DATABASE_URL pointing at a PostgreSQL server with pgvector.
# A DATABASE_URL already in the environment is used as it is; otherwise the local
# server that scripts/postgres.sh manages is started (if needed) and used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${DATABASE_URL:-}" ]; then
  "$here/postgres.sh" start
  DATABASE_URL="$("$here/postgres.sh" url)"
  export DATABASE_URL
fi
exec "$@"
