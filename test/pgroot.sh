#!/usr/bin/env bash
# Debian roots (chroots made with debootstrap) holding a given PostgreSQL
# major, for building and testing outbox on versions the host does not have.
#
#   bash test/pgroot.sh 17            prints the path of a ready root for
#                                     PostgreSQL 17 (Debian trixie), making
#                                     it first if it is missing
#   bash test/pgroot.sh --clean 18    the same, but a root with only
#                                     postgresql-18 (no compiler, no headers,
#                                     no test tools), for package install tests
#   bash test/pgroot.sh --scratch --clean 15
#                                     a throwaway copy of that clean root
#                                     (its path printed); remove it with
#   bash test/pgroot.sh --remove PATH unmounts and deletes a scratch copy
#   bash test/pgroot.sh --list        the roots in the cache
#
# Majors and suites: 15 bookworm, 17 trixie, 18 sid.  Run as root.  The
# roots are cached under $OUTBOX_ROOTS (default /var/cache/outbox/roots), so
# a second call (in the same run or a later one on the same machine) is
# immediate; calls are idempotent and serialised by a lock, so parallel
# callers share one root.  A root counts as ready only once its stamp file
# is written: one that was interrupted half-way is made again.
#
# Every root returned has /proc mounted and a fresh tmpfs on /dev/shm (for
# PostgreSQL's dynamic shared memory).  In a root, services are never
# started (policy-rc.d) and postgresql-common creates no cluster, so nothing
# listens on the host's port 5432; make clusters with initdb or
# pg_createcluster.  The full root holds, besides postgresql-NN,
# postgresql-server-dev-NN and what test/install-deps.sh lists for the host
# (libcurl4-openssl-dev, libipc-run-perl, python3, python3-psycopg2, make,
# gcc, pgbouncer, gdb).  Inside a root the user postgres exists; run things
# with e.g.  chroot "$root" runuser -u postgres -- pg_config
#
# The mirror is the host's (the first URIs: of /etc/apt/sources.list.d), or
# $OUTBOX_MIRROR.  Output other than the path goes to stderr.
set -euo pipefail

cache=${OUTBOX_ROOTS:-/var/cache/outbox/roots}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

log() { echo "pgroot: $*" >&2; }

suite_of() {
    case $1 in
        15) echo bookworm ;;
        17) echo trixie ;;
        18) echo sid ;;
        *) log "no Debian suite known for PostgreSQL $1 (15, 17 or 18)"; exit 2 ;;
    esac
}

mirror() {
    if [[ -n ${OUTBOX_MIRROR:-} ]]; then
        echo "$OUTBOX_MIRROR"
        return
    fi
    local m
    m=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -v -- '-security' | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}

# Mounts /proc and a tmpfs on /dev/shm in a root, unless already there.
mount_root() {
    local r=$1
    mkdir -p "$r/proc" "$r/dev/shm"
    mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
    mountpoint -q "$r/dev/shm" || mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
}

umount_root() {
    local r=$1 m
    # Deepest first: anything mounted below the root, including by callers.
    for m in $(awk -v r="$r" '$2 == r || index($2, r "/") == 1 { print $2 }' \
                   /proc/self/mounts | sort -r); do
        umount "$m" || umount -l "$m"
    done
}

# Runs apt-get in a root.  sid's Release file may be past its Valid-Until
# date on a mirror that lags; the signature is still checked.  The caller's
# environment stays outside: a TMPDIR of the host's breaks maintainer scripts.
root_apt() {
    local r=$1; shift
    chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
        apt-get -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false \
        -o Dpkg::Use-Pty=0 "$@"
}

packages_for() {
    local major=$1 clean=$2
    if [[ $clean == 1 ]]; then
        echo "postgresql-$major"
    else
        echo "postgresql-$major postgresql-server-dev-$major libcurl4-openssl-dev" \
             "libipc-run-perl perl python3 python3-psycopg2 make gcc pgbouncer gdb" \
             "procps"
    fi
}

make_root() {
    local major=$1 clean=$2 r=$3 suite start
    suite=$(suite_of "$major")
    start=$(date +%s)
    if [[ -e $r ]]; then
        log "$r is incomplete; making it again"
        umount_root "$r"
        rm -rf --one-file-system "$r"
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get -qq update >&2
        DEBIAN_FRONTEND=noninteractive apt-get -y -qq install --no-install-recommends \
            debootstrap >&2
    fi
    log "making $r (debootstrap $suite from $(mirror))"
    mkdir -p "$(dirname "$r")"
    if ! debootstrap --variant=minbase "$suite" "$r" "$(mirror)" >"$r.debootstrap.log" 2>&1; then
        log "debootstrap failed; see $r.debootstrap.log"
        tail -n 20 "$r.debootstrap.log" >&2
        exit 1
    fi
    # postgresql-common's configuration needs /proc; mount it before
    # installing anything.
    mount_root "$r"
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    mkdir -p "$r/etc/postgresql-common/createcluster.d"
    echo 'create_main_cluster = false' >"$r/etc/postgresql-common/createcluster.d/outbox.conf"
    cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
    # shellcheck disable=SC2046
    if ! { root_apt "$r" -qq update &&
           root_apt "$r" -y -qq install $(packages_for "$major" "$clean"); } \
           >"$r.apt.log" 2>&1; then
        log "installing packages failed; see $r.apt.log"
        tail -n 30 "$r.apt.log" >&2
        exit 1
    fi
    root_apt "$r" -qq clean >/dev/null 2>&1 || true
    if [[ ! -x $r/usr/lib/postgresql/$major/bin/postgres ]]; then
        log "no PostgreSQL $major in $r after installing"
        exit 1
    fi
    packages_for "$major" "$clean" >"$r/.outbox-root-ready"
    log "$r ready in $(( $(date +%s) - start )) s"
}

clean=0 scratch=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --clean) clean=1; shift ;;
        --scratch) scratch=1; shift ;;
        --remove)
            [[ $# -eq 2 ]] || usage
            r=$(realpath -m "$2")
            case $r in
                "$(realpath -m "$cache")"/scratch/*) ;;
                *) log "$r is not a scratch root of $cache"; exit 2 ;;
            esac
            umount_root "$r"
            rm -rf --one-file-system "$r"
            exit 0 ;;
        --list)
            for s in "$cache"/*/.outbox-root-ready; do
                [[ -e $s ]] && dirname "$s"
            done
            exit 0 ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) break ;;
    esac
done
[[ $# -eq 1 ]] || usage
major=$1
suite=$(suite_of "$major")
if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (debootstrap, chroot, mount)"
    exit 2
fi

name="$suite-pg$major"
[[ $clean == 1 ]] && name+="-clean"
root="$cache/$name"
mkdir -p "$cache"

(
    flock 9
    if [[ ! -e $root/.outbox-root-ready ]] ||
       [[ $(cat "$root/.outbox-root-ready") != "$(packages_for "$major" "$clean")" ]]; then
        make_root "$major" "$clean" "$root"
    fi
    mount_root "$root"
) 9>"$cache/.$name.lock"

if [[ $scratch == 1 ]]; then
    mkdir -p "$cache/scratch"
    copy=$(mktemp -d "$cache/scratch/$name.XXXXXX")
    (
        flock -s 9
        # /proc and /dev/shm are mounts, not copied: --one-file-system.
        cp -a --one-file-system "$root/." "$copy/"
    ) 9>"$cache/.$name.lock"
    mount_root "$copy"
    root=$copy
fi
echo "$root"
