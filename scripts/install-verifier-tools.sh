#!/usr/bin/env bash
# Install Node.js and Go for the tests that run the merchant signature verifiers in
# docs/examples. Runs apt-get only as root and only for a missing tool; without root the
# tests that need a missing tool skip with the reason. Never fails the build.
set -uo pipefail

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-verifier-tools: ${missing[*]} missing and not root with apt-get;" \
        "the verifier tests for them will skip." >&2
    exit 0
fi
echo "install-verifier-tools: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2; then
    echo "install-verifier-tools: apt-get failed; the verifier tests for ${missing[*]} will skip." >&2
fi
exit 0
