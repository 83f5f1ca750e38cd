#!/usr/bin/env bash
# Runs pg_regress (make installcheck) and the TAP tests in the current tree,
# as the current (non-root) user, against the installed extension.  Normally
# called by test/run.sh in a scratch copy; can be run directly from a
# writable checkout after `make install`.
set -uo pipefail

cd "$(dirname "$0")/.."
pgbin=${OUTBOX_PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH="$pgbin:$PATH"

if [[ $(id -u) -eq 0 ]]; then
    echo "run-tests: initdb refuses to run as root; use test/run.sh" >&2
    exit 2
fi

# Prints the last lines of a file under a header.
show_tail() {
    local file=$1 lines=${2:-60}
    [[ -f $file ]] || return 0
    echo "---- $file (last $lines lines) ----"
    tail -n "$lines" "$file"
}

regress_status=0
tap_status=0

echo "== pg_regress and isolation tests (make installcheck) =="
rm -rf results regression.diffs regression.out tmp_check output_iso
make -s PG_CONFIG="$pgbin/pg_config" installcheck TAP_TESTS= || regress_status=$?
if [[ $regress_status -ne 0 ]]; then
    for f in regression.diffs output_iso/regression.diffs; do
        if [[ -f $f ]]; then
            echo "---- $f ----"
            head -c 30000 "$f"
        fi
    done
    for f in tmp_check_regress/log/postmaster.log tmp_check_isolation/log/postmaster.log; do
        show_tail "$f" 40
    done
fi

echo
echo "== TAP tests (prove) =="
rm -rf tap
mkdir -p tap
# PGXS's prove_installcheck (see the Makefile), without pg_regress and the
# isolation tests again; the tests' logs go to tmp_check/log.
timeout --signal=TERM 2400 \
    make -s PG_CONFIG="$pgbin/pg_config" installcheck REGRESS= ISOLATION= \
    PROVE_TESTS="${PROVE_TESTS:-test/t/*.pl}" PROVE_FLAGS="${PROVE_FLAGS:-}" \
    2>&1 | tee tap/prove.out
tap_status=${PIPESTATUS[0]}

if [[ $tap_status -ne 0 ]]; then
    echo
    echo "== logs of the failed TAP tests =="
    failed=$(sed -n '/^Test Summary Report/,$p' tap/prove.out |
             grep -oE '^[^ ]+\.pl' | xargs -r -n1 basename | sed 's/\.pl$//' |
             sort -u)
    if [[ -z $failed ]]; then
        failed=$(ls tmp_check/log 2>/dev/null |
                 sed -n 's/^regress_log_//p')
    fi
    for t in $failed; do
        show_tail "tmp_check/log/regress_log_$t" 80
        for f in tmp_check/log/"${t}"_*.log; do
            show_tail "$f" 60
        done
        for f in tmp_check/log/"${t}"_receiver_*.jsonl; do
            show_tail "$f" 10
        done
    done
fi

# The closing lines: pg_regress's outcome, then prove's own summary.
echo
echo "== summary =="
if [[ $regress_status -eq 0 ]]; then
    echo "pg_regress and isolation tests: passed"
else
    echo "pg_regress and isolation tests: FAILED (make installcheck exit $regress_status)"
fi
if [[ $tap_status -eq 0 ]]; then
    tail -n 3 tap/prove.out
else
    echo "TAP tests: FAILED (prove exit $tap_status)"
    if grep -q '^Test Summary Report' tap/prove.out; then
        sed -n '/^Test Summary Report/,$p' tap/prove.out
    else
        tail -n 3 tap/prove.out
    fi
fi
[[ $regress_status -eq 0 && $tap_status -eq 0 ]]
