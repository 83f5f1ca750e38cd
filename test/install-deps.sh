#!/usr/bin/env bash
# Installs what outbox needs to build, test and demo on Debian 12:
# PostgreSQL 15 with its server headers, libcurl, Perl's IPC::Run (for
# PostgreSQL's TAP modules), Python 3 (the test receiver), make and gcc,
# PgBouncer (the pooler test) and gdb (tests that hold a process at a
# chosen point).
#
# As root it uses apt-get; otherwise sudo when it works without a password;
# otherwise it only reports what is missing.  Packages already installed
# are not fetched again (set OUTBOX_FORCE_APT=1 to run apt-get anyway).
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev
          libipc-run-perl perl python3 python3-psycopg2 make gcc pgbouncer gdb)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 && -z ${OUTBOX_FORCE_APT:-} ]]; then
    echo "install-deps: all packages present (${packages[*]})"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "install-deps: not root and no password-less sudo; missing: ${missing[*]:-none}" >&2
    echo "install-deps: install them with: apt-get install ${packages[*]}" >&2
    exit 0
fi

echo "install-deps: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "install-deps: done"
