#!/usr/bin/env bash
# The outbox test command:
#   1. installs the Debian packages it needs (as root; see install-deps.sh),
#   2. builds and installs the extension (make && make install),
#   3. copies the tree to a scratch directory owned by the user that runs
#      the tests (postgres when started as root: initdb refuses root), and
#   4. runs there pg_regress and the isolation tests (make installcheck,
#      each with its own temporary server) and the TAP tests (prove
#      test/t/*.pl, through PGXS).
# The exit status is 0 only when everything passed.
#
# Environment knobs: PROVE_TESTS="test/t/001_delivery.pl ..." (subset),
# PROVE_FLAGS="-v" (extra prove flags), OUTBOX_TEST_TIMEOUT (seconds a test
# waits for something to happen, default 30), OUTBOX_KEEP=1 (keep the
# scratch directory), OUTBOX_SKIP_INSTALL=1 (skip apt, build and install),
# OUTBOX_PG_BINDIR (the PostgreSQL bin directory to build and test with,
# default /usr/lib/postgresql/15/bin).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pgbin=${OUTBOX_PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH="$pgbin:$PATH"
cd "$root"

if [[ -z ${OUTBOX_SKIP_INSTALL:-} ]]; then
    bash test/install-deps.sh

    echo "== build =="
    make -s PG_CONFIG="$pgbin/pg_config"
    if [[ $(id -u) -eq 0 ]]; then
        make -s PG_CONFIG="$pgbin/pg_config" install
    elif [[ -w $("$pgbin/pg_config" --pkglibdir) ]]; then
        make -s PG_CONFIG="$pgbin/pg_config" install
    else
        sudo -n make -s PG_CONFIG="$pgbin/pg_config" install
    fi
fi

# The benchmark in its quick mode: it must work (no message lost, nothing
# broken); its timings are printed, never judged.  It runs first so that the
# test runners' summaries close the output.  OUTBOX_SKIP_BENCH=1 skips it,
# and so does running a subset of the tests.
bench_status=0
if [[ -z ${OUTBOX_SKIP_BENCH:-} && -z ${PROVE_TESTS:-} ]]; then
    echo "== benchmark (bench/run.sh --quick) =="
    OUTBOX_SKIP_INSTALL=1 bash bench/run.sh --quick || bench_status=$?
    if [[ $bench_status -ne 0 ]]; then
        echo "== benchmark FAILED (exit $bench_status) =="
    fi
fi

# The tests run as an unprivileged user in a scratch copy of the tree.
if [[ $(id -u) -eq 0 ]]; then
    run_user=postgres
    as_user=(runuser -u postgres --)
else
    run_user=$(id -un)
    as_user=()
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/outbox-test.XXXXXX")
tar -C "$root" --exclude=./.git --exclude='./tmp_check*' --exclude=./results --exclude=./output_iso \
    --exclude=./tap -cf - . | tar -C "$work" -xf -
if [[ $(id -u) -eq 0 ]]; then
    chown -R "$run_user:" "$work"
fi
echo "== tests (as $run_user, in $work) =="

pass_env=(HOME="$work" LANG=C.UTF-8 TZ=UTC
          PATH="$pgbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
for v in OUTBOX_PG_BINDIR PROVE_TESTS PROVE_FLAGS OUTBOX_TEST_TIMEOUT OUTBOX_PYTHON \
         PG_TEST_TIMEOUT_DEFAULT PG_TEST_NOCLEAN CI; do
    if [[ -n ${!v:-} ]]; then pass_env+=("$v=${!v}"); fi
done

set +e
(cd "$work" && "${as_user[@]}" env -i "${pass_env[@]}" bash test/run-tests.sh)
status=$?
set -e

if [[ $status -eq 0 && -z ${OUTBOX_KEEP:-} ]]; then
    rm -rf "$work"
else
    echo "(scratch directory kept: $work)"
fi
if [[ $status -eq 0 ]]; then
    status=$bench_status
fi
exit $status
