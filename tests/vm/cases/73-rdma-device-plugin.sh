#!/usr/bin/env bash
# podnetd's device plugin (`rdma/hca`) with real HCAs: two Soft-RoCE links
# podnetd makes and offers, played against by a kubelet stand-in speaking
# the v1beta1 API (examples/kubelet-harness: kubelet cannot run here):
# Register, ListAndWatch (pods_per_hca devices per HCA, Healthy),
# Allocate (the HCA's uverbs/umad char devices and rdma_cm, which exist),
# an HCA deleted by hand turns Unhealthy, kubelet's restart (its socket
# made anew, the plugin's removed) is followed by a new registration.
# vm: timeout=240
source "$(dirname "$0")/../lib.sh"

need_cmd jq curl rdma
PODNETD=$(podnet_bin podnetd)
HARNESS=$(podnet_bin examples/kubelet-harness)
T=$PODNET_CASE_TMP
mkdir -p "$T/cfg" "$T/kubelet"
SOCK=$T/podnet.sock
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
modprobe rdma_rxe || fail "modprobe rdma_rxe"
netns_new node
ip -n node link add hca0 type veth peer name hca1
ip -n node link set hca0 up
ip -n node link set hca1 up
cleanup_add bash -c 'for d in rxe10 rxe11; do ip netns exec node rdma link delete $d 2>/dev/null; done; true'
cat > "$T/cfg/10-node.toml" <<TOML
version = 1
[rdma]
devices = ["rxe10", "hca1"]
soft_roce = { rxe10 = "hca0", rxe11 = "hca1" }
resource_name = "example.com/hca"
pods_per_hca = 4
TOML
"$PODNETD" -c "$T/cfg" --netns node --state-dir "$T/state" --socket "$SOCK" --bpf-dir "$T/bpf" \
    --device-plugin-dir "$T/kubelet" --interval 3600 2> "$T/podnetd.log" &
cleanup_add bash -c "kill $! 2>/dev/null; true"
(wait_until 90 bash -c "curl -s --unix-socket '$SOCK' http://x/v1/status | jq -en 'input.converged == true'") || {
    cat "$T/podnetd.log"
    curl -s --unix-socket "$SOCK" http://x/v1/status
    fail "podnetd did not converge"
}

# The HCA podnetd made is deleted by hand: no kernel event, no pass (the
# timer is an hour): the plugin's own look finds it gone.
if ! out=$("$HARNESS" --dir "$T/kubelet" --resource example.com/hca --pods-per-hca 4 \
    --remove 'ip netns exec node rdma link delete {}' rxe10 rxe11); then
    cat "$T/podnetd.log"
    fail "the kubelet harness: $out"
fi
log "figures: $out"
assert_eq 8 "$(jq .devices <<< "$out")" "devices listed"
for i in 0 1; do
    paths=$(jq -r ".allocated[$i][]" <<< "$out")
    assert_contains "$paths" "/dev/infiniband/rdma_cm" "Allocate's device nodes"
    grep -q uverbs <<< "$paths" || fail "Allocate gave no uverbs device: $paths"
done
# rxe10 is gone (the harness deleted it): rxe11's uverbs is its own.
uverbs=$(jq -r '.allocated[1][]' <<< "$out" | grep uverbs)
assert_eq rxe11 "$(cat /sys/class/infiniband_verbs/"${uverbs##*/}"/ibdev)" "the HCA of $uverbs"
grep -q "device plugin example.com/hca: registered" "$T/podnetd.log" || fail "podnetd did not log its registration"
assert_eq 2 "$(grep -c 'device plugin example.com/hca: registered' "$T/podnetd.log")" "registrations (start, after kubelet's restart)"
log "ok"
