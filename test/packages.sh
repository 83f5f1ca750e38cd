#!/usr/bin/env bash
# The Debian packages, built and used as a user would: for each PostgreSQL
# major version in OUTBOX_PG_MAJORS (default "15 17 18"),
#   1. builds postgresql-NN-outbox with dpkg-buildpackage (debian/rules:
#      pg_buildext) from a scratch copy of the tree: on this host for the
#      host's own PostgreSQL (15 on bookworm), for the others in a
#      throwaway copy of test/pgroot.sh's root (17: trixie, 18: sid), where
#      apt-get build-dep adds what debian/control asks for;
#   2. checks what the .deb holds: outbox.so, outbox.control and every
#      sql/outbox--*.sql, nothing else (no test file), its version (the
#      control file's default_version) and its dependencies;
#   3. installs it with apt-get into a throwaway copy of a clean root with
#      only postgresql-NN (test/pgroot.sh --scratch --clean), which must
#      pull in libcurl, and runs debian/tests/delivery there, on a network
#      of its own: a cluster preloading the installed library, CREATE
#      EXTENSION, one message delivered to a local receiver.
# It checks META.json (PGXN) first.  Run as root (chroot, apt-get, unshare).
# The exit status is 0 only when every step of every version passed.
#
# Environment: OUTBOX_PG_MAJORS, OUTBOX_KEEP=1 (keep the scratch directory
# with the builds' logs and the .debs), OUTBOX_TEST_TIMEOUT (passed to the
# delivery test).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
read -r -a majors <<<"${OUTBOX_PG_MAJORS:-15 17 18}"

[[ $(id -u) -eq 0 ]] || { echo "test/packages.sh: run as root (it uses chroot and apt-get)" >&2; exit 2; }

default_version=$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" outbox.control)
deb_version=$(dpkg-parsechangelog -l debian/changelog -S Version)
host_major=$(/usr/share/postgresql-common/supported-versions 2>/dev/null | tail -n 1 || true)
[[ -f test/pgroot.sh ]] || { echo "test/packages.sh: test/pgroot.sh (the build and clean roots) is missing" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/outbox-packages.XXXXXX")
status=0
summary=()

# The tree as it is (committed or not), without build products
copy_tree() {
    mkdir -p "$1"
    tar -C "$root" --exclude=./.git --exclude='./tmp_check*' --exclude=./results \
        --exclude=./output_iso --exclude=./tap --exclude=./log \
        --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude='./src/*.d' \
        --exclude=./debian/.debhelper --exclude=./debian/tmp --exclude=./debian/files \
        --exclude='./debian/postgresql-*-outbox' --exclude='./debian/*.substvars' \
        --exclude='./debian/*.debhelper.log' --exclude=./debian/debhelper-build-stamp \
        -cf - . | tar -C "$1" -xf -
}

# Run a command in a root: its own mount and PID namespaces, so /proc is
# mounted for it alone and every process it leaves behind dies with it.
# --net gives it a network of its own too (loopback only): no port it uses
# can meet another test's.
in_root() {
    local net=()
    if [[ $1 == --net ]]; then net=(--net); shift; fi
    local r=$1; shift
    unshare --mount --pid --fork "${net[@]}" -- /bin/sh -c '
        r=$1; shift
        mount -t proc proc "$r/proc" || exit 1
        [ -z "$OUTBOX_NET" ] || ip link set lo up || exit 1
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
             LANG=C.UTF-8 HOME=/root DEBIAN_FRONTEND=noninteractive \
             OUTBOX_TEST_TIMEOUT="$OUTBOX_TEST_TIMEOUT" "$@"' \
        sh "$r" "$@"
}
export OUTBOX_TEST_TIMEOUT=${OUTBOX_TEST_TIMEOUT:-30}

# Throwaway copies of test/pgroot.sh's roots, removed when done (or at exit)
scratch_roots=()
scratch_root() {   # scratch_root VAR pgroot-args...: VAR= a fresh copy's path
    local -n into=$1; shift
    into=$(bash test/pgroot.sh --scratch "$@" | tail -n 1) || return 1
    [[ -d $into/usr/lib/postgresql ]] || { echo "test/pgroot.sh --scratch $* gave no root" >&2; return 1; }
    scratch_roots+=("$into")
}
remove_scratch_roots() {
    local r
    for r in "${scratch_roots[@]}"; do
        bash test/pgroot.sh --remove "$r" || echo "could not remove $r" >&2
    done
    scratch_roots=()
}
trap remove_scratch_roots EXIT

# apt-get in a root: sid's Release file may be past its Valid-Until date on
# a mirror that lags (the signature is still checked)
root_apt='apt-get -q -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false'

# Build postgresql-$1-outbox into $work/$1; sets deb to the .deb's path.
# One make job, niced: the machine's cores are shared.
build_package() {
    local v=$1 out=$work/$1 log=$work/$1/build.log broot
    if [[ $v == "$host_major" ]]; then
        copy_tree "$out/src/outbox"
        (
            cd "$out/src/outbox"
            dpkg-checkbuilddeps 2>/dev/null || apt-get build-dep -y -q . >/dev/null
            # debian/control is the one committed, generated on this
            # distribution: pg_buildext checkcontrol fails if it is stale
            nice dpkg-buildpackage -us -uc -b --jobs=1
        ) >"$log" 2>&1 || { tail -n 40 "$log" >&2; return 1; }
        mv "$out"/src/*.deb "$out/"
        rm -rf "$out/src"
    else
        # A copy of the root, so that the build dependencies it installs
        # stay out of the cached one
        scratch_root broot "$v" || return 1
        copy_tree "$broot/tmp/outbox-package/outbox"
        # debian/control lists the host's version: PG_UPDATECONTROL lets
        # pg_buildext regenerate it for the root's (as apt.postgresql.org does)
        in_root "$broot" /bin/sh -ec "
            cd /tmp/outbox-package/outbox
            dpkg-checkbuilddeps 2>/dev/null || { $root_apt update && $root_apt build-dep -y .; } >/dev/null
            PG_UPDATECONTROL=yes nice dpkg-buildpackage -us -uc -b --jobs=1" >"$log" 2>&1 ||
            { tail -n 40 "$log" >&2; remove_scratch_roots; return 1; }
        cp "$broot"/tmp/outbox-package/*.deb "$out/"
        remove_scratch_roots
    fi
    deb=$out/postgresql-${v}-outbox_${deb_version}_$(dpkg --print-architecture).deb
    [[ -f $deb ]] || { echo "no $(basename "$deb") after the build; there are:" >&2; ls "$out" >&2; return 1; }
}

# What the .deb holds and says
check_package() {
    local v=$1 deb=$2 expected got
    expected=$( {
        echo "usr/lib/postgresql/$v/lib/outbox.so"
        echo "usr/share/postgresql/$v/extension/outbox.control"
        for f in sql/outbox--*.sql; do
            echo "usr/share/postgresql/$v/extension/${f#sql/}"
        done
    } | sort)
    # every file under PostgreSQL's directories; bitcode (for JIT) aside
    got=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\.\//, "", $6); print $6 }' |
          grep -E "^usr/(lib|share)/postgresql/" | grep -v "^usr/lib/postgresql/$v/lib/bitcode/" | sort)
    if [[ $got != "$expected" ]]; then
        echo "the package's files are not the expected ones:" >&2
        diff <(echo "$expected") <(echo "$got") >&2 || true
        return 1
    fi
    echo "ok: the package installs outbox.so, outbox.control and $(ls sql/outbox--*.sql | wc -l) sql/outbox--*.sql scripts, nothing else"

    got=$(dpkg-deb -f "$deb" Package)
    [[ $got == "postgresql-$v-outbox" ]] || { echo "Package: $got" >&2; return 1; }
    got=$(dpkg-deb -f "$deb" Version)
    [[ ${got%-*} == "$default_version" ]] ||
        { echo "Version $got does not follow default_version $default_version" >&2; return 1; }
    echo "ok: version $got (default_version $default_version)"
    got=$(dpkg-deb -f "$deb" Depends)
    [[ $got =~ (^|, )postgresql-$v( |,|$) ]] || { echo "Depends ($got) lacks postgresql-$v" >&2; return 1; }
    [[ $got =~ (^|, )libcurl4[a-z0-9]*( |,|$) ]] || { echo "Depends ($got) lacks libcurl4" >&2; return 1; }
    echo "ok: Depends: $got"
}

# Install the .deb into a copy of a clean root and deliver one message there
install_and_deliver() {
    local v=$1 deb=$2 r log=$work/$1/install.log
    scratch_root r --clean "$v" || return 1
    mkdir -p "$r/tmp/outbox-src/test" "$r/tmp/outbox-src/conf" "$r/tmp/outbox-src/debian/tests"
    cp test/receiver.py "$r/tmp/outbox-src/test/"
    cp conf/outbox.conf "$r/tmp/outbox-src/conf/"
    cp debian/tests/delivery "$r/tmp/outbox-src/debian/tests/"
    cp "$deb" "$r/tmp/"
    # A package built on the host depends on the host's PostgreSQL minor
    # version or later (pg_buildext's minor_versions): a clean root of the
    # same distribution gets the host's suites (its security updates too)
    if [[ $v == "$host_major" && -r /etc/apt/sources.list.d/debian.sources ]] &&
       [[ $(. /etc/os-release; echo "$VERSION_CODENAME") == $(. "$r/etc/os-release"; echo "$VERSION_CODENAME") ]]; then
        cp /etc/apt/sources.list.d/debian.sources "$r/etc/apt/sources.list.d/"
        rm -f "$r/etc/apt/sources.list"
    fi
    # apt-get resolves the package's dependencies (libcurl4 is not part of
    # the clean root); python3 runs the test receiver
    in_root "$r" /bin/sh -ec "
        $root_apt update
        $root_apt install -y /tmp/$(basename "$deb") python3" >"$log" 2>&1 ||
        { tail -n 30 "$log" >&2; remove_scratch_roots; return 1; }
    echo "ok: apt-get install ./$(basename "$deb") into a clean root"
    local rc=0
    OUTBOX_NET=1 in_root --net "$r" /bin/sh -c "cd /tmp/outbox-src && bash debian/tests/delivery $v" || rc=$?
    remove_scratch_roots
    return $rc
}

# META.json, the PGXN distribution's metadata (https://pgxn.org/spec/): it
# parses, has the fields the spec requires, and its versions (semantic
# versions) are the extension's default_version
echo "== META.json =="
if python3 - "$default_version" <<'EOF'; then
import json, os, re, sys
meta = json.load(open("META.json"))
semver = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+)?$")
want = sys.argv[1] + ".0" if sys.argv[1].count(".") == 1 else sys.argv[1]
errors = ["no %s" % k for k in
          ("name", "abstract", "maintainer", "license", "provides", "meta-spec", "version")
          if k not in meta]
if meta.get("meta-spec", {}).get("version") != "1.0.0":
    errors.append("meta-spec version is not 1.0.0")
versions = [("version", meta.get("version"))] + \
    [("provides.%s.version" % n, p.get("version")) for n, p in meta.get("provides", {}).items()]
for what, version in versions:
    if not semver.match(str(version)):
        errors.append("%s %r is not a semantic version" % (what, version))
    elif version != want:
        errors.append("%s %s is not default_version %s" % (what, version, want))
for n, p in meta.get("provides", {}).items():
    if not os.path.exists(p.get("file", "")):
        errors.append("provides.%s.file %r does not exist" % (n, p.get("file")))
if errors:
    sys.exit("FAIL: META.json: " + "; ".join(errors))
print("ok: META.json has the PGXN spec's fields, version %s" % want)
EOF
    summary+=("META.json: PASS")
else
    summary+=("META.json: FAIL")
    status=1
fi

for v in "${majors[@]}"; do
    echo "== postgresql-$v-outbox: build =="
    mkdir -p "$work/$v"
    t0=$SECONDS
    result=PASS
    deb=
    if ! build_package "$v"; then
        result="FAIL (build)"
    elif ! check_package "$v" "$deb"; then
        result="FAIL (contents)"
    fi
    t1=$SECONDS
    if [[ $result == PASS ]]; then
        echo "ok: built $(basename "$deb") in $((t1 - t0)) s"
        echo "== postgresql-$v-outbox: install into a clean root, one delivery =="
        install_and_deliver "$v" "$deb" || result="FAIL (install or delivery)"
    fi
    t2=$SECONDS
    [[ $result == PASS ]] || status=1
    summary+=("postgresql-$v-outbox: $result (build $((t1 - t0)) s, install and delivery $((t2 - t1)) s)")
done

echo "== packages =="
printf '%s\n' "${summary[@]}"
if [[ $status -eq 0 && -z ${OUTBOX_KEEP:-} ]]; then
    rm -rf "$work"
else
    echo "(scratch directory kept: $work)"
fi
exit $status
