#!/usr/bin/env bash
# RDMA for pods: podnetd reports the node's HCAs (GET /v1/node: ports,
# link layer, netdev, char devices, where each is, who holds it) and
# podnet-cni, chained after Debian's real macvlan plugin with `rdma`, hands
# the pod the Soft-RoCE device on its master.
# Shared mode: the pod's namespace sees the device, the endpoint records
# it, the node reports it in use, and a device the node files do not offer
# is refused with nothing registered; DEL frees it.
# Exclusive mode: podnet-cni asks the kernel to move the device into the
# pod; the kernel cannot move a Soft-RoCE device (EOPNOTSUPP: rxe has no
# namespace support in 6.12, iproute2's `rdma dev set ... netns` gets the
# same), so ADD fails with that said, nothing is registered and the device
# stays on the host.
# vm: timeout=300
source "$(dirname "$0")/../lib.sh"

need_cmd jq curl rdma
[[ -x /usr/lib/cni/macvlan && -x /usr/lib/cni/host-local ]] ||
    fail "containernetworking-plugins missing on the host (scripts/test installs it)"
PODNETD=$(podnet_bin podnetd)
PODNETCTL=$(podnet_bin podnetctl)
CNI=$(podnet_bin podnet-cni)
T=$PODNET_CASE_TMP
mkdir -p "$T/cfg" "$T/state"
SOCK=$T/state/podnet.sock
api() { curl -s --unix-socket "$SOCK" "http://x$1"; }
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
modprobe rdma_rxe || fail "modprobe rdma_rxe"

netns_new node
ip -n node link add ens192 type veth peer name ens192-peer
ip -n node link set ens192 up
ip -n node link set ens192-peer up
cleanup_add bash -c 'for d in rxe0 rxe9; do ip netns exec node rdma link delete $d 2>/dev/null; done; true'
node_file() { # DEVICES
    cat > "$T/cfg/10-node.toml" <<TOML
version = 1
[masters.ens192]
kind = "macvlan"
mode = "bridge"
[rdma]
devices = [$1]
soft_roce = { rxe0 = "ens192" }
TOML
}
node_file '"ens192"'
"$PODNETD" -c "$T/cfg" --netns node --state-dir "$T/state" --socket "$SOCK" --bpf-dir "$T/bpf" 2> "$T/podnetd.log" &
cleanup_add bash -c "kill $! 2>/dev/null; true"
wait_until 90 bash -c "curl -s --unix-socket '$SOCK' http://x/v1/status | jq -en 'input.converged == true'"

log "=== GET /v1/node: the HCA podnetd made, offered by its netdev"
hca=$(api /v1/node | jq -c '.rdma.hcas[] | select(.name == "rxe0")')
log "rxe0: $hca"
assert_eq true "$(jq .offered <<< "$hca")" "rxe0 offered"
assert_eq shared "$(jq -r .netns <<< "$hca")" "rxe0's namespace"
assert_eq rxe "$(jq -r .driver <<< "$hca")" "rxe0's driver"
assert_eq null "$(jq .endpoint <<< "$hca")" "rxe0's user before the pod"
assert_eq "ens192 Ethernet ACTIVE" "$(jq -r '.ports[0] | "\(.netdev) \(.link_layer) \(.state)"' <<< "$hca")" "rxe0's port"
uverbs=$(jq -r '.char_devices[0]' <<< "$hca")
[[ $uverbs == /dev/infiniband/uverbs* && -c $uverbs ]] || fail "rxe0's char device $uverbs"
assert_eq "$(cat /sys/class/infiniband_verbs/"${uverbs##*/}"/ibdev)" rxe0 "the kernel's owner of $uverbs"
rdma_cm=$(api /v1/node | jq -r .rdma.rdma_cm)
[[ -c $rdma_cm ]] || fail "rdma_cm $rdma_cm is not a char device"

log "=== ADD: macvlan, then podnet-cni with rdma: true"
netns_new pod
ID=c0ffee0172
MACVLAN=$(jq -nc --arg dir "$T/ipam" '{cniVersion:"1.0.0", name:"rdma-pods", type:"macvlan", master:"ens192", mode:"bridge",
  ipam:{type:"host-local", ranges:[[{subnet:"10.72.0.0/24", rangeStart:"10.72.0.10", rangeEnd:"10.72.0.99"}]], dataDir:$dir}}')
plugin() { # COMMAND BINARY CONFIG [IFNAME] [NETNS]
    printf '%s' "$3" | CNI_COMMAND=$1 CNI_CONTAINERID=$ID CNI_NETNS=${5-/run/netns/pod} CNI_IFNAME=${4:-eth0} \
        CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=1" ip netns exec node "$2"
}
podnet_conf() { # PREV RDMA
    jq -nc --arg sock "$SOCK" --argjson prev "$1" --argjson rdma "$2" '{cniVersion:"1.0.0", name:"rdma-pods", type:"podnet-cni",
      socket:$sock, master:"ens192", rdma:$rdma, prevResult:$prev}'
}
prev=$(plugin ADD /usr/lib/cni/macvlan "$MACVLAN")
PODNET=$(podnet_conf "$prev" true)
out=$(plugin ADD "$CNI" "$PODNET")
assert_eq "$(jq -cS . <<< "$prev")" "$(jq -cS . <<< "$out")" "podnet-cni passes prevResult through"
assert_eq rxe0 "$(api "/v1/endpoints/$ID/eth0" | jq -r .rdma)" "the endpoint's RDMA device"
# The pass the registration starts reports it.
hca_user() { api /v1/node | jq -r '.rdma.hcas[] | select(.name == "rxe0") | .endpoint'; }
wait_user() {
    local deadline=$((SECONDS + 30))
    until [[ $(hca_user) == "$1" ]]; do
        ((SECONDS < deadline)) || fail "rxe0's user: expected $1, got $(hca_user)"
        sleep 0.2
    done
}
wait_user "$ID/eth0"
ip netns exec pod rdma dev show rxe0 > /dev/null || fail "the pod does not see rxe0"
info=$(ip netns exec pod ibv_devinfo -d rxe0)
assert_contains "$info" "PORT_ACTIVE" "ibv_devinfo in the pod"
plugin ADD "$CNI" "$PODNET" > /dev/null || fail "a repeated ADD"
must plugin CHECK "$CNI" "$PODNET"
status=$("$PODNETCTL" --socket "$SOCK" status) || fail "status with rxe0 in use: $status"
log "$status"
assert_contains "$status" "rdma rxe0: shared, driver rxe, offered -- in use by endpoint $ID/eth0" "status"
assert_contains "$status" "hca ens192" "status lists the offered HCA"

log "=== a device the node files do not offer is refused, nothing registered"
ip netns exec node rdma link add rxe9 type rxe netdev ens192-peer
prev2=$(plugin ADD /usr/lib/cni/macvlan "$MACVLAN" net1)
out=$(plugin ADD "$CNI" "$(podnet_conf "$prev2" '"rxe9"')" net1) && fail "ADD took rxe9: $out"
log "$out"
assert_eq 103 "$(jq .code <<< "$out")" "the error's code"
assert_contains "$(jq -r .msg <<< "$out")" "RDMA device rxe9 is not offered to pods" "the error"
assert_contains "$(jq -r .details <<< "$out")" "offered now: rxe0" "the error's details"
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" "http://x/v1/endpoints/$ID/net1")" "net1 after the refusal"
plugin DEL /usr/lib/cni/macvlan "$MACVLAN" net1 > /dev/null
ip netns exec node rdma link delete rxe9

log "=== DEL frees it (and moves nothing: shared mode)"
err=$(plugin DEL "$CNI" "$PODNET" 2>&1 > /dev/null) || fail "DEL: $err"
assert_eq "" "$err" "DEL's complaints"
wait_user null
plugin DEL /usr/lib/cni/macvlan "$MACVLAN" > /dev/null

log "=== DEL after the pod's namespace is gone"
ip netns add pod-gone
prev=$(plugin ADD /usr/lib/cni/macvlan "$MACVLAN" eth0 /run/netns/pod-gone)
plugin ADD "$CNI" "$(podnet_conf "$prev" true)" eth0 /run/netns/pod-gone > /dev/null
wait_user "$ID/eth0"
ip netns del pod-gone
err=$(plugin DEL "$CNI" "$(podnet_conf "$prev" true)" eth0 /run/netns/pod-gone 2>&1 > /dev/null) || fail "DEL: $err"
assert_eq "" "$err" "DEL's complaints with the namespace gone"
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" "http://x/v1/endpoints/$ID/eth0")" "the endpoint after DEL"
wait_user null
plugin DEL /usr/lib/cni/macvlan "$MACVLAN" eth0 /run/netns/pod-gone > /dev/null

log "=== exclusive mode: the kernel cannot move a Soft-RoCE device"
kill "$(pgrep -f "podnetd -c $T/cfg")"
ip netns exec node rdma link delete rxe0
ip netns del pod
ip netns del node
# The guest's initial namespace from here on: in exclusive mode a device
# is the initial namespace's until moved.
ip link add rp0 type veth peer name rp1
cleanup_add ip link del rp0
ip link set rp0 up
ip link set rp1 up
mkdir -p "$T/cfg2"
cat > "$T/cfg2/10-node.toml" <<TOML
version = 1
[masters.rp0]
kind = "macvlan"
mode = "bridge"
[rdma]
netns_mode = "exclusive"
devices = ["rp0"]
soft_roce = { rxe5 = "rp0" }
TOML
cleanup_add bash -c 'rdma link delete rxe5 2>/dev/null; for n in $(ip netns list | cut -d" " -f1); do ip netns del $n; done; for i in $(seq 60); do rdma system set netns shared 2>/dev/null && break; sleep 1; done'
pctl() { "$PODNETCTL" -c "$T/cfg2" --state-dir "$T/state2" --bpf-dir "$T/bpf2" --modprobe-dir "$T/modprobe" "$@"; }
deadline=$((SECONDS + 60))
until out=$(pctl apply 2>&1); do # the namespaces above die in the background
    assert_contains "$out" "busy" "apply's refusal"
    ((SECONDS < deadline)) || fail "the kernel refused the switch for 60 s: $out"
    sleep 1
done
log "$out"
assert_contains "$(rdma system show)" "netns exclusive" "the kernel's mode"
SOCK=$T/state2/podnet.sock
"$PODNETD" -c "$T/cfg2" --state-dir "$T/state2" --socket "$SOCK" --bpf-dir "$T/bpf2" --modprobe-dir "$T/modprobe" 2> "$T/podnetd2.log" &
cleanup_add bash -c "kill $! 2>/dev/null; true"
wait_until 90 bash -c "curl -s --unix-socket '$SOCK' http://x/v1/status | jq -en 'input.converged == true'"
log "status: $(api /v1/status | jq -c '[.converged, .passes, .last_reconcile]')"
node=$(api /v1/node)
if [[ $(jq -r '.rdma.hcas[]? | select(.name == "rxe5") | .netns' <<< "$node") != host ]]; then
    log "node: $node"
    log "status: $(api /v1/status)"
    cat "$T/podnetd2.log"
    fail "rxe5 is not reported in the host's namespace"
fi
netns_new pod
MACVLAN=$(jq <<< "$MACVLAN" -c '.master = "rp0"')
plugin() { # COMMAND BINARY CONFIG: now from the initial namespace
    printf '%s' "$3" | CNI_COMMAND=$1 CNI_CONTAINERID=$ID CNI_NETNS=/run/netns/pod CNI_IFNAME=eth0 \
        CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=1" "$2"
}
prev=$(plugin ADD /usr/lib/cni/macvlan "$MACVLAN")
PODNET=$(podnet_conf "$prev" true | jq -c '.master = "rp0"')
out=$(plugin ADD "$CNI" "$PODNET") && fail "ADD moved rxe5: $out"
log "$out"
assert_eq 103 "$(jq .code <<< "$out")" "the error's code"
assert_contains "$(jq -r .msg <<< "$out")" "cannot move RDMA device rxe5 into the pod's namespace" "the error"
assert_contains "$(jq -r .details <<< "$out")" "its driver (rxe) does not support network namespaces" "the error's details"
iproute=$(rdma dev set rxe5 netns pod 2>&1) && fail "iproute2 moved rxe5"
log "iproute2: $iproute"
assert_contains "$iproute" "Operation not supported" "iproute2's refusal"
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" "http://x/v1/endpoints/$ID/eth0")" "the endpoint after the refusal"
rdma dev show rxe5 > /dev/null || fail "rxe5 left the host"
[[ -z $(ip netns exec pod rdma dev show 2>/dev/null) ]] || fail "the pod sees an RDMA device: $(ip netns exec pod rdma dev show)"
err=$(plugin DEL "$CNI" "$PODNET" 2>&1 > /dev/null) || fail "DEL after the failed ADD: $err"
assert_eq "" "$err" "DEL's complaints after the failed ADD"
plugin DEL /usr/lib/cni/macvlan "$MACVLAN" > /dev/null
log "ok"
