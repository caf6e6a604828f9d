#!/usr/bin/env bash
# Fuzz the HTTP API from its OpenAPI document with schemathesis, against a live server.
#
# schemathesis is not a dependency of the project, and `make test` does not run this script.
# Install it into a virtualenv of its own, then run the script from a checkout whose .venv
# exists (`make test` or `make migrate` builds it):
#
#   python3.11 -m venv /tmp/schemathesis && /tmp/schemathesis/bin/pip install schemathesis
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/vizochok_fuzz \
#     SCHEMATHESIS=/tmp/schemathesis/bin/st scripts/fuzz-api.sh
#
# DATABASE_URL must name a database used for nothing else: the script migrates it, creates
# the tenants fuzz-a and fuzz-b, and the fuzzer writes conversations, products and settings
# into it. The script starts the reference merchant and the app under gunicorn on free ports
# of 127.0.0.1, with DJANGO_DEBUG=0 and the offline assistant, and stops both at the end.
#
# It runs schemathesis once per kind of key: fuzz-a's public key, secret key, secret key with
# only the chat scope, secret key with only the catalog scope, no key, and fuzz-b's secret
# and public keys. Before and after fuzz-b's runs it hashes every row of fuzz-a and fails
# if one changed. Reports and logs go to FUZZ_DIR (default $TMPDIR/vizochok-fuzz).
# FUZZ_MAX_EXAMPLES (default 40) and FUZZ_SEED (default 54) are passed to schemathesis. It
# runs one worker, because with two, hypothesis 6 on Python 3.11 sometimes fails in its own
# code with "AST constructor recursion depth mismatch".
set -euo pipefail

: "${DATABASE_URL:?Set DATABASE_URL to a database used only for fuzzing.}"
: "${SCHEMATHESIS:?Set SCHEMATHESIS to the st program of a virtualenv with schemathesis.}"
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
state="${FUZZ_DIR:-${TMPDIR:-/tmp}/vizochok-fuzz}"
max_examples="${FUZZ_MAX_EXAMPLES:-40}"
seed="${FUZZ_SEED:-54}"
mkdir -p "$state"
cd "$root"

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
app_port="$(free_port)"
merchant_port="$(free_port)"
merchant_url="http://127.0.0.1:$merchant_port"
app_url="http://127.0.0.1:$app_port"

export DJANGO_SETTINGS_MODULE=vizochok.settings
export DJANGO_DEBUG=0
export DJANGO_SECRET_KEY="fuzz-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
export DJANGO_ALLOWED_HOSTS=127.0.0.1
# The reference merchant listens on 127.0.0.1 over plain HTTP.
export WEBHOOK_ALLOW_HTTP=1
export WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8
# The offline assistant, which needs no LLM endpoint.
unset OPENAI_BASE_URL OPENAI_API_KEY

"$python" manage.py migrate --no-input >"$state/migrate.log"
"$python" scripts/fuzz_api_tenants.py create "$merchant_url" >"$state/keys.env" 2>"$state/tenants.log"
set -a
# shellcheck disable=SC1091
. "$state/keys.env"
set +a
head -n 50 demo/data/atb-catalog.jsonl >"$state/catalog.jsonl"
"$python" manage.py import_catalog --tenant fuzz-a "$state/catalog.jsonl" >"$state/import.log" 2>&1

pids=()
stop() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT

MERCHANT_WEBHOOK_SECRET="$FUZZ_A_WEBHOOK_SECRET" "$python" -m merchant --host 127.0.0.1 \
  --port "$merchant_port" --secret-env MERCHANT_WEBHOOK_SECRET \
  --stock demo/data/atb-stock.json --catalog demo/data/atb-catalog.jsonl \
  >"$state/merchant.log" 2>&1 &
pids+=("$!")
GUNICORN_BIND="127.0.0.1:$app_port" "$root/.venv/bin/gunicorn" -c python:vizochok.gunicorn \
  --no-control-socket vizochok.wsgi >"$state/app.log" 2>&1 &
pids+=("$!")

for url in "$merchant_url/health" "$app_url/api/v1/health"; do
  for _ in $(seq 50); do
    curl -sf "$url" >/dev/null && break
    sleep 0.2
  done
  if ! curl -sf "$url" >/dev/null; then
    echo "No response from $url within 10 s; see the logs in $state/." >&2
    exit 1
  fi
done

failed=0
fuzz() {
  local name="$1"
  shift
  echo "==> schemathesis with $name"
  if ! "$SCHEMATHESIS" run "$app_url/api/v1/schema?format=json" "$@" --checks all \
    --max-examples "$max_examples" --seed "$seed" --workers 1 --request-timeout 60 \
    --report ndjson --report-dir "$state/report-$name" >"$state/run-$name.txt" 2>&1; then
    failed=1
  fi
  grep -E "^  (❌|🚫) |generated," "$state/run-$name.txt" || true
}

fuzz a-public -H "Authorization: Bearer $FUZZ_A_PK"
fuzz a-secret -H "Authorization: Bearer $FUZZ_A_SK"
fuzz a-secret-chat -H "Authorization: Bearer $FUZZ_A_SK_CHAT"
fuzz a-secret-catalog -H "Authorization: Bearer $FUZZ_A_SK_CATALOG"
fuzz no-key

"$python" scripts/fuzz_api_tenants.py fingerprint fuzz-a >"$state/fuzz-a-before.txt"
fuzz b-secret -H "Authorization: Bearer $FUZZ_B_SK"
fuzz b-public -H "Authorization: Bearer $FUZZ_B_PK"
"$python" scripts/fuzz_api_tenants.py fingerprint fuzz-a >"$state/fuzz-a-after.txt"
if diff "$state/fuzz-a-before.txt" "$state/fuzz-a-after.txt"; then
  echo "fuzz-b's keys changed none of fuzz-a's rows."
else
  echo "fuzz-b's keys changed fuzz-a's rows (diff above)." >&2
  exit 1
fi

echo "Reports and logs: $state/ (run-*.txt has each failure with a curl command)."
exit "$failed"
