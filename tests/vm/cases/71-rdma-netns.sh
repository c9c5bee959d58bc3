#!/usr/bin/env bash
# RDMA netns mode, the reboot-only knob: with no other network namespace the
# mode switches live both ways (the kernel's `rdma system` and ib_core's
# parameter show it) and podnet's modprobe.d option follows; with one
# present the plan says needs-reboot, the option is written, the live mode
# is left alone and `status` says pending reboot; "booted with it" (every
# RDMA module unloaded and loaded again, so ib_core reads the option) the
# kernel comes up in the wanted mode and status is converged. podnetctl runs
# in the guest's initial namespace: the mode is the kernel's, not a
# namespace's. modprobe reads the option from the case's own directory
# (modprobe -C), never from the guest's /etc.
# vm: timeout=240
source "$(dirname "$0")/../lib.sh"

need_cmd rdma modprobe ip
PODNETCTL=$(podnet_bin podnetctl)
T=$PODNET_CASE_TMP
mkdir -p "$T/cfg" "$T/modprobe"
BOOT=$T/modprobe/podnet-rdma.conf
pctl() { "$PODNETCTL" -c "$T/cfg" --state-dir "$T/state" --bpf-dir "$T/bpf" --modprobe-dir "$T/modprobe" "$@"; }
node_file() { # MODE
    printf 'version = 1\n[rdma]\nnetns_mode = "%s"\n' "$1" > "$T/cfg/10-node.toml"
}
# iproute2 6.1's `rdma -j system show` is not JSON: read the text.
kernel_mode() { rdma system show | grep -o 'netns [a-z]*' | cut -d' ' -f2; }
param() { cat /sys/module/ib_core/parameters/netns_mode; }
# unload MOD: MOD and every module that holds it.
unload() {
    local h
    for h in /sys/module/"$1"/holders/*; do
        [[ -e $h ]] && unload "$(basename "$h")"
    done
    [[ ! -d /sys/module/$1 ]] || rmmod "$1" || fail "rmmod $1"
}
# apply_live: apply, waiting out namespaces of earlier cases that the kernel
# is still tearing down (they hold the mode: EBUSY, and no tool sees them).
apply_live() {
    local out deadline=$((SECONDS + 60))
    until out=$(pctl apply 2>&1); do
        log "$out"
        assert_contains "$out" "busy" "apply's refusal"
        ((SECONDS < deadline)) || fail "the kernel refused the switch for 60 s"
        sleep 1
    done
    log "$out"
}
cleanup_add bash -c "$(declare -f unload fail); ip netns del pn-busy 2>/dev/null; unload rdma_rxe; unload ib_core; modprobe rdma_rxe"

modprobe rdma_rxe || fail "modprobe rdma_rxe"
[[ -z $(ip netns list) ]] || fail "namespaces left by earlier cases: $(ip netns list)"
assert_eq shared "$(kernel_mode)" "the kernel's mode at the start"

log "=== shared -> exclusive, live: no other namespace"
node_file exclusive
out=$(pctl apply --dry-run)
log "$out"
assert_contains "$out" "~ netns mode shared -> exclusive" "dry-run"
assert_contains "$out" "+ netns mode at boot: exclusive ($BOOT)" "dry-run"
assert_eq shared "$(kernel_mode)" "the mode after the dry-run"
apply_live
assert_eq exclusive "$(kernel_mode)" "rdma system show"
assert_eq N "$(param)" "ib_core's netns_mode"
assert_contains "$(cat "$BOOT")" "options ib_core netns_mode=0" "$BOOT"
out=$(pctl apply)
assert_contains "$out" "No changes" "second apply"
must pctl status

log "=== exclusive -> shared, live"
node_file shared
apply_live
assert_eq shared "$(kernel_mode)" "rdma system show"
assert_eq Y "$(param)" "ib_core's netns_mode"
assert_contains "$(cat "$BOOT")" "options ib_core netns_mode=1" "$BOOT"
must pctl status

log "=== another namespace exists: needs-reboot, the boot setting, pending"
ip netns add pn-busy || fail "ip netns add pn-busy"
node_file exclusive
out=$(pctl apply --dry-run)
log "$out"
assert_contains "$out" "~ netns mode at boot: exclusive ($BOOT): the kernel takes it at the next boot  [needs-reboot]" "dry-run"
assert_contains "$out" "/run/netns/pn-busy" "the namespace that holds the mode"
[[ $out != *"~ netns mode shared -> exclusive"* ]] || fail "the plan switches live with a namespace present"
out=$(pctl apply)
log "$out"
assert_eq shared "$(kernel_mode)" "the live mode after the apply"
assert_contains "$(cat "$BOOT")" "options ib_core netns_mode=0" "$BOOT"
out=$(pctl status) && fail "status is converged with a reboot pending: $out"
log "$out"
assert_contains "$out" "pending reboot: rdma.netns_mode: exclusive from the next boot on" "status"
assert_contains "$out" "not converged: pending reboot (podnet's part is done)" "status"
out=$(pctl apply)
assert_contains "$out" "but for what waits for a reboot" "apply with the reboot pending"

log "=== booted with it: ib_core loads again and reads the option"
unload rdma_rxe
unload ib_core
[[ ! -d /sys/module/ib_core ]] || fail "ib_core still loaded"
# As at boot: the driver and the user-verbs modules come up together.
modprobe -C "$T/modprobe" -a rdma_rxe ib_uverbs rdma_ucm || fail "modprobe -C $T/modprobe"
assert_eq exclusive "$(kernel_mode)" "the mode after the reload, pn-busy still there"
assert_eq N "$(param)" "ib_core's netns_mode"
out=$(pctl status) || fail "status after the reload: $out"
log "$out"
assert_contains "$out" "converged" "status after the reload"
out=$(pctl apply)
assert_contains "$out" "No changes" "apply after the reload"

log "=== no longer declared: podnet removes its option, the live mode stays"
printf 'version = 1\n' > "$T/cfg/10-node.toml"
out=$(pctl apply)
log "$out"
assert_contains "$out" "- remove $BOOT" "removal"
[[ ! -e $BOOT ]] || fail "$BOOT still there"
assert_eq exclusive "$(kernel_mode)" "the live mode after the removal"
log "ok"
