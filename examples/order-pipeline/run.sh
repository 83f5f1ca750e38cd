#!/usr/bin/env bash
# The order pipeline, end to end, with receiver failures injected:
#
#   bash examples/order-pipeline/run.sh [--quick] [--orders N]
#
# Starts a throwaway PostgreSQL with the outbox serving database shop, and a
# consumer (consumer.py) that keeps a read model in database readmodel and
# fails a fifth of its requests on purpose.  Then a burst of orders from
# four concurrent clients (producer.py): OrderCreated, OrderPaid,
# OrderShipped, each queued with key = order id in the transaction that
# changes the order.  Once the outbox has delivered everything, check.py
# compares the read model with the orders table row by row.  Exits
# non-zero when the check fails.  --quick: 300 orders instead of 3000.
# See README.md.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/example.sh
source "$(dirname "$0")/../lib/example.sh"

pipeline() {
    local orders=3000
    while [[ $# -gt 0 ]]; do
        case $1 in
            --quick) orders=300 ;;
            --orders) orders=$2; shift ;;
            *) echo "usage: run.sh [--quick] [--orders N]" >&2; return 2 ;;
        esac
        shift
    done
    local here=$work/examples/order-pipeline
    local pg_port consumer_port
    read -r pg_port consumer_port < <(free_ports 2)

    say "A throwaway PostgreSQL 15 with the outbox; databases shop and readmodel"
    start_cluster "$pg_port" shop "readmodel=http://127.0.0.1:$consumer_port/events" \
        "outbox.max_inflight = 16"
    psql_ -d shop -f "$here/schema.sql"
    # the read model's own database: the outbox does not serve it
    createdb readmodel
    psql_ -d readmodel -f "$here/readmodel.sql"
    note "server on 127.0.0.1:$PGPORT, log $work/server.log"

    say "Starting the read-model consumer"
    start_service consumer "$consumer_port" python3 "$here/consumer.py" --port "$consumer_port"
    note "http://127.0.0.1:$consumer_port/events: answers 500 to 1/5 of the requests,"
    note "is slow now and then, and loses 1/20 of its answers after applying the event"

    say "A burst of $orders orders from 4 concurrent clients"
    local started=$SECONDS
    python3 "$here/producer.py" --orders "$orders" --clients 4

    say "Waiting for the outbox to deliver every event"
    local last_note=$SECONDS
    drained() {
        local pending
        pending=$(psql_ -d shop -At -c "SELECT count(*) FROM outbox.messages
                                        WHERE state = 'pending'")
        if ((SECONDS - last_note >= 5 && pending > 0)); then
            note "$pending event(s) not delivered yet"
            last_note=$SECONDS
        fi
        ((pending == 0))
    }
    if ! poll_until 240 drained; then
        note "still pending after 240 s; checking anyway"
    fi
    note "done $((SECONDS - started)) s after the first order"

    say "Check"
    python3 "$here/check.py"
}

run_example pipeline "$@"
