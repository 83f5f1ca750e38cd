#!/usr/bin/env bash
# The patient-registration saga, end to end, with failures injected:
#
#   bash examples/patient-registration/run.sh [--quick] [--count N]
#
# Starts a throwaway PostgreSQL with the outbox, the clinic's registration
# service (service.py), a fake identity provider that fails a third of its
# calls (idp.py) and an event sink (event_sink.py); submits registrations
# (client.py), kills the clinic service with SIGKILL once mid-run and
# restarts it, waits until the outbox has delivered everything, and checks
# that every registration ended registered or cleanly reverted
# (check.sql).  Exits non-zero when the check fails.  --quick: 60
# registrations instead of 300.  See README.md.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/example.sh
source "$(dirname "$0")/../lib/example.sh"

saga() {
    local count=300
    while [[ $# -gt 0 ]]; do
        case $1 in
            --quick) count=60 ;;
            --count) count=$2; shift ;;
            *) echo "usage: run.sh [--quick] [--count N]" >&2; return 2 ;;
        esac
        shift
    done
    local here=$work/examples/patient-registration
    local pg_port clinic_port idp_port sink_port
    read -r pg_port clinic_port idp_port sink_port < <(free_ports 4)

    say "A throwaway PostgreSQL 15 with the outbox; database clinic"
    # Two targets: the saga's own steps go to the clinic service, the
    # integration events to the event sink.
    start_cluster "$pg_port" clinic \
        "registration=http://127.0.0.1:$clinic_port/saga, events=http://127.0.0.1:$sink_port/events" \
        "outbox.max_inflight = 32"
    psql_ -d clinic -f "$here/schema.sql"
    note "server on 127.0.0.1:$PGPORT, log $work/server.log"

    say "Starting the services"
    start_service idp "$idp_port" python3 "$here/idp.py" --port "$idp_port"
    start_service sink "$sink_port" python3 "$here/event_sink.py" --port "$sink_port"
    start_clinic() {
        start_service clinic "$clinic_port" python3 "$here/service.py" \
            --port "$clinic_port" --idp "http://127.0.0.1:$idp_port"
    }
    start_clinic
    note "clinic service     http://127.0.0.1:$clinic_port  (POST /registrations, POST /saga)"
    note "identity provider  http://127.0.0.1:$idp_port  (fails 1/3 of its calls)"
    note "event sink         http://127.0.0.1:$sink_port  (loses 1/10 of its answers)"

    say "Submitting $count registrations"
    local started=$SECONDS
    python3 "$here/client.py" --url "http://127.0.0.1:$clinic_port/registrations" \
        --count "$count" --rate 25 &
    pids[client]=$!     # so that it is stopped too if the run fails

    # Kill the clinic service in the middle of the run, while steps are in
    # flight: whatever it had not committed is rolled back, and the outbox
    # delivers those messages again once it is back.
    in_flight() {
        psql_ -d clinic -At -c "SELECT count(*) FROM registrations
                                WHERE state NOT IN ('registered', 'reverted')"
    }
    local busy=0
    mid_run() {
        busy=$(in_flight)
        ((busy > 0 && $(psql_ -d clinic -At -c "SELECT count(*) FROM registrations") >= count / 3))
    }
    poll_until 30 mid_run || true   # (kill it anyway if that moment was missed)
    kill_service clinic KILL
    note "killed the clinic service (SIGKILL) with $busy registration(s) in flight"
    sleep 1
    start_clinic
    note "restarted it 1 s later"

    wait "${pids[client]}"
    unset 'pids[client]'

    say "Waiting for every saga to finish"
    settled() {
        [[ $(in_flight) == 0 &&
           $(psql_ -d clinic -At -c "SELECT count(*) FROM outbox.messages
                                     WHERE state = 'pending'") == 0 ]]
    }
    if ! poll_until 120 settled; then
        note "not settled after 120 s; checking anyway"
    fi
    note "done $((SECONDS - started)) s after the first registration"

    say "Check"
    local out
    out=$(psql_ -d clinic -v submitted="$count" -f "$here/check.sql")
    echo "$out"
    [[ $out == *"RESULT: OK"* ]]
}

run_example saga "$@"
