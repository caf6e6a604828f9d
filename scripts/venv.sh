#!/usr/bin/env bash
# Create the project's virtualenv: scripts/venv.sh PYTHON VENV_DIR
#
# Debian ships the venv module's pip bootstrap (ensurepip) in a separate package. When it is
# missing, root installs it with apt-get; anyone else is told which package to install.
set -euo pipefail
python=$1
venv=$2

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    exit 0
fi
rm -rf "$venv"
if "$python" -m venv "$venv" 2>/dev/null; then
    exit 0
fi
rm -rf "$venv"
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "venv.sh: installing python$version-venv with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$version-venv" >/dev/null
    exec "$python" -m venv "$venv"
fi
echo "venv.sh: $python cannot create virtualenvs. Install the venv module, for example" \
    "'sudo apt-get install python$version-venv' on Debian or Ubuntu, then run make again." >&2
exit 1
