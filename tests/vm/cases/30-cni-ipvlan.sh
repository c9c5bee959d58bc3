#!/usr/bin/env bash
# Real peers on a full kernel: Debian's ipvlan + host-local CNI plugins
# chained with podnet-cni, run as libcni runs a conflist, against a podnetd
# that manages the ipvlan master and its shim. The pod is registered with
# its policy limits, the host reaches it through the shim, DEL unregisters.
# vm: timeout=240
source "$(dirname "$0")/../lib.sh"

need_module ipvlan
need_cmd jq ping
[[ -x /usr/lib/cni/ipvlan && -x /usr/lib/cni/host-local ]] ||
    fail "containernetworking-plugins missing on the host (scripts/test installs it)"
PODNETD=$(podnet_bin podnetd)
CNI=$(podnet_bin podnet-cni)
T=$PODNET_CASE_TMP
mkdir -p "$T/cfg" "$T/state"
# podnetd pins the shaper's map under /sys/fs/bpf/podnet: this case must
# not depend on an earlier case having mounted bpffs.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

netns_new node
ip -n node link add ens192 type veth peer name ens192-peer
ip -n node link set ens192-peer up
cat > "$T/cfg/10-node.toml" <<TOML
version = 1
[masters.ens192]
kind = "ipvlan"
mode = "l2"
shim = { name = "pn-shim0", addresses = ["172.51.0.230/32"], routes = ["172.51.0.0/24"] }
[tiers.silver]
egress = "100M"
[shaping]
default_tier = "silver"
TOML
"$PODNETD" -c "$T/cfg" --netns node --state-dir "$T/state" --socket "$T/state/podnet.sock" 2> "$T/podnetd.log" &
daemon=$!
cleanup_add kill "$daemon"
wait_until 60 curl -sf --unix-socket "$T/state/podnet.sock" http://x/v1/status
wait_until 60 bash -c "curl -s --unix-socket '$T/state/podnet.sock' http://x/v1/status | jq -en 'input.converged == true'"

netns_new pod
ID=c0ffee0123
# libcni: each plugin gets name and cniVersion, the previous result, and
# runtimeConfig only for the capabilities it declares.
IPVLAN=$(jq -nc --arg dir "$T/ipam" '{cniVersion:"1.0.0", name:"pods", type:"ipvlan", master:"ens192", mode:"l2",
  ipam:{type:"host-local", ranges:[[{subnet:"172.51.0.0/24", rangeStart:"172.51.0.10", rangeEnd:"172.51.0.99"}]], dataDir:$dir}}')
plugin() { # COMMAND BINARY CONFIG
    printf '%s' "$3" | CNI_COMMAND=$1 CNI_CONTAINERID=$ID CNI_NETNS=/run/netns/pod CNI_IFNAME=eth0 \
        CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=p1" ip netns exec node "$2"
}
prev=$(plugin ADD /usr/lib/cni/ipvlan "$IPVLAN")
log "ipvlan result: $prev"
PODNET=$(jq -nc --arg sock "$T/state/podnet.sock" --argjson prev "$prev" '{cniVersion:"1.0.0", name:"pods", type:"podnet-cni",
  socket:$sock, master:"ens192", capabilities:{bandwidth:true}, prevResult:$prev,
  runtimeConfig:{bandwidth:{egressRate:50000000, egressBurst:2147483647}}}')
out=$(plugin ADD "$CNI" "$PODNET")
assert_eq "$(jq -cS . <<< "$prev")" "$(jq -cS . <<< "$out")" "podnet-cni passes prevResult through"

ip=$(jq -r '.ips[0].address' <<< "$prev")
record=$(curl -s --unix-socket "$T/state/podnet.sock" "http://x/v1/endpoints/$ID/eth0")
log "registered: $record"
assert_eq "$ip" "$(jq -r '.ips[0]' <<< "$record")" "registered IP"
assert_eq 50000000 "$(jq -r '.limits.egress' <<< "$record")" "egress from the annotation"
must ip netns exec node ping -c 2 -W 3 "${ip%/*}"

plugin DEL "$CNI" "$PODNET" > /dev/null
plugin DEL "$CNI" "$PODNET" > /dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/state/podnet.sock" "http://x/v1/endpoints/$ID/eth0")
assert_eq 404 "$code" "endpoint after DEL"
plugin DEL /usr/lib/cni/ipvlan "$IPVLAN" > /dev/null
log "all good"
