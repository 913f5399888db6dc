#!/usr/bin/env bash
# Install the system packages Patroli's test suite needs, on Debian or Ubuntu:
#
#   - a PostgreSQL server (the distribution's `postgresql`) when none is installed,
#   - PostGIS for every installed server major version (postgresql-<major>-postgis-3),
#   - Chromium, for the browser tests,
#   - Mosquitto (the broker and mosquitto_passwd), for the OwnTracks-over-MQTT tests,
#   - nginx, for the tests of several instances behind a proxy (deploy/nginx/patroli.conf;
#     the tests run it as their own foreground process, the system service is not needed),
#
# and make sure the local `main` cluster(s) are running.
#
# Idempotent and quiet: when everything is already there it only looks (well under a second)
# and prints nothing; `apt-get update` runs only when something has to be installed.
# Runs as root, or through sudo when that is available. Without either it prints what to
# install and exits 0, so that a user-level `make test` goes on (tests needing the missing
# pieces then skip or fail on their own).
set -euo pipefail

me="install-system-deps"
say() { printf '%s: %s\n' "$me" "$*" >&2; }

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    say "no apt-get/dpkg here (not Debian/Ubuntu): install PostgreSQL with PostGIS 3 and" \
        "Chromium yourself"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# --- looking (no privileges needed) -------------------------------------------------------

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# Major versions of the installed PostgreSQL server packages (postgresql-15, postgresql-16, ...).
server_majors() {
    dpkg-query -W -f='${Package} ${db:Status-Status}\n' 'postgresql-[0-9]*' 2>/dev/null \
        | awk '$1 ~ /^postgresql-[0-9]+$/ && $2 == "installed" { sub(/^postgresql-/, "", $1); print $1 }' \
        | sort -n || true
}

# "<version> <cluster> <status>" for every local cluster.
clusters() {
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters -h 2>/dev/null | awk '{ print $1, $2, $4 }' || true
    fi
}

missing_packages() {
    local majors major
    majors=$(server_majors)
    if [ -z "$majors" ]; then
        echo postgresql
    fi
    for major in $majors; do
        is_installed "postgresql-$major-postgis-3" || echo "postgresql-$major-postgis-3"
    done
    is_installed chromium || echo chromium
    is_installed mosquitto || echo mosquitto
    is_installed nginx || echo nginx
}

# --- acting ------------------------------------------------------------------------------

as_root=()
can_act() {
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
        return 0
    fi
    if command -v sudo >/dev/null 2>&1; then
        if sudo -n true 2>/dev/null; then
            as_root=(sudo -n)
            return 0
        fi
        if [ -t 0 ]; then # a person at a terminal can type the password
            as_root=(sudo)
            return 0
        fi
    fi
    return 1
}

log=$(mktemp "${TMPDIR:-/tmp}/$me.XXXXXX")
trap 'rm -f "$log"' EXIT

# Run quietly; on failure show what the command said.
quiet() {
    if ! "$@" >"$log" 2>&1; then
        say "failed: $*"
        cat "$log" >&2
        return 1
    fi
}

apt_updated=0
apt_update() {
    [ "$apt_updated" -eq 1 ] && return 0
    local try
    for try in $(seq 1 60); do
        if "${as_root[@]}" apt-get -qq -o DPkg::Lock::Timeout=600 update >"$log" 2>&1; then
            apt_updated=1
            return 0
        fi
        if grep -qi 'could not get lock\|unable to lock' "$log"; then
            [ "$try" -eq 1 ] && say "apt is busy (another install is running); waiting"
            sleep 10
            continue
        fi
        break
    done
    say "failed: apt-get update"
    cat "$log" >&2
    return 1
}

apt_install() {
    [ "$#" -gt 0 ] || return 0
    apt_update
    local pkg available=()
    for pkg in "$@"; do
        if apt-cache show "$pkg" >/dev/null 2>&1; then
            available+=("$pkg")
        else
            say "warning: no package $pkg in this distribution's archive; skipping it"
        fi
    done
    [ "${#available[@]}" -gt 0 ] || return 0
    say "installing ${available[*]}"
    quiet "${as_root[@]}" apt-get -qq -y -o DPkg::Lock::Timeout=600 install "${available[@]}"
}

ensure_clusters_running() {
    local version name status major
    if [ -z "$(clusters)" ]; then
        # A server package without a cluster (the package was told not to create one).
        for major in $(server_majors); do
            say "creating PostgreSQL cluster $major/main"
            quiet "${as_root[@]}" pg_createcluster "$major" main
        done
    fi
    while read -r version name status; do
        [ "$name" = main ] || continue
        case "$status" in
            online*) ;;
            *)
                say "starting PostgreSQL cluster $version/$name"
                quiet "${as_root[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start
                ;;
        esac
    done < <(clusters)
}

ensure_db_role() {
    # The tests connect over the local socket as the invoking OS user (peer auth on a stock
    # Debian install), so that user needs a PostgreSQL role allowed to create databases.
    local user="${SUDO_USER:-$(id -un)}"
    command -v psql >/dev/null 2>&1 || return 0
    if psql -h /var/run/postgresql -U "$user" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
        return 0
    fi
    can_act || { say "create a PostgreSQL role for $user: sudo -u postgres createuser -s $user"; return 0; }
    say "creating PostgreSQL superuser role $user"
    quiet "${as_root[@]}" runuser -u postgres -- createuser -s "$user" || true
}

# --- main --------------------------------------------------------------------------------

mapfile -t missing < <(missing_packages)
down=$(clusters | awk '$2 == "main" && $3 !~ /^online/ { print $1 "/" $2 }')

if [ "${#missing[@]}" -eq 0 ] && [ -z "$down" ] && [ -n "$(clusters)" ]; then
    ensure_db_role
    exit 0 # everything in place
fi

if ! can_act; then
    say "not root and no usable sudo; as root, please run:"
    if [ "${#missing[@]}" -gt 0 ]; then
        say "  apt-get update && apt-get install -y ${missing[*]}"
        if [ "${missing[0]}" = postgresql ]; then
            say "  apt-get install -y postgresql-<major>-postgis-3   (<major>: see pg_lsclusters)"
        fi
    fi
    if [ -z "$(clusters)" ] && [ "${#missing[@]}" -eq 0 ]; then
        say "  pg_createcluster --start <major> main"
    fi
    for cluster in $down; do
        say "  pg_ctlcluster --skip-systemctl-redirect ${cluster%/*} ${cluster#*/} start"
    done
    exit 0
fi

if [ "${#missing[@]}" -gt 0 ] && [ "${missing[0]}" = postgresql ]; then
    # The server first: which PostGIS package fits depends on the major version it brings.
    apt_install postgresql
    mapfile -t missing < <(missing_packages)
fi
apt_install "${missing[@]}"
ensure_clusters_running
ensure_db_role
