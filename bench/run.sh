#!/usr/bin/env bash
# The outbox benchmark.
#
#   bash bench/run.sh            # full run: about 6 minutes on 2 cores
#   bash bench/run.sh --quick    # small sizes, 3 s runs: about a minute
#   bash bench/run.sh --soak [--soak-minutes N]   # N minutes (default 10) + ~10 s
#
# Full: 30 s pgbench runs (4 clients), a 60,000-message backlog, ordered
# drains of 20,000 messages (no key, 16 keys, 1,000 keys, a key per
# message), latency paced at 1000 messages/s for 30 s unkeyed and over
# 1,000 keys, then 4 slow or dead targets with 500 messages of 1 MB each.
# --quick: 3 s runs, backlogs of 5,000 and 2,000 messages, 200 messages/s,
# 20 messages of 1 MB per target; it is meant for the test suite and checks
# the machinery (no message lost, per-key order kept), not the timing
# targets.
#
# --soak: is the workers' memory flat over a long run?  The same cluster and
# receiver, then pgbench paced at 1000 transactions/s (outbox_queue, 4
# clients) for N minutes (--soak-minutes N, at least 2; default 10) and
# nothing else.  Every 10 s it samples each worker's VmRSS and RssAnon
# (/proc/<pid>/status), the messages pending and delivered; every minute
# each worker's memory contexts too (pg_log_backend_memory_contexts(), its
# "Grand total" read back from the server log).  The table gives per worker
# RssAnon at minute 1 (after warm-up), at the end, its max and its slope
# (kB/min, least squares over minute 1 to the end), the memory contexts at
# minute 1 and at the end, and a verdict: "flat" when RssAnon grew by less
# than 2 MB and 200 kB/min, else "GROWING"; then messages queued,
# delivered, lost, duplicated and the latency over the whole soak.  The raw
# samples (soak-samples.txt) and the workers' smaps stay in the scratch
# directory, which a soak always keeps (its cluster removed on success).
# Not part of the test suite.
#
# As root on Debian 12 it installs what it needs with apt-get (PostgreSQL 15
# and the build dependencies through test/install-deps.sh, plus nginx-light,
# wrk and curl), builds and installs the extension (skip that with
# OUTBOX_SKIP_INSTALL=1), then runs bench/bench.pl (Perl, on PostgreSQL's
# TAP modules and test/lib/OutboxTest.pm; its SQL analysis is
# bench/analysis.sql) as the postgres user in a scratch directory: a
# throwaway cluster and an nginx receiver on 127.0.0.1, pgbench producers,
# and a report table at the end.  Every process it starts is stopped when
# it exits, however it exits.
#
# Exit status: 0 when the benchmark ran, no message was lost or duplicated,
# every key's messages arrived in order and neither the server nor nginx
# logged an error, whatever the timings; non-zero when a check the report
# marks FAIL failed, or something broke.  The
# scratch directory is removed on success and kept on failure (OUTBOX_KEEP=1
# keeps it always; a soak keeps it but for the cluster).  The memory
# verdicts, like the timings, do not fail the run.
set -euo pipefail

pgbin=${OUTBOX_PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH="$pgbin:$PATH"

usage="usage: bash bench/run.sh [--quick | --soak [--soak-minutes N]]"
mode=full soak_minutes=10
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) mode=quick ;;
        --full) mode=full ;;
        --soak) mode=soak ;;
        --soak-minutes)
            [[ $# -ge 2 ]] || { echo "$usage" >&2; exit 2; }
            mode=soak soak_minutes=$2; shift ;;
        --soak-minutes=*) mode=soak; soak_minutes=${1#*=} ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done
if [[ $mode == soak ]] && ! { [[ $soak_minutes =~ ^[0-9]+$ ]] && (( soak_minutes >= 2 )); }; then
    echo "bench: --soak-minutes takes a whole number of minutes, at least 2" >&2
    exit 2
fi

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
perl -MIPC::Run -e 1 >/dev/null 2>&1 || missing+=(libipc-run-perl)
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
    if [[ $status -eq 0 && -z ${OUTBOX_KEEP:-} && $mode == soak ]]; then
        # (the cluster itself is removed by PostgreSQL::Test::Cluster on success)
        echo "(soak samples and logs kept in $work)"
    elif [[ $status -eq 0 && -z ${OUTBOX_KEEP:-} ]]; then
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

# What the benchmark reads, in the tree's layout (OutboxTest.pm finds
# conf/outbox.conf next to test/)
mkdir -p "$work/tree/bench" "$work/tree/test/lib" "$work/tree/conf"
cp bench/bench.pl bench/analysis.sql bench/wrk-post.lua "$work/tree/bench/"
cp test/lib/OutboxTest.pm "$work/tree/test/lib/"
cp conf/outbox.conf "$work/tree/conf/"
pgxs=$("$pgbin/pg_config" --pkglibdir)/pgxs

# TESTDIR and PG_REGRESS as PGXS's prove_installcheck sets them:
# PostgreSQL::Test::Utils puts tmp_check/ (the cluster, the logs) in
# TESTDIR, and PostgreSQL::Test::Cluster's init runs pg_regress
pass_env=(HOME="$work" LANG=C.UTF-8 TZ=UTC TESTDIR="$work"
          PG_REGRESS="$pgxs/src/test/regress/pg_regress"
          PATH="$pgbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres: "$work"
    # setpriv execs the benchmark directly (no supervising parent that
    # would kill it before it has cleaned up)
    as_user=(setpriv --reuid=postgres --regid=postgres --init-groups)
else
    as_user=()
fi
"${as_user[@]}" env -i "${pass_env[@]}" \
    perl -I "$pgxs/src/test/perl" -I "$work/tree/test/lib" \
    "$work/tree/bench/bench.pl" "$mode" "$soak_minutes" &
inner_pid=$!
while :; do
    status=0
    wait "$inner_pid" || status=$?
    kill -0 "$inner_pid" 2>/dev/null || break
done
inner_pid=''
exit $status
