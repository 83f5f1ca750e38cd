#!/usr/bin/env bash
# The outbox benchmark proper: bash bench.sh full|quick|soak DIR [MINUTES]
#
# Normally started by bench/run.sh, as an unprivileged user (initdb refuses
# root), in the scratch directory DIR that holds this script, soak.sh and
# wrk-post.lua.  Everything it starts listens on 127.0.0.1 only and is
# stopped when it exits.  Phases (soak: 1, 2, then soak.sh, which replaces
# 3 to 7 with MINUTES of producers paced at 1000/s and the workers' memory
# sampled):
#
#   1. a throwaway cluster with the outbox preloaded, table orders
#   2. nginx as the webhook receiver (POST /hook -> 204, keep-alive, an
#      access log of "webhook-id msec status connection connection-requests");
#      checks keep-alive with curl
#      and one outbox delivery end to end
#   3. the receiver's capacity, with wrk
#   4. producers, pgbench: INSERT only (baseline); INSERT + outbox_queue in
#      a second database the workers do not serve (a diagnostic: the
#      producer's own cost, nothing delivered); INSERT + outbox_queue
#      (unpaced: also the latency at the highest rate the producers reach)
#   5. drain: nginx stopped, a backlog queued, nginx started again, timed
#      from its start until nothing is pending.  Stopping the receiver
#      (rather than pointing the target elsewhere) exercises the circuit
#      breaker as a real outage does; outbox.retry_max_delay = 1s bounds the
#      wait for the probe that closes it, reported as "first delivery"
#   6. latency at a paced rate (pgbench -R), RSS of the workers sampled
#   7. analysis: the access log loaded into the database, lost and
#      duplicated messages, latency percentiles, CPU, RSS, the server log
#
# Commit time of a message: the producer's clock_timestamp() taken in the
# outbox_queue statement, the last statement before COMMIT.  It precedes the
# commit (and its fsync) by one round trip, so latencies are overstated by
# that much: conservative.  Receipt time: nginx's $msec when it logs the
# request, plus 1 ms since $msec is truncated to the millisecond.  The
# latencies reported are therefore upper bounds.
set -euo pipefail

mode=$1
dir=$2
cd "$dir"

case $mode in
    quick)
        wrk_secs=2 run_secs=5 paced_rate=200 paced_secs=5
        backlog=5000 backlog_txns=1 drain_timeout=90 settle_timeout=30 ;;
    full)
        wrk_secs=5 run_secs=30 paced_rate=1000 paced_secs=30
        backlog=100000 backlog_txns=4 drain_timeout=300 settle_timeout=120 ;;
    soak)
        soak_minutes=${3:-10} paced_rate=1000 drain_timeout=300
        [[ $soak_minutes =~ ^[0-9]+$ ]] && (( soak_minutes >= 2 )) ||
            { echo "bench.sh soak: MINUTES must be a whole number >= 2" >&2; exit 2; }
        paced_secs=$(( soak_minutes * 60 )) ;;
    *) echo "usage: bench.sh full|quick|soak DIR [MINUTES]" >&2; exit 2 ;;
esac
clients=4 threads=2
pad=$(printf 'x%.0s' $(seq 104))   # makes the payload ~200 bytes of JSON

# fds 3 and 4: the real stdout and stderr, even where a command's output is
# redirected to a file (a signal can arrive there)
exec 3>&1 4>&2
log() { printf '%s  %s\n' "$(date +%T)" "$*" >&3; }
die() { printf 'bench: FAILED: %s\n' "$*" >&4; exit 1; }

# ---------------------------------------------------------------------------
# Cleanup of everything started here
# ---------------------------------------------------------------------------
sampler_pid='' child=''
cleanup() {
    local rc=$?
    trap '' INT TERM   # a second signal must not cut the cleanup short
    if [[ -n $child ]]; then kill "$child" 2>/dev/null || true; fi
    if [[ -n $sampler_pid ]]; then kill "$sampler_pid" 2>/dev/null || true; fi
    nginx_stop || true
    if [[ -f $dir/data/postmaster.pid ]]; then
        pg_ctl -D "$dir/data" -m fast -t 60 -w stop >/dev/null 2>&1 ||
            pg_ctl -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ $rc -ne 0 && $rc -lt 128 && -f $dir/server.log ]]; then
        echo "---- server.log (last 40 lines) ----" >&4
        tail -n 40 "$dir/server.log" >&4
    fi
    return $rc
}
trap cleanup EXIT
interrupted() { trap '' INT TERM; echo "bench: interrupted" >&4; exit "$1"; }
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
pgport=$(free_port)
hport=$(free_port)
while [[ $hport == "$pgport" ]]; do hport=$(free_port); done

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# ---------------------------------------------------------------------------
# 1. The cluster
# ---------------------------------------------------------------------------
log "bench ($mode): PostgreSQL on 127.0.0.1:$pgport, receiver on 127.0.0.1:$hport, in $dir"
initdb -D "$dir/data" -A trust -U postgres --encoding=UTF8 --locale=C \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; die "initdb"; }
cat >>"$dir/data/postgresql.conf" <<EOC

# outbox benchmark
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir'
max_connections = 50
shared_buffers = 256MB
fsync = on
synchronous_commit = on
$(cat "$dir/outbox.conf")
outbox.targets = 'orders=http://127.0.0.1:$hport/hook'
# the drain phase stops the receiver: let the circuit close quickly after
outbox.retry_base_delay = '100ms'
outbox.retry_max_delay = '1s'
log_line_prefix = '%m [%p] %b: '
EOC
pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
    die "the server did not start"

psql_() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$pgport" -U postgres -d postgres "$@"; }
q() { psql_ -c "$1"; }
# Runs a long command in the background and waits for it, so that a signal
# is handled at once (and the command stopped by cleanup)
child=''
run_bg() {
    local rc=0
    "$@" &
    child=$!
    wait "$child" || rc=$?
    child=''
    return $rc
}
# pgbench on database ${pgb_db:-postgres}
pgbench_() { run_bg pgbench -n -M prepared -h "$dir" -p "$pgport" -U postgres -c "$clients" -j "$threads" "$@" "${pgb_db:-postgres}"; }

# The extension and the producers' table, in database $1
setup_database() {
    psql_ -d "$1" <<'SQL'
CREATE EXTENSION outbox;
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    customer   int,
    total      numeric,
    created_at timestamptz DEFAULT now()
);
SQL
}
setup_database postgres

# The producers' scripts: INSERT only (the baseline), INSERT + outbox_queue
cat >"$dir/baseline.sql" <<'EOS'
\set c random(1, 100000)
\set t random(100, 1000000)
BEGIN;
INSERT INTO orders (customer, total) VALUES (:c, :t / 100.0);
COMMIT;
EOS
cat >"$dir/outbox.sql" <<EOS
\\set c random(1, 100000)
\\set t random(100, 1000000)
BEGIN;
INSERT INTO orders (customer, total) VALUES (:c, :t / 100.0);
SELECT outbox_queue('orders', jsonb_build_object('order_id', currval('orders_id_seq'), 'customer', :c::int, 'total', :t::int / 100.0, 'note', '$pad', 'ts', extract(epoch FROM clock_timestamp())));
COMMIT;
EOS

# Runs pgbench and sets tps; $1 names the output file
tps=''
run_pgbench() {
    local name=$1
    shift
    pgbench_ "$@" >"$dir/pgbench-$name.txt" 2>&1 ||
        { tail -n 30 "$dir/pgbench-$name.txt"; die "pgbench ($name) failed"; }
    if grep -q 'aborted' "$dir/pgbench-$name.txt"; then
        tail -n 30 "$dir/pgbench-$name.txt"; die "pgbench ($name): clients aborted"
    fi
    tps=$(awk '/^tps = / { print $3; exit }' "$dir/pgbench-$name.txt")
    [[ -n $tps ]] || { tail -n 30 "$dir/pgbench-$name.txt"; die "pgbench ($name): no tps"; }
}
txns_of() { awk '/^number of transactions actually processed:/ { print $6; exit }' "$dir/pgbench-$1.txt"; }

# The two workers, by backend type
worker_pid() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'"; }
for _ in $(seq 300); do
    disp_pid=$(worker_pid 'outbox dispatcher')
    dec_pid=$(worker_pid 'outbox decoder')
    [[ -n $disp_pid && -n $dec_pid ]] && break
    sleep 0.1
done
[[ -n $disp_pid && -n $dec_pid ]] || die "the outbox workers are not running"

# CPU time of a process in clock ticks (utime + stime), 0 once it is gone
ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    awk '{ print $12 + $13 }' <<<"${s##*) }"
}
hz=$(getconf CLK_TCK)
# kB of a /proc/<pid>/status field (VmRSS, VmHWM, RssAnon)
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# VmRSS and RssAnon in kB of the dispatcher, then of the decoder
worker_mem() {
    echo "$(status_kb "$disp_pid" VmRSS) $(status_kb "$disp_pid" RssAnon)" \
         "$(status_kb "$dec_pid" VmRSS) $(status_kb "$dec_pid" RssAnon)"
}

pending() { q "SELECT count(*) FROM outbox.messages WHERE state = 'pending'"; }
max_id() { q "SELECT coalesce(max(id), 0) FROM outbox.messages"; }
# Waits until nothing is pending; fails after $1 seconds
wait_drained() {
    local deadline=$(( $(date +%s) + $1 )) n
    while :; do
        n=$(pending)
        [[ $n == 0 ]] && return 0
        if (( $(date +%s) > deadline )); then
            q "SELECT state, attempts, last_status, last_error, count(*) FROM outbox.messages
               WHERE state <> 'delivered' GROUP BY 1, 2, 3, 4" >&4 || true
            die "$n messages still pending after $1 s"
        fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------
# 2. The receiver: nginx
# ---------------------------------------------------------------------------
ngx=$dir/nginx
mkdir -p "$ngx"
cat >"$ngx/nginx.conf" <<EOC
# Runs as the invoking (unprivileged) user: no "user" directive.
worker_processes 1;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $ngx/body;
    proxy_temp_path $ngx/proxy;
    fastcgi_temp_path $ngx/fastcgi;
    uwsgi_temp_path $ngx/uwsgi;
    scgi_temp_path $ngx/scgi;
    # one line per request: the webhook-id, the time it was answered, the
    # status, the connection's serial number and its request count
    log_format hook '\$http_webhook_id \$msec \$status \$connection \$connection_requests';
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$hport;
        location = /hook {
            # "return" discards (reads) the request body before answering,
            # so the connection stays usable: checked below with curl
            client_body_buffer_size 64k;
            client_max_body_size 2m;
            access_log $ngx/hooks.log hook buffer=256k flush=1s;
            return 204;
        }
        location / { return 404; }
    }
}
EOC
nginx_() { nginx -p "$ngx" -c "$ngx/nginx.conf" -e "$ngx/error.log" "$@"; }
nginx_start() {
    nginx_ || die "nginx did not start (see $ngx/error.log)"
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nginx does not listen on $hport"
}
# Stops nginx and waits for it to be gone (flushing the buffered access log)
nginx_stop() {
    local pid
    [[ -f $ngx/nginx.pid ]] || return 0
    pid=$(cat "$ngx/nginx.pid" 2>/dev/null) || return 0
    [[ -n $pid ]] || return 0
    kill -QUIT "$pid" 2>/dev/null || return 0
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null || true
    sleep 0.5
}
nginx_start

# Keep-alive with a body: two POSTs over one connection, both answered 204
body='{"ts": 1700000000.123456, "note": "'$pad'", "total": 123.45, "customer": 12345, "order_id": 123456}'
curl -sv -o /dev/null -X POST -H 'Content-Type: application/json' -H 'webhook-id: check_1' \
    --data-binary "$body" "http://127.0.0.1:$hport/hook" \
    --next -o /dev/null -X POST -H 'Content-Type: application/json' -H 'webhook-id: check_2' \
    --data-binary "$body" "http://127.0.0.1:$hport/hook" 2>"$dir/curl-check.txt" ||
    die "curl could not POST to nginx"
[[ $(grep -c '^< HTTP/1.1 204' "$dir/curl-check.txt") == 2 ]] ||
    { cat "$dir/curl-check.txt"; die "nginx did not answer both POSTs with 204"; }
grep -q 'Re-using existing connection' "$dir/curl-check.txt" ||
    { cat "$dir/curl-check.txt"; die "nginx did not keep the connection alive after a POST"; }
log "receiver: nginx answers POST /hook with 204 and keeps the connection alive (curl)"

# One outbox delivery end to end
first_id=$(q "SELECT outbox_queue('orders', '{\"check\": true}')")
for _ in $(seq 100); do
    [[ $(pending) == 0 ]] && break
    sleep 0.1
done
read -r st code att < <(q "SELECT state, last_status, attempts FROM outbox.messages WHERE id = $first_id" | tr '|' ' ')
[[ $st == delivered && $code == 204 ]] ||
    die "the first message was not delivered with 204 (state $st, last_status $code, attempts $att)"
log "outbox: message $first_id delivered, HTTP $code, $att attempt(s)"

# ---------------------------------------------------------------------------
# Analysis and report helpers, shared by all modes
# ---------------------------------------------------------------------------
# Sets restarted to the workers whose pid changed since they were found
restarts() {
    restarted=''
    [[ $(worker_pid 'outbox dispatcher') == "$disp_pid" ]] || restarted+=' dispatcher'
    [[ $(worker_pid 'outbox decoder') == "$dec_pid" ]] || restarted+=' decoder'
}

# Stops nginx (which flushes its access log) and loads the log: bench_log,
# one row per request; bench_recv, one row per message id received
load_access_log() {
    nginx_stop
    log "analysing $(wc -l <"$ngx/hooks.log") access log lines"
    psql_ <<SQL
CREATE TABLE bench_log (webhook_id text, msec numeric, status int, conn bigint, conn_requests int);
COPY bench_log FROM '$ngx/hooks.log' WITH (FORMAT text, DELIMITER ' ');
CREATE TABLE bench_recv AS
    SELECT substr(webhook_id, 5)::bigint AS id,
           min(msec) FILTER (WHERE status BETWEEN 200 AND 299) AS received,
           count(*) AS requests,
           count(*) FILTER (WHERE status BETWEEN 200 AND 299) AS ok
      FROM bench_log
     WHERE webhook_id ~ '^msg_[0-9]+\$'
     GROUP BY 1;
CREATE UNIQUE INDEX ON bench_recv (id);
ANALYZE bench_recv;
SQL
}

# What happened to every message queued (after load_access_log): sets
# queued lost dups not_ok undelivered stray conns per_conn
outcomes() {
    queued=$(q "SELECT count(*) FROM outbox.messages")
    lost=$(q "SELECT count(*) FROM outbox.messages m
              WHERE NOT EXISTS (SELECT 1 FROM bench_recv r WHERE r.id = m.id AND r.ok > 0)")
    dups=$(q "SELECT count(*) FROM bench_recv WHERE ok > 1")
    not_ok=$(q "SELECT count(*) FROM bench_log WHERE webhook_id ~ '^msg_' AND status NOT BETWEEN 200 AND 299")
    undelivered=$(q "SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'")
    stray=$(q "SELECT count(*) FROM bench_recv r WHERE NOT EXISTS (SELECT 1 FROM outbox.messages m WHERE m.id = r.id)")
    # TCP connections the outbox opened to the receiver (keep-alive reuse)
    read -r conns per_conn < <(q "SELECT count(DISTINCT conn), round(count(*)::numeric / greatest(count(DISTINCT conn), 1))
                                  FROM bench_log WHERE webhook_id ~ '^msg_'" | tr '|' ' ')
}
payload_bytes() { q "SELECT round(avg(octet_length(payload::text))) FROM outbox.messages WHERE id > $1 AND id <= $2"; }

# p50 p95 p99 max count of commit->receipt latency in ms for ids in (lo, hi]
latency() {
    q "SELECT round(percentile_cont(0.50) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms), 1), count(*)
         FROM (SELECT (r.received + 0.001 - (m.payload->>'ts')::numeric) * 1000 AS ms
                 FROM outbox.messages m JOIN bench_recv r USING (id)
                WHERE m.id > $1 AND m.id <= $2 AND r.received IS NOT NULL) s" | tr '|' ' '
}

# Problems the server and nginx logged: sets server_problems ngx_problems
log_problems() {
    grep -E '(ERROR|FATAL|PANIC|WARNING):' "$dir/server.log" >"$dir/server-problems.txt" || true
    server_problems=$(wc -l <"$dir/server-problems.txt")
    ngx_problems=$(grep -cE '\[(error|crit|alert|emerg)\]' "$ngx/error.log" || true)
}

mark() { if [[ $1 == 1 ]]; then echo PASS; else echo MISS; fi; }
ge() { awk "BEGIN { print ($1 >= $2) ? 1 : 0 }"; }
le() { awk "BEGIN { print ($1 <= $2) ? 1 : 0 }"; }
row() { printf '%-46s %-24s %-20s %s\n' "$@"; }
rule() { printf '%.0s-' $(seq 100); echo; }
title() {
    echo
    echo "outbox $1 — $(date -u '+%Y-%m-%d %H:%M UTC') — $(nproc) CPUs, PostgreSQL $(q "SHOW server_version"), $(uname -srm)"
}
# The rows every mode ends its table with (after outcomes, log_problems, restarts)
outcome_rows() {
    row "messages lost (never received with 2xx)" "$lost" "0" "$(mark "$( [[ $lost == 0 ]] && echo 1)")"
    row "messages received more than once" "$dups" "0" "$(mark "$( [[ $dups == 0 ]] && echo 1)")"
    row "TCP connections used by the outbox" "$conns (~$per_conn requests each)" "" ""
    row "non-2xx answers / rows not delivered" "$not_ok / $undelivered" "0 / 0" \
        "$(mark "$( [[ $not_ok == 0 && $undelivered == 0 ]] && echo 1)")"
}
problem_rows() {
    row "server log ERROR/WARNING/FATAL lines" "$server_problems" "0" "$(mark "$( [[ $server_problems == 0 ]] && echo 1)")"
    row "nginx error log lines" "$ngx_problems" "0" "$(mark "$( [[ $ngx_problems == 0 ]] && echo 1)")"
    row "worker restarts" "${restarted:-none}" "none" "$(mark "$( [[ -z $restarted ]] && echo 1)")"
}
# After the table: the server's problems and what the workers logged
server_log_summary() {
    if [[ $server_problems -gt 0 ]]; then
        echo
        echo "server log problems (first 20):"
        head -n 20 "$dir/server-problems.txt"
    fi
    echo
    echo "outbox lines of the server log:"
    grep -E 'outbox (decoder|dispatcher):' "$dir/server.log" | sed -E 's/^[^]]*\] //' |
        grep -vE '^outbox (decoder|dispatcher): LOG:  (level: [0-9]+;|Grand total:|logging memory contexts)' |
        sort | uniq -c | sort -rn | head -n 20 || true
}

# Verdict: only losses and broken machinery fail the run, never a timing
# (nor a memory trend)
verdict() {
    local failed=()
    [[ $lost == 0 ]] || failed+=("$lost message(s) lost")
    [[ $undelivered == 0 ]] || failed+=("$undelivered message(s) not delivered")
    [[ $stray == 0 ]] || failed+=("$stray received id(s) that were never queued")
    [[ -z $restarted ]] || failed+=("worker(s) restarted:$restarted")
    if [[ ${#failed[@]} -gt 0 ]]; then
        printf 'bench: FAILED: %s\n' "${failed[@]}" >&2
        exit 1
    fi
    echo
    echo "bench: OK (no message lost)"
    exit 0
}

# The soak replaces phases 3 to 7
if [[ $mode == soak ]]; then
    # shellcheck source=soak.sh
    . "$dir/soak.sh"
fi

# ---------------------------------------------------------------------------
# 3. Receiver capacity
# ---------------------------------------------------------------------------
run_bg wrk -t 2 -c 16 -d "${wrk_secs}s" -s "$dir/wrk-post.lua" "http://127.0.0.1:$hport/hook" \
    >"$dir/wrk.txt" 2>&1 || { cat "$dir/wrk.txt"; die "wrk failed"; }
receiver_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$dir/wrk.txt")
[[ -n $receiver_rps ]] || { cat "$dir/wrk.txt"; die "no Requests/sec from wrk"; }
if grep -qE 'Non-2xx|Socket errors' "$dir/wrk.txt"; then
    cat "$dir/wrk.txt"
    die "the receiver answered wrk with errors"
fi
log "receiver capacity (wrk, ${wrk_secs}s, 16 connections): $receiver_rps requests/s"

# ---------------------------------------------------------------------------
# 4. Producers
# ---------------------------------------------------------------------------
q "CHECKPOINT" >/dev/null
dec0=$(ticks "$dec_pid")
run_pgbench baseline -T "$run_secs" -f "$dir/baseline.sql"; tps_base=$tps
dec1=$(ticks "$dec_pid")
txns_base=$(txns_of baseline)
log "baseline (INSERT; COMMIT), $clients clients, ${run_secs}s: $tps_base tps"

# Diagnostic: the producer's own cost.  The same script in another database
# with the extension: messages are queued there but never delivered (the
# workers serve outbox.database only), so no decoding or HTTP competes.
q "CREATE DATABASE nodelivery"
setup_database nodelivery
q "CHECKPOINT" >/dev/null
pgb_db=nodelivery run_pgbench nodelivery -T "$run_secs" -f "$dir/outbox.sql"; tps_nodeliv=$tps
log "with outbox_queue, no delivery (other database), $clients clients, ${run_secs}s: $tps_nodeliv tps"

q "CHECKPOINT" >/dev/null
live_lo=$(max_id)
# nginx's worker process (it runs one): the receiver shares the 2 cores too
rcv_pid=$(pgrep -P "$(cat "$ngx/nginx.pid")" | head -n 1)
dec0l=$(ticks "$dec_pid") disp0l=$(ticks "$disp_pid") rcv0l=$(ticks "$rcv_pid") t_l0=$(now)
run_pgbench outbox -T "$run_secs" -f "$dir/outbox.sql"; tps_outbox=$tps
wait_drained "$drain_timeout"
dec1l=$(ticks "$dec_pid") disp1l=$(ticks "$disp_pid") rcv1l=$(ticks "$rcv_pid") t_l1=$(now)
live_hi=$(max_id)
disp_live_pct=$(calc %.0f "($disp1l - $disp0l) / $hz / ($t_l1 - $t_l0) * 100")
dec_live_pct=$(calc %.0f "($dec1l - $dec0l) / $hz / ($t_l1 - $t_l0) * 100")
rcv_live_pct=$(calc %.0f "($rcv1l - $rcv0l) / $hz / ($t_l1 - $t_l0) * 100")
log "with outbox_queue, $clients clients, ${run_secs}s: $tps_outbox tps ($((live_hi - live_lo)) messages, all delivered)"

# ---------------------------------------------------------------------------
# 5. Drain a backlog
# ---------------------------------------------------------------------------
q "CHECKPOINT" >/dev/null
nginx_stop
drain_lo=$(max_id)
dec0d=$(ticks "$dec_pid")
per_txn=$(( backlog / backlog_txns ))
t_q0=$(now)
for _ in $(seq "$backlog_txns"); do
    q "WITH o AS (
         INSERT INTO orders (customer, total)
         SELECT 1 + (random() * 99999)::int, round((random() * 10000)::numeric, 2)
           FROM generate_series(1, $per_txn)
         RETURNING id, customer, total)
       SELECT count(outbox_queue('orders', jsonb_build_object(
                'order_id', o.id, 'customer', o.customer, 'total', o.total,
                'note', '$pad', 'ts', extract(epoch FROM clock_timestamp()))))
         FROM o" >/dev/null
done
t_q1=$(now)
drain_hi=$(max_id)
drain_n=$(q "SELECT count(*) FROM outbox.messages WHERE id > $drain_lo AND id <= $drain_hi")
log "backlog: $drain_n messages queued in $backlog_txns transaction(s) in $(calc %.1f "$t_q1 - $t_q0") s, receiver down"

# Let the circuit open and the decoder go quiet (it has decoded the
# backlog) before the receiver comes back; meanwhile measure what the
# dispatcher spends while it has nothing to do but probe.
deadline=$(( $(date +%s) + settle_timeout ))
until [[ $(q "SELECT circuit FROM outbox.targets WHERE target = 'orders'") == open ]]; do
    (( $(date +%s) <= deadline )) || die "the circuit of orders did not open with the receiver down"
    sleep 0.2
done
quiet=0
while (( quiet < 2 )); do
    (( $(date +%s) <= deadline )) || die "the decoder did not go quiet with the receiver down"
    a=$(ticks "$dec_pid")
    sleep 0.5
    if (( $(ticks "$dec_pid") - a <= 1 )); then quiet=$((quiet + 1)); else quiet=0; fi
done
a=$(ticks "$disp_pid") t_a=$(now)
sleep 2
idle_cpu=$(calc %.0f "($(ticks "$disp_pid") - $a) / $hz / ($(now) - $t_a) * 100")
log "receiver down, circuit open: the dispatcher uses $idle_cpu% of a core"
dec1d=$(ticks "$dec_pid") disp0d=$(ticks "$disp_pid")
pending_before=$(pending)
nginx_start
t_up=$(now)
log "receiver up again; draining $pending_before pending messages"
wait_drained "$drain_timeout"
t_seen=$(now)
disp1d=$(ticks "$disp_pid")
read -r first_s last_s < <(q "SELECT extract(epoch FROM min(delivered_at)), extract(epoch FROM max(delivered_at))
                                FROM outbox.messages WHERE id > $drain_lo AND id <= $drain_hi" | tr '|' ' ')
drain_secs=$(calc %.3f "$last_s - $t_up")
drain_rate=$(calc %.0f "$drain_n / ($last_s - $t_up)")
drain_first=$(calc %.3f "$first_s - $t_up")
drain_rate_ff=$(calc %.0f "$drain_n / ($last_s - $first_s)")
log "drained $drain_n messages in $drain_secs s from receiver up ($drain_rate msg/s; first delivery after $drain_first s; $drain_rate_ff msg/s from first to last)"

# ---------------------------------------------------------------------------
# 6. Latency at a paced rate, RSS sampled
# ---------------------------------------------------------------------------
q "CHECKPOINT" >/dev/null
paced_lo=$(max_id)
dec0p=$(ticks "$dec_pid") disp0p=$(ticks "$disp_pid") t_p0=$(now)
(
    while :; do
        echo "$(date +%s.%N) $(worker_mem) $(ticks "$disp_pid")"
        sleep 1
    done
) >"$dir/rss.txt" &
sampler_pid=$!
run_pgbench paced -R "$paced_rate" -T "$paced_secs" -f "$dir/outbox.sql"; tps_paced=$tps
wait_drained "$drain_timeout"
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=''
dec1p=$(ticks "$dec_pid") disp1p=$(ticks "$disp_pid")
t_p1=$(now)
paced_hi=$(max_id)
disp_paced_pct=$(calc %.0f "($disp1p - $disp0p) / $hz / ($t_p1 - $t_p0) * 100")
dec_paced_pct=$(calc %.0f "($dec1p - $dec0p) / $hz / ($t_p1 - $t_p0) * 100")

log "paced at $paced_rate/s for ${paced_secs}s: $tps_paced tps ($((paced_hi - paced_lo)) messages, all delivered)"

# Nothing to do, receiver up: what do the workers spend?
a=$(ticks "$disp_pid") b=$(ticks "$dec_pid") t_a=$(now)
sleep 2
disp_idle_pct=$(calc %.0f "($(ticks "$disp_pid") - $a) / $hz / ($(now) - $t_a) * 100")
dec_idle_pct=$(calc %.0f "($(ticks "$dec_pid") - $b) / $hz / ($(now) - $t_a) * 100")
log "idle, receiver up: dispatcher $disp_idle_pct%, decoder $dec_idle_pct% of a core"

# ---------------------------------------------------------------------------
# 7. Analysis
# ---------------------------------------------------------------------------
disp_hwm=$(status_kb "$disp_pid" VmHWM)
dec_hwm=$(status_kb "$dec_pid" VmHWM)
disp_anon=$(status_kb "$disp_pid" RssAnon)
dec_anon=$(status_kb "$dec_pid" RssAnon)
restarts
load_access_log
outcomes
payload_bytes=$(payload_bytes "$live_lo" "$live_hi")
read -r lp50 lp95 lp99 lpmax lpn < <(latency "$paced_lo" "$paced_hi")
read -r lu50 lu95 lu99 lumax lun < <(latency "$live_lo" "$live_hi")

# CPU seconds per 10k messages
per10k() { calc %.3f "($1) / $hz / $2 * 10000"; }
live_n=$((live_hi - live_lo)) paced_n=$((paced_hi - paced_lo))
cpu_disp_live=$(per10k "$disp1l - $disp0l" "$live_n")
cpu_dec_live=$(per10k "$dec1l - $dec0l" "$live_n")
cpu_disp_paced=$(per10k "$disp1p - $disp0p" "$paced_n")
cpu_dec_paced=$(per10k "$dec1p - $dec0p" "$paced_n")
cpu_disp_drain=$(per10k "$disp1d - $disp0d" "$drain_n")
cpu_dec_drain=$(per10k "$dec1d - $dec0d" "$drain_n")
cpu_dec_base=$(per10k "$dec1 - $dec0" "$txns_base")

# RSS over the paced run: first and last samples, in kB
read -r rss_n d_rss0 d_anon0 e_rss0 e_anon0 d_rss1 d_anon1 e_rss1 e_anon1 d_rssmax e_rssmax < <(
    awk 'NR == 1 { a = $2; b = $3; c = $4; d = $5 }
         { if ($2 > dm) dm = $2; if ($4 > em) em = $4; l2 = $2; l3 = $3; l4 = $4; l5 = $5 }
         END { print NR, a, b, c, d, l2, l3, l4, l5, dm, em }' "$dir/rss.txt")
# The dispatcher's CPU second by second over the paced run: the busiest second
disp_peak_pct=$(awk -v hz="$hz" 'NR > 1 && $1 > pt { p = ($6 - pk) / hz / ($1 - pt) * 100; if (p > m) m = p }
                                 { pt = $1; pk = $6 } END { printf "%.0f", m }' "$dir/rss.txt")
# "flat" when the private memory grew by less than 1 MB over the run
trend() {
    local growth=$(( $2 - $1 ))
    if (( growth < 1024 )); then echo "flat (${growth} kB)"; else echo "GROWING (+${growth} kB)"; fi
}
disp_trend=$(trend "$d_anon0" "$d_anon1")
dec_trend=$(trend "$e_anon0" "$e_anon1")

log_problems

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
ratio=$(calc %.3f "$tps_outbox / $tps_base")
receiver_x=$(calc %.1f "$receiver_rps / $drain_rate_ff")

title "benchmark ($mode)"
echo "producers: pgbench -M prepared -c $clients -j $threads; payload ~$payload_bytes bytes of JSON"
rule
row "measure" "value" "target" ""
rule
row "receiver capacity (wrk, ${wrk_secs}s)" "$(calc %.0f "$receiver_rps") req/s" ">= 3x drain rate" \
    "$( [[ $(ge "$receiver_rps" "3 * $drain_rate_ff") == 1 ]] && echo "ok (${receiver_x}x)" || echo "RECEIVER-BOUND (${receiver_x}x)")"
row "TPS baseline (INSERT; COMMIT), ${run_secs}s" "$(calc %.0f "$tps_base")" "" ""
row "TPS with outbox_queue, ${run_secs}s" "$(calc %.0f "$tps_outbox")" "" ""
row "ratio with/without outbox" "$ratio" ">= 0.77" "$(mark "$(ge "$ratio" 0.77)")"
row "TPS outbox_queue, no delivery (diagnostic)" "$(calc %.0f "$tps_nodeliv") ($(calc %.2f "$tps_nodeliv / $tps_base")x baseline)" "" ""
row "drain: backlog queued (receiver down)" "$drain_n msgs in $(calc %.1f "$t_q1 - $t_q0") s" "" ""
row "drain: receiver up -> first delivery" "$drain_first s" "" ""
row "drain: receiver up -> all delivered" "$drain_secs s" "" ""
row "drain rate (from receiver up)" "$drain_rate msg/s" ">= $(calc %.0f "$tps_outbox") (outbox TPS)" \
    "$(mark "$(ge "$drain_rate" "$tps_outbox")")"
row "drain rate (first to last delivery)" "$drain_rate_ff msg/s" "" ""
row "dispatcher CPU, receiver down (circuit open)" "$idle_cpu% of a core" "<= 5%" "$(mark "$(le "$idle_cpu" 5)")"
row "latency paced $paced_rate/s ($lpn msgs) p50" "$lp50 ms" "<= 3 ms" "$(mark "$(le "$lp50" 3)")"
row "  p95" "$lp95 ms" "" ""
row "  p99" "$lp99 ms" "<= 10 ms" "$(mark "$(le "$lp99" 10)")"
row "  max" "$lpmax ms" "" ""
row "latency unpaced $(calc %.0f "$tps_outbox")/s ($lun msgs) p50/p95" "$lu50 / $lu95 ms" "" ""
row "  p99/max" "$lu99 / $lumax ms" "" ""
row "messages queued (whole run)" "$queued" "" ""
outcome_rows
row "dispatcher CPU s/10k msgs live/paced/drain" "$cpu_disp_live / $cpu_disp_paced / $cpu_disp_drain" "" ""
row "decoder CPU s/10k msgs live/paced/backlog" "$cpu_dec_live / $cpu_dec_paced / $cpu_dec_drain" "" ""
row "decoder CPU s/10k unrelated txns (baseline)" "$cpu_dec_base" "" ""
row "CPU unpaced run, dispatcher / decoder" "$disp_live_pct% / $dec_live_pct% of a core" "" ""
row "  receiver (nginx) in the same run" "$rcv_live_pct% of a core" "" ""
row "CPU at paced rate, dispatcher / decoder" "$disp_paced_pct% / $dec_paced_pct% of a core" "" ""
row "  dispatcher, busiest second of paced run" "$disp_peak_pct% of a core" "" ""
row "CPU idle (receiver up), dispatcher / decoder" "$disp_idle_pct% / $dec_idle_pct% of a core" "<= 5%" "$(mark "$(le "$disp_idle_pct + $dec_idle_pct" 5)")"
row "peak RSS (VmHWM) dispatcher / decoder" "$((disp_hwm / 1024)) / $((dec_hwm / 1024)) MB" "" ""
row "  of which private (RssAnon) at the end" "$((disp_anon / 1024)) / $((dec_anon / 1024)) MB" "" ""
row "RSS paced run, dispatcher ($rss_n samples)" "$((d_rss0 / 1024))->$((d_rss1 / 1024)) MB, max $((d_rssmax / 1024))" "" ""
row "  private (RssAnon)" "$((d_anon0 / 1024))->$((d_anon1 / 1024)) MB" "" "$disp_trend"
row "RSS paced run, decoder" "$((e_rss0 / 1024))->$((e_rss1 / 1024)) MB, max $((e_rssmax / 1024))" "" ""
row "  private (RssAnon)" "$((e_anon0 / 1024))->$((e_anon1 / 1024)) MB" "" "$dec_trend"
problem_rows
rule
echo "latency = receipt - commit, an upper bound: commit = clock_timestamp() in the outbox_queue"
echo "statement (before COMMIT and its fsync); receipt = nginx \$msec + 1 ms (\$msec is truncated"
echo "to the millisecond). Drain: the receiver is stopped while the backlog is queued and timed"
echo "from its restart; the first delivery waits for the open circuit's probe. CPU per 10k messages"
echo "counts the dispatcher from the receiver's restart, the decoder from the first queued row."
echo "Timing targets never fail the run."
if [[ $mode == quick ]]; then
    echo "(--quick: short runs and small sizes; the numbers are indicative only)"
fi

server_log_summary
verdict
