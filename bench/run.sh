#!/usr/bin/env bash
# The outbox benchmark.
#
#   bash bench/run.sh            # full run: about 4 minutes on 2 cores
#   bash bench/run.sh --quick    # small sizes, 5 s runs: under a minute
#
# Full: 30 s pgbench runs (4 clients), a 100,000-message backlog, latency
# paced at 1000 messages/s for 30 s.  --quick: 5 s runs, 5,000 messages,
# 200 messages/s for 5 s; it is meant for the test suite and checks the
# machinery (no message lost), not the timing targets.
#
# As root on Debian 12 it installs what it needs with apt-get (PostgreSQL 15
# and the build dependencies through test/install-deps.sh, plus nginx-light,
# wrk and curl), builds and installs the extension (skip that with
# OUTBOX_SKIP_INSTALL=1), then runs bench/bench.sh as the postgres user in a
# scratch directory: a throwaway cluster and an nginx receiver on 127.0.0.1,
# pgbench producers, and a report table at the end.  Every process it
# starts is stopped when it exits, however it exits.
#
# Exit status: 0 when the benchmark ran and no message was lost, whatever
# the timings; non-zero when a message was lost or something broke.  The
# scratch directory is removed on success and kept on failure (OUTBOX_KEEP=1
# keeps it always).
set -euo pipefail

pgbin=/usr/lib/postgresql/15/bin
export PATH="$pgbin:$PATH"

mode=full
for arg in "$@"; do
    case $arg in
        --quick) mode=quick ;;
        --full) mode=full ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "usage: bash bench/run.sh [--quick]" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

if [[ -z ${OUTBOX_SKIP_INSTALL:-} ]]; then
    bash test/install-deps.sh
fi

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    missing+=(nginx-light)
fi
if [[ ! -x $pgbin/pgbench ]]; then
    # pgbench ships with postgresql-15 on Debian 12; older layouts put it in contrib
    if installed postgresql-15; then missing+=(postgresql-contrib); else missing+=(postgresql-15); fi
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "bench: missing ${missing[*]}; run as root or: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "bench: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # Debian starts nginx on port 80 when it is installed (unless a
    # policy-rc.d forbids it); the benchmark runs its own, so stop that one.
    if [[ " ${missing[*]} " == *" nginx-light "* ]] && [[ -f /run/nginx.pid ]]; then
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
            systemctl stop nginx || true
        else
            kill -QUIT "$(cat /run/nginx.pid)" 2>/dev/null || true
        fi
    fi
fi

# ---------------------------------------------------------------------------
# Build and install the extension (as test/run.sh does)
# ---------------------------------------------------------------------------
if [[ -z ${OUTBOX_SKIP_INSTALL:-} ]]; then
    echo "bench: building and installing outbox"
    make -s PG_CONFIG="$pgbin/pg_config" >/dev/null
    if [[ $(id -u) -eq 0 || -w $("$pgbin/pg_config" --pkglibdir) ]]; then
        make -s PG_CONFIG="$pgbin/pg_config" install >/dev/null
    else
        sudo -n make -s PG_CONFIG="$pgbin/pg_config" install >/dev/null
    fi
fi
if [[ ! -f $("$pgbin/pg_config" --sharedir)/extension/outbox.control ]]; then
    echo "bench: the outbox extension is not installed (make install)" >&2
    exit 1
fi

# ---------------------------------------------------------------------------
# Run as an unprivileged user in a scratch directory
# ---------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/outbox-bench.XXXXXX")
status=1
inner_pid=''
finish() {
    if [[ -n $inner_pid ]] && kill -0 "$inner_pid" 2>/dev/null; then
        kill -TERM "$inner_pid" 2>/dev/null || true
        wait "$inner_pid" 2>/dev/null || true
    fi
    if [[ $status -eq 0 && -z ${OUTBOX_KEEP:-} ]]; then
        rm -rf "$work"
    else
        echo "(scratch directory kept: $work)"
    fi
}
trap finish EXIT
# A signal is passed on to the benchmark, which stops what it started and
# exits; its status is then ours.
forward() { [[ -z $inner_pid ]] || kill -TERM "$inner_pid" 2>/dev/null || true; }
trap forward INT TERM

cp bench/bench.sh bench/wrk-post.lua "$work/"

pass_env=(HOME="$work" LANG=C.UTF-8 TZ=UTC
          PATH="$pgbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres: "$work"
    # setpriv execs the benchmark directly (no supervising parent that
    # would kill it before it has cleaned up)
    as_user=(setpriv --reuid=postgres --regid=postgres --init-groups)
else
    as_user=()
fi
"${as_user[@]}" env -i "${pass_env[@]}" bash "$work/bench.sh" "$mode" "$work" &
inner_pid=$!
while :; do
    status=0
    wait "$inner_pid" || status=$?
    kill -0 "$inner_pid" 2>/dev/null || break
done
inner_pid=''
exit $status
