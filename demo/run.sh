#!/usr/bin/env bash
# outbox demo: a throwaway PostgreSQL 15 server with the extension, a local
# webhook receiver that prints every request it gets, and a few transactions
# that show what is delivered (committed work) and what is not (rolled back).
#
#   bash demo/run.sh
#
# As root it installs the Debian packages, builds and installs the
# extension, then runs the demo as the postgres user.  Everything lives in a
# temporary directory that is removed at the end (OUTBOX_KEEP=1 keeps it).
# Only 127.0.0.1 is used.
set -euo pipefail

pgbin=${OUTBOX_PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH="$pgbin:$PATH"

# ---------------------------------------------------------------------------
# The demo itself, run as an unprivileged user inside the scratch directory.
# ---------------------------------------------------------------------------
receiver_pid=''
demo_dir=''

# Stops the receiver and the server; runs on any exit of the demo.
demo_cleanup() {
    if [[ -n $receiver_pid ]]; then
        kill "$receiver_pid" 2>/dev/null || true
    fi
    if [[ -n $demo_dir && -f $demo_dir/data/postmaster.pid ]]; then
        pg_ctl -D "$demo_dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

demo() {
    local dir=$1
    demo_dir=$dir
    cd "$dir"
    trap demo_cleanup EXIT
    trap 'exit 130' INT TERM

    if [[ -t 1 ]]; then
        say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
    else
        say() { printf '\n== %s\n' "$*"; }
    fi
    note() { printf '   %s\n' "$*"; }

    free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    }
    local pgport rport
    pgport=$(free_port)
    rport=$(free_port)
    while [[ $rport == "$pgport" ]]; do rport=$(free_port); done

    say "Starting a throwaway PostgreSQL 15 on 127.0.0.1:$pgport"
    initdb -D "$dir/data" -A trust -U postgres --encoding=UTF8 --locale=C -N \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<EOC

# outbox demo
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir'
$(cat "$dir/outbox.conf")
outbox.database = 'postgres'
outbox.targets = 'orders=http://127.0.0.1:$rport/hooks/orders'
outbox.retry_base_delay = '1s'
EOC
    pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null ||
        { tail -n 30 "$dir/server.log"; exit 1; }

    psql_() {
        psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$pgport" -U postgres -d postgres "$@"
    }

    say "Starting a webhook receiver on http://127.0.0.1:$rport (it prints what it gets)"
    python3 "$dir/receiver.py" --port "$rport" --print \
        --log "$dir/requests.jsonl" --max-seconds 300 &
    receiver_pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null; then break; fi
        sleep 0.05
    done

    say "CREATE EXTENSION outbox; and a demo orders table"
    psql_ <<'SQL'
CREATE EXTENSION outbox;
CREATE TABLE orders (
    id       serial PRIMARY KEY,
    customer text NOT NULL,
    total    numeric(10,2) NOT NULL
);
SQL

    say "1. One transaction: 3 orders and 3 OrderCreated messages, COMMIT"
    psql_ -P footer=off <<'SQL'
BEGIN;
WITH o AS (
    INSERT INTO orders (customer, total)
    VALUES ('alice', 42.50), ('bob', 17.00), ('carol', 99.90)
    RETURNING *
)
SELECT o.id AS order_id,
       outbox_queue('orders', to_jsonb(o),
                    message_type => 'OrderCreated',
                    key => 'customer-' || o.customer) AS outbox_id
FROM o;
COMMIT;
SQL
    sleep 1

    say "2. A transaction that rolls back: its message is never sent"
    psql_ <<'SQL'
BEGIN;
INSERT INTO orders (customer, total) VALUES ('mallory', 1000000);
SELECT outbox_queue('orders', '{"customer": "mallory"}',
                    message_type => 'OrderCreated',
                    message_id => 'never-sent') \g /dev/null
ROLLBACK;
SQL
    note "(rolled back; the receiver stays quiet)"
    sleep 1

    say "3. outbox_send: a reminder scheduled 2 seconds from now"
    psql_ <<'SQL'
SELECT outbox_send('orders', '{"order_id": 1, "remind": "payment due"}',
                   message_type => 'PaymentReminder',
                   deliver_at => now() + interval '2 seconds') \g /dev/null
SQL
    note "(queued at $(date +%T); watch for it...)"
    local i
    for i in $(seq 100); do
        [[ $(psql_ -At -c "SELECT count(*) FROM outbox.messages WHERE state = 'pending'") == 0 ]] && break
        sleep 0.1
    done
    sleep 0.2

    say "The outbox table"
    psql_ -P footer=off <<'SQL'
SELECT id, target, message_type, state, attempts, last_status,
       round(extract(epoch FROM delivered_at - created_at) * 1000, 1) AS latency_ms
FROM outbox.messages ORDER BY id;
SQL

    local received rolled_back
    received=0 rolled_back=0
    if [[ -f $dir/requests.jsonl ]]; then
        received=$(wc -l <"$dir/requests.jsonl")
        rolled_back=$(grep -c '"never-sent"' "$dir/requests.jsonl" || true)
    fi
    say "Done: the receiver got $received request(s); the rolled-back message was sent ${rolled_back:-0} time(s)."
    note "(id 4 was the rolled-back message: its row is gone, only the sequence value was used;"
    note " the reminder's latency_ms counts from its creation, so it includes the 2 s wait)"
}

# ---------------------------------------------------------------------------
# The inner entry point: `run.sh --inner DIR` (used below via runuser).
# ---------------------------------------------------------------------------
if [[ ${1:-} == --inner ]]; then
    demo "$2"
    exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash test/install-deps.sh >/dev/null
echo "Building and installing outbox..."
make -s PG_CONFIG="$pgbin/pg_config" >/dev/null
if [[ $(id -u) -eq 0 || -w $("$pgbin/pg_config" --pkglibdir) ]]; then
    make -s PG_CONFIG="$pgbin/pg_config" install >/dev/null
else
    sudo -n make -s PG_CONFIG="$pgbin/pg_config" install >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/outbox-demo.XXXXXX")
remove_work() {
    if [[ -z ${OUTBOX_KEEP:-} ]]; then rm -rf "$work"; else echo "(kept $work)"; fi
}
trap remove_work EXIT
trap 'exit 130' INT TERM
cp demo/run.sh "$work/run.sh"
cp test/receiver.py "$work/receiver.py"
cp conf/outbox.conf "$work/outbox.conf"

if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres: "$work"
    runuser -u postgres -- env -i HOME="$work" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        PATH="$pgbin:/usr/local/bin:/usr/bin:/bin" \
        bash "$work/run.sh" --inner "$work"
else
    bash "$work/run.sh" --inner "$work"
fi
