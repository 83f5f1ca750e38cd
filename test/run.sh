#!/usr/bin/env bash
# The outbox test command, for every supported PostgreSQL major: 15 on this
# Debian 12 machine, then 17 and 18 each inside a Debian root made (and
# cached) by test/pgroot.sh, one after another.  For each major it
#   1. installs the Debian packages it needs (as root; see install-deps.sh;
#      in a root pgroot.sh has installed them),
#   2. builds and installs the extension (make && make install; for 17 and
#      18 into the root's PostgreSQL, never the host's),
#   3. copies the tree to a scratch directory owned by the user that runs
#      the tests (postgres when started as root: initdb refuses root), and
#   4. runs there pg_regress and the isolation tests (make installcheck,
#      each with its own temporary server) and the TAP tests (prove
#      test/t/*.pl, through PGXS); the benchmark's quick mode runs on the
#      host's major only.
# Then the Debian packages of those majors are built and each installed
# into a clean root, where it delivers one message (test/packages.sh).
# Each major prints its summary, and a last summary lists them all.  The
# exit status is 0 only when everything passed on every major.
#
# Environment knobs: OUTBOX_PG_MAJORS="15 17 18" (the majors to test, in
# that order; the default is all of them, or only the host's when
# OUTBOX_PG_BINDIR is set), PROVE_TESTS="test/t/001_delivery.pl ..."
# (subset), PROVE_FLAGS="-v" (extra prove flags), OUTBOX_TEST_TIMEOUT
# (seconds a test waits for something to happen, default 30), OUTBOX_KEEP=1
# (keep the scratch directory), OUTBOX_SKIP_INSTALL=1 (skip apt, build and
# install on the host), OUTBOX_SKIP_BENCH=1, OUTBOX_SKIP_PACKAGES=1 (no
# Debian packages at the end), OUTBOX_PG_BINDIR (the
# PostgreSQL bin directory of this machine to build and test with, default
# /usr/lib/postgresql/15/bin), OUTBOX_ROOTS (where pgroot.sh caches the
# roots).  Testing 17 or 18 needs root (debootstrap, chroot).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pgbin=${OUTBOX_PG_BINDIR:-/usr/lib/postgresql/15/bin}
cd "$root"

host_major=15
if [[ -x $pgbin/pg_config ]]; then
    host_major=$("$pgbin/pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
fi
if [[ -n ${OUTBOX_PG_BINDIR:-} ]]; then
    majors=${OUTBOX_PG_MAJORS:-$host_major}
else
    majors=${OUTBOX_PG_MAJORS:-15 17 18}
fi

# One major inside its Debian root: the tree is copied in, and this script
# runs there as root of the root, for that major alone (its pg_config, no
# apt, no benchmark), the tests again as postgres.  The root has its own
# /tmp, so sockets never meet the host's; servers of the tests listen on
# Unix sockets only, and anything on TCP asks the kernel for a free port.
run_in_root() {
    local major=$1 pgroot src status=0
    if [[ $(id -u) -ne 0 ]]; then
        echo "run: PostgreSQL $major is tested in a Debian root, which needs root" >&2
        return 2
    fi
    pgroot=$(bash "$root/test/pgroot.sh" "$major") || return 2
    src=$(mktemp -d "$pgroot/var/tmp/outbox-src.XXXXXX")
    tar -C "$root" --exclude=./.git --exclude='./tmp_check*' --exclude=./results \
        --exclude=./output_iso --exclude=./tap --exclude='*.o' --exclude='*.so' \
        --exclude='*.bc' --exclude='*.d' -cf - . | tar -C "$src" -xf -
    local pass=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                LANG=C.UTF-8 TZ=UTC HOME=/root
                OUTBOX_PG_BINDIR="/usr/lib/postgresql/$major/bin"
                OUTBOX_RUN_HERE=1 OUTBOX_IN_ROOT=1 OUTBOX_SKIP_BENCH=1)
    for v in PROVE_TESTS PROVE_FLAGS OUTBOX_TEST_TIMEOUT OUTBOX_KEEP OUTBOX_PYTHON \
             PG_TEST_TIMEOUT_DEFAULT PG_TEST_NOCLEAN CI; do
        if [[ -n ${!v:-} ]]; then pass+=("$v=${!v}"); fi
    done
    chroot "$pgroot" env -i "${pass[@]}" bash "${src#"$pgroot"}/test/run.sh" || status=$?
    if [[ $status -eq 0 && -z ${OUTBOX_KEEP:-} ]]; then
        rm -rf "$src"
    else
        echo "(the tree is kept in $src)"
    fi
    return $status
}

# The host's major (or, inside a root, the root's), as this machine has it.
run_here() {
    export PATH="$pgbin:$PATH"

    if [[ -z ${OUTBOX_SKIP_INSTALL:-} ]]; then
        if [[ -z ${OUTBOX_IN_ROOT:-} ]]; then
            bash test/install-deps.sh
        fi

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
    return $status
}

# One major, here (called by the loop below, in a process of its own so
# that errexit holds).
if [[ -n ${OUTBOX_RUN_HERE:-} ]]; then
    run_here
    exit $?
fi

summary=()
overall=0
for major in $majors; do
    started=$(date +%s)
    echo
    echo "######## PostgreSQL $major ########"
    status=0
    if [[ $major == "$host_major" ]]; then
        OUTBOX_RUN_HERE=1 bash "$root/test/run.sh" || status=$?
    else
        run_in_root "$major" || status=$?
    fi
    took=$(( $(date +%s) - started ))
    if [[ $status -eq 0 ]]; then
        summary+=("PostgreSQL $major: passed ($((took / 60)) min $((took % 60)) s)")
    else
        summary+=("PostgreSQL $major: FAILED, exit $status ($((took / 60)) min $((took % 60)) s)")
        overall=1
    fi
done

# The Debian packages of the same majors: each is built, installed into a
# clean root and delivers one message from the installed files (see
# test/packages.sh).  Not for a subset of the tests, nor without root.
if [[ -z ${PROVE_TESTS:-} && -z ${OUTBOX_SKIP_PACKAGES:-} && $(id -u) -eq 0 ]]; then
    started=$(date +%s)
    echo
    echo "######## Debian packages ($majors) ########"
    status=0
    OUTBOX_PG_MAJORS="$majors" bash "$root/test/packages.sh" || status=$?
    took=$(( $(date +%s) - started ))
    if [[ $status -eq 0 ]]; then
        summary+=("Debian packages ($majors): passed ($((took / 60)) min $((took % 60)) s)")
    else
        summary+=("Debian packages ($majors): FAILED, exit $status ($((took / 60)) min $((took % 60)) s)")
        overall=1
    fi
fi

echo
echo "######## all majors ########"
printf '%s\n' "${summary[@]}"
exit $overall
