#!/usr/bin/env bash
# RDMA: a Soft-RoCE link declared in the node files, which the development
# kernel cannot make (no RDMA core): podnetctl loads the modules user verbs
# need, creates the link over podnet's RDMA netlink codec, and the kernel
# and rdma-core's tools show it with its uverbs device; a second apply
# writes nothing (same device index); a link deleted by hand is planned
# and made again; a link podnet did not make is left alone; removing the
# link from the files removes it. The codec's NEWLINK bytes are compared
# with what iproute2's `rdma link add` sends (strace).
# vm: timeout=240
source "$(dirname "$0")/../lib.sh"

need_cmd jq rdma ibv_devinfo strace /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
PODNETCTL=$(podnet_bin podnetctl)
T=$PODNET_CASE_TMP
mkdir -p "$T/cfg"
netns_new node
ip -n node link add r0 type veth peer name r1
ip -n node link set r0 up
ip -n node link set r1 up
cleanup_add bash -c 'for d in $(rdma -j link show 2>/dev/null | jq -r ".[] | select(.netdev == \"r0\" or .netdev == \"r1\") | .ifname | sub(\"/.*\"; \"\")" | sort -u); do rdma link delete "$d"; done'
pctl() { "$PODNETCTL" -c "$T/cfg" --netns node --state-dir "$T/state" --bpf-dir "$T/bpf" "$@"; }
node_file() { # [LINKS]
    printf 'version = 1\n[rdma]\nsoft_roce = { %s }\n' "${1-}" > "$T/cfg/10-node.toml"
}
# rdma_dev NAME: the device's `rdma dev` JSON, as seen from the node namespace.
rdma_dev() { ip netns exec node rdma -j dev show | jq -c --arg n "$1" '.[] | select(.ifname == $n)'; }
rdma_link() { ip netns exec node rdma -j link show | jq -c --arg n "$1" '.[] | select(.ifname == $n or (.ifname | startswith($n + "/")))'; }

log "=== the kernel's bytes: rdma link add, as iproute2 sends it"
modprobe rdma_rxe || fail "modprobe rdma_rxe"
# iproute2 (libmnl) sends with sendto; strace prints the header decoded and
# the rest as a string.
line=$(ip netns exec node strace -qq -f -e trace=sendto,sendmsg -xx rdma link add pn-probe type rxe netdev r1 2>&1 | grep -m1 'nlmsg_type=0x1403' || true)
log "iproute2: $line"
ip netns exec node rdma link delete pn-probe || fail "rdma link delete pn-probe"
[[ -n $line ]] || fail "strace shows no NEWLINK (type 0x1403: client NLDEV, command 3)"
# The payload after the header, as the codec's unit test expects it.
sent=$(grep -o '"\(\\x[0-9a-f][0-9a-f]\)*"' <<< "$line" | head -n1 | tr -d '"' | sed 's/\\x/ /g; s/^ //')
assert_eq "$(cat "$PODNET_ROOT/tests/data/rdma-newlink-pn-probe.hex")" "$sent" "iproute2's NEWLINK payload (tests/data/rdma-newlink-pn-probe.hex)"
# udev may load rdma_ucm for pn-probe's events: let it finish first.
udevadm settle 2> /dev/null || true
rmmod rdma_ucm ib_uverbs 2> /dev/null || true

log "=== declared: a Soft-RoCE link on r0"
node_file 'rxe0 = "r0"'
out=$(pctl apply --dry-run)
log "$out"
assert_contains "$out" "+ create rxe link rxe0 on r0" "dry-run"
[[ -z $(rdma_dev rxe0) ]] || fail "the dry-run made rxe0"
must pctl apply
link=$(rdma_link rxe0)
log "rdma link: $link"
assert_eq r0 "$(jq -r .netdev <<< "$link")" "rxe0's netdev"
for m in ib_uverbs rdma_ucm rdma_rxe; do
    [[ -d /sys/module/$m ]] || fail "module $m not loaded"
done
index=$(rdma_dev rxe0 | jq -r .ifindex)
uverbs=$(ls /sys/class/infiniband/rxe0/device/infiniband_verbs 2> /dev/null || ls -d /sys/class/infiniband_verbs/uverbs* | while read -r u; do [[ $(cat "$u/ibdev") == rxe0 ]] && basename "$u"; done)
log "rxe0: index $index, user verbs $uverbs"
[[ -c /dev/infiniband/$uverbs ]] || fail "no char device /dev/infiniband/$uverbs for rxe0"
info=$(ip netns exec node ibv_devinfo -d rxe0)
log "$(head -n 20 <<< "$info")"
assert_contains "$info" "transport:			InfiniBand" "ibv_devinfo on rxe0"
assert_contains "$info" "PORT_ACTIVE" "rxe0's port"
assert_contains "$(cat "$T/state/rdma-links.json")" '"rxe0"' "podnet's ledger"

log "=== a second apply writes nothing"
out=$(pctl apply)
assert_contains "$out" "No changes" "second apply"
assert_eq "$index" "$(rdma_dev rxe0 | jq -r .ifindex)" "rxe0's index after a no-op apply"
must pctl status

log "=== deleted by hand: planned and made again; one podnet did not make is left alone"
ip netns exec node rdma link delete rxe0
ip netns exec node rdma link add rxe9 type rxe netdev r1
out=$(pctl apply --dry-run)
log "$out"
assert_contains "$out" "+ create rxe link rxe0 on r0" "dry-run after the delete"
must pctl apply
[[ -n $(rdma_link rxe0) ]] || fail "rxe0 not made again"
[[ -n $(rdma_link rxe9) ]] || fail "podnet touched rxe9"

log "=== a name taken by a link podnet did not make is refused, naming the key"
node_file 'rxe0 = "r0", rxe9 = "r0"'
out=$(pctl apply 2>&1) && fail "apply took over rxe9: $out"
log "$out"
assert_contains "$out" "podnet did not make it" "refusal"
assert_eq r1 "$(rdma_link rxe9 | jq -r .netdev)" "rxe9 after the refusal"

log "=== removed from the files: podnet's link goes, the other stays"
node_file ''
out=$(pctl apply)
log "$out"
assert_contains "$out" "- delete rxe link rxe0 on r0 (podnet's, no longer declared)" "removal"
[[ -z $(rdma_dev rxe0) ]] || fail "rxe0 still there"
[[ -n $(rdma_link rxe9) ]] || fail "podnet removed rxe9"
assert_eq "[]" "$(jq -c . "$T/state/rdma-links.json")" "podnet's ledger after the removal"
out=$(pctl apply)
assert_contains "$out" "No changes" "apply after the removal"
ip netns exec node rdma link delete rxe9
log "ok"
