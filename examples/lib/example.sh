# shellcheck shell=bash
# Shared plumbing of the outbox examples, sourced by each example's run.sh.
# None of it is about the outbox itself: it installs what the examples need,
# starts a throwaway PostgreSQL cluster and the example's HTTP services, and
# stops everything again on exit.
#
# An example's run.sh defines a function with its flow and ends with
#
#     run_example flow "$@"
#
# Started as root, run_example installs the Debian packages (test/install-deps.sh),
# builds and installs the extension (OUTBOX_SKIP_INSTALL=1 skips both),
# copies examples/ to a scratch directory and runs the flow there as the
# postgres user (initdb refuses root).  Started as any other user it runs
# the flow as that user.  OUTBOX_KEEP=1 keeps the scratch directory.

pgbin=${OUTBOX_PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH="$pgbin:$PATH"

# ---------------------------------------------------------------------------
# Inside the scratch directory: the cluster and the services.
# ---------------------------------------------------------------------------
work=''              # the scratch directory
declare -A pids=()   # service name -> pid, for cleanup and kill_service

if [[ -t 1 ]]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
note() { printf '   %s\n' "$*"; }

# free_ports N: N distinct TCP ports of 127.0.0.1 that are free now.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_port() {
    local port=$1
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $port after 15 s" >&2
    return 1
}

# start_cluster PORT DATABASE TARGETS [EXTRA_CONF]: initdb, configure the
# outbox for DATABASE with TARGETS ('name=url, ...'), create DATABASE and
# start the server on 127.0.0.1:PORT.  Exports PGHOST/PGPORT/PGUSER, so psql
# and the Python services (libpq) find the server without arguments.
start_cluster() {
    local db=$2 targets=$3 extra=${4:-}
    export PGHOST=$work PGPORT=$1 PGUSER=postgres
    initdb -D "$work/data" -A trust -U postgres --encoding=UTF8 --locale=C -N \
        >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; return 1; }
    cat >>"$work/data/postgresql.conf" <<EOC

# --- the outbox example ---
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$work'
max_connections = 200
$(cat "$work/outbox.conf")
outbox.database = '$db'
outbox.targets = '$targets'
# retry quickly: the examples inject failures and should finish in seconds;
# and retry for long: no message may go dead because of the injected faults
# (a dead saga step would leave its saga half-done until outbox_redrive)
outbox.retry_base_delay = '50ms'
outbox.retry_max_delay = '1s'
outbox.max_attempts = 100
outbox.request_timeout = '5s'
$extra
EOC
    # The outbox's workers connect to outbox.database when the server starts
    # (and exit, to be restarted seconds later, when it does not exist yet):
    # create it first, in single-user mode.
    postgres --single -D "$work/data" template1 <<<"CREATE DATABASE $db;" \
        >>"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; return 1; }
    pg_ctl -D "$work/data" -l "$work/server.log" -w start >/dev/null ||
        { tail -n 30 "$work/server.log"; return 1; }
}

# psql against the example's server, quiet and stopping at the first error.
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# start_service NAME PORT COMMAND...: run COMMAND in the background (its
# output goes to NAME.log) and wait until it listens on PORT.
start_service() {
    local name=$1 port=$2
    shift 2
    "$@" >>"$work/$name.log" 2>&1 &
    pids[$name]=$!
    wait_port "$port" || { tail -n 20 "$work/$name.log"; return 1; }
}

# kill_service NAME [SIGNAL]: stop a service (SIGTERM by default) and reap it.
kill_service() {
    local name=$1 sig=${2:-TERM}
    [[ -n ${pids[$name]:-} ]] || return 0
    kill "-$sig" "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
    unset "pids[$name]"
}

# poll_until SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds;
# fails after SECONDS.
poll_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        if ((SECONDS >= deadline)); then return 1; fi
        sleep 0.2
    done
}

# On any exit of the flow: stop the services, then the server.  When the
# flow failed, show the end of every log, so that a failure explains itself.
example_cleanup() {
    local status=$? name f
    for name in "${!pids[@]}"; do kill_service "$name"; done
    if [[ -f $work/data/postmaster.pid ]]; then
        pg_ctl -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [[ $status -ne 0 ]]; then
        for f in "$work"/*.log; do
            [[ -s $f && $f != */initdb.log ]] || continue
            echo "---- $(basename "$f") (last 25 lines) ----"
            tail -n 25 "$f"
        done
    fi
    return $status
}

# ---------------------------------------------------------------------------
# The entry point.
# ---------------------------------------------------------------------------
remove_work() {
    if [[ -z ${OUTBOX_KEEP:-} ]]; then rm -rf "$work"; else echo "(kept $work)"; fi
}

run_example() {
    local flow=$1
    shift
    if [[ ${1:-} == --inner ]]; then
        work=$2
        shift 2
        cd "$work" || return 1
        trap example_cleanup EXIT
        trap 'exit 130' INT TERM
        # the Python services import examples/lib/*.py
        export PYTHONPATH="$work/examples/lib"
        python3 -c 'import psycopg2' 2>/dev/null || {
            echo "python3 cannot import psycopg2: apt-get install python3-psycopg2" >&2
            return 1
        }
        "$flow" "$@"
        return
    fi

    local script examples root
    script=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)/$(basename "${BASH_SOURCE[1]}")
    examples=$(cd "$(dirname "$script")/.." && pwd)
    root=$(cd "$examples/.." && pwd)

    if [[ -z ${OUTBOX_SKIP_INSTALL:-} ]]; then
        # PostgreSQL 15, build tools, python3 and python3-psycopg2 (apt-get
        # update first, then install; only what is missing)
        bash "$root/test/install-deps.sh"
        echo "Building and installing outbox..."
        make -s -C "$root" PG_CONFIG="$pgbin/pg_config" >/dev/null
        if [[ $(id -u) -eq 0 || -w $("$pgbin/pg_config" --pkglibdir) ]]; then
            make -s -C "$root" PG_CONFIG="$pgbin/pg_config" install >/dev/null
        else
            sudo -n make -s -C "$root" PG_CONFIG="$pgbin/pg_config" install >/dev/null
        fi
    fi

    # A scratch copy of examples/: the cluster, the logs and the services'
    # files live there, owned by the user that runs the flow.
    work=$(mktemp -d "${TMPDIR:-/tmp}/outbox-example.XXXXXX")
    trap remove_work EXIT
    trap 'exit 130' INT TERM
    cp -r "$examples" "$work/examples"
    cp "$root/conf/outbox.conf" "$work/outbox.conf"
    local inner=(bash "$work/examples/${script#"$examples/"}" --inner "$work" "$@")
    local status=0
    if [[ $(id -u) -eq 0 ]]; then
        chown -R postgres: "$work"
        runuser -u postgres -- env -i HOME="$work" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
            PATH="$pgbin:/usr/local/bin:/usr/bin:/bin" "${inner[@]}" || status=$?
    else
        "${inner[@]}" || status=$?
    fi
    return $status
}
