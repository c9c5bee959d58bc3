# shellcheck shell=bash
# Helpers for VM test cases (tests/vm/cases/*.sh). Source it first:
#
#   #!/usr/bin/env bash
#   # vm: timeout=120                      (optional headers, see README.md)
#   source "$(dirname "$0")/../lib.sh"
#   netns_new a
#   ip -n a link add d0 type dummy
#   assert_eq d0 "$(ip -n a -j link show d0 | jq -r '.[0].ifname')"
#
# A case passes by exiting 0, fails with any other status, and skips itself
# by exiting 77 (use `skip "reason"`). Each case runs as root in its own bash
# process inside the guest, in the guest's initial network namespace, with
# cwd = repo root and these variables exported:
#   PODNET_ROOT        the repo root (read-only in the guest)
#   PODNET_BIN         dir of the built binaries ($PODNET_BIN/podnetctl)
#   PODNET_VM_RESULTS  writable dir on the host (tests/vm/results)
#   PODNET_CASE        name of this case (file name without .sh)
#   PODNET_CASE_TMP    a fresh scratch dir for this case (in the guest's /tmp
#                      overlay: never written to the host)

set -Eeuo pipefail

# Print the command, line and status that made a case die under `set -e`,
# so a failed log says where it broke without sprinkling echo everywhere.
trap '_lib_on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]}" "$LINENO"' ERR
_lib_on_err() {
    # shellcheck disable=SC2016 # the backquotes are literal
    printf 'ERROR: %s:%s: `%s` exited with %s\n' "${3##*/}" "$4" "$2" "$1" >&2
}

log() { printf '[%(%T)T] %s\n' -1 "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# The runner shows the first "SKIP:" line of the log as the skip reason; a
# skip fails the run unless PODNET_VM_ALLOW_SKIP names the case.
skip() { printf 'SKIP: %s\n' "$*"; exit 77; }
# untested WHAT: something this case could not test on this machine, and
# why; the report lists it under the results and counts it in the summary.
untested() { printf 'UNTESTED: %s\n' "$*"; }

# ---- cleanup: LIFO stack run on exit, whatever the exit status -----------------
_LIB_CLEANUPS=()
# cleanup_add CMD...  run CMD (with its args) when the case exits
cleanup_add() { _LIB_CLEANUPS+=("$(printf '%q ' "$@")"); }
_lib_cleanup() {
    local rc=$? i
    set +e
    trap - ERR
    for ((i = ${#_LIB_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${_LIB_CLEANUPS[i]}" >/dev/null 2>&1
    done
    exit "$rc"
}
trap _lib_cleanup EXIT

# ---- assertions -------------------------------------------------------------------
# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
    [[ $1 == "$2" ]] || fail "${3:-value}: expected '$1', got '$2'"
}
# assert_ne UNEXPECTED ACTUAL [WHAT]
assert_ne() {
    [[ $1 != "$2" ]] || fail "${3:-value}: expected anything but '$1'"
}
# assert_match REGEX ACTUAL [WHAT]   (bash =~ extended regex)
assert_match() {
    [[ $2 =~ $1 ]] || fail "${3:-value}: '$2' does not match /$1/"
}
# assert_contains HAYSTACK NEEDLE [WHAT]
assert_contains() {
    [[ $1 == *"$2"* ]] || fail "${3:-output}: does not contain '$2': $1"
}
# must CMD...   run CMD, echoing it; fail the case (with its output) if it fails
must() {
    local out rc=0
    printf '+ %s\n' "$*"
    out=$("$@" 2>&1) || rc=$?
    [[ -z $out ]] || printf '%s\n' "$out"
    ((rc == 0)) || fail "command failed (exit $rc): $*"
}
# must_fail CMD...   CMD is expected to fail (e.g. invalid config is rejected)
must_fail() {
    local out rc=0
    printf '+ ! %s\n' "$*"
    out=$("$@" 2>&1) || rc=$?
    [[ -z $out ]] || printf '%s\n' "$out"
    ((rc != 0)) || fail "command unexpectedly succeeded: $*"
}
# wait_until SECONDS CMD...   poll CMD every 0.2 s until it succeeds (TCG is slow:
# be generous with SECONDS). A JSON answer is tested with `jq -en 'input | EXPR'`,
# never `jq -e EXPR`: Debian 12's jq 1.6 exits 0 on empty input, so a curl
# that reached no daemon yet would pass.
wait_until() {
    local secs=$1 deadline
    shift
    deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            "$@" || true # once more, with its output, for the log
            fail "timed out after ${secs}s waiting for: $*"
        fi
        sleep 0.2
    done
}

# ---- environment -------------------------------------------------------------------
# need_cmd CMD...   fail (not skip: the host/guest setup is broken) if missing,
# naming the package scripts/deps.list has for it
need_cmd() {
    local c pkg
    for c in "$@"; do
        pkg=$(awk -v t="$c" '!/^#/ { for (i = 4; i <= NF; i++) if ($i == t) { print $1; exit } }' "$PODNET_ROOT/scripts/deps.list")
        [[ -n $pkg ]] || fail "command '$c' is not in scripts/deps.list: add the package that brings it (vm group)"
        # An absolute path may be a library or data file (deps.list's tools).
        if [[ $c == /* ]]; then [[ -e $c ]]; else command -v "$c" >/dev/null; fi ||
            fail "command '$c' not found: Debian package $pkg (scripts/install-deps vm; tests/vm/setup runs it)"
    done
}
# need_module MOD...   modprobe modules, fail if one cannot be loaded
need_module() {
    local m
    for m in "$@"; do
        modprobe "$m" || fail "modprobe $m failed"
    done
}
# podnet_bin NAME   print the path of a built project binary, fail if missing
podnet_bin() {
    [[ -x $PODNET_BIN/$1 ]] ||
        fail "$PODNET_BIN/$1 not found: build it first (cargo build --release) or set PODNET_BIN/PODNET_TARGET_DIR"
    printf '%s\n' "$PODNET_BIN/$1"
}

# ---- network namespaces ------------------------------------------------------------
# netns_new NAME   create netns NAME with lo up; deleted when the case exits.
# Call it directly, not in $(...): the cleanup is registered in this shell.
netns_new() {
    ip netns add "$1" || fail "ip netns add $1 failed"
    cleanup_add ip netns del "$1"
    ip -n "$1" link set lo up
}
# veth_new NS_A IF_A NS_B IF_B   veth pair between two netns, both ends up
# (use "" for the current namespace)
veth_new() {
    local nsa=$1 ifa=$2 nsb=$3 ifb=$4 tmp_a tmp_b
    # Create with unique temp names in the current netns, then move and
    # rename: avoids clashes between cases and with names inside the netns.
    tmp_a="v${RANDOM}a"
    tmp_b="v${RANDOM}b"
    ip link add "$tmp_a" type veth peer name "$tmp_b"
    _veth_place "$tmp_a" "$nsa" "$ifa"
    _veth_place "$tmp_b" "$nsb" "$ifb"
}
_veth_place() {
    local dev=$1 ns=$2 name=$3
    if [[ -n $ns ]]; then
        ip link set "$dev" netns "$ns"
        ip -n "$ns" link set "$dev" name "$name"
        ip -n "$ns" link set "$name" up
    else
        ip link set "$dev" name "$name"
        ip link set "$name" up
        cleanup_add ip link del "$name"
    fi
}
# in_ns NS CMD...   run CMD inside netns NS
in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

: "${PODNET_ROOT:?lib.sh: not running under tests/vm/run (PODNET_ROOT unset)}"
: "${PODNET_BIN:?lib.sh: PODNET_BIN unset}"
export PODNET_CASE=${PODNET_CASE:-$(basename "$0" .sh)}
