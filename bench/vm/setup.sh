# shellcheck shell=bash
# What the VM side of bench/shaping (rates.sh, cost.sh) shares: a node
# namespace with podnetd, "the network" behind it, and pods made as libcni
# makes them: podnet-cni chained after Debian's ipvlan or macvlan plugin on
# the masters mi/mm (shaped) and ui/um (the same, not shaped), and Debian's
# `bandwidth` plugin chained after `ptp` (veth pods; the plugin shapes pod
# egress with tbf on an ifb). Source lib.sh and measure.sh first; the
# table goes to $TABLE, printed between "BENCH TABLE" markers by
# bench_table_end.

need_module ipvlan macvlan sch_fq sch_tbf sch_ingress ifb act_mirred cls_u32 veth
need_cmd jq iperf3 tc curl bc
for p in ipvlan macvlan ptp host-local bandwidth; do
    [[ -x /usr/lib/cni/$p ]] || fail "/usr/lib/cni/$p missing (containernetworking-plugins)"
done
PODNETD=$(podnet_bin podnetd)
CNI=$(podnet_bin podnet-cni)
SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
KUBELET_BURST=2147483647
podnetd_layout

# node: masters mi/mm (ipvlan l2 / macvlan bridge, shaped) and ui/um (the
# same, not shaped), each a veth to "the network" (peer); ptp pods are
# routed by node to peer through up0.
netns_new node
netns_new peer
link() { # NODE_END PEER_END SUBNET_NO
    ip -n node link add "$1" type veth peer name "$2"
    ip -n node link set "$2" netns peer
    ip -n node link set "$1" up
    ip -n peer link set "$2" up
    ip -n peer addr add "10.5$3.0.1/24" dev "$2"
}
link mi pmi 1
link mm pmm 2
link ui pui 3
link um pum 4
link up0 pup 0
ip -n node addr add 10.50.0.2/24 dev up0
ip netns exec node sysctl -qw net.ipv4.ip_forward=1
ip -n peer route add 10.55.0.0/24 via 10.50.0.2
subnet() { case $1 in mi) echo 1 ;; mm) echo 2 ;; ui) echo 3 ;; um) echo 4 ;; ptp) echo 5 ;; esac; }
cat > "$T/cfg/10-node.toml" <<'TOML'
version = 1
[masters.mi]
kind = "ipvlan"
mode = "l2"
[masters.mm]
kind = "macvlan"
mode = "bridge"
[masters.ui]
kind = "ipvlan"
mode = "l2"
shaping = false
[masters.um]
kind = "macvlan"
mode = "bridge"
shaping = false
[shaping]
TOML
# No timer pass (a reconcile every 60 s) to land in a measurement.
"$PODNETD" -c "$T/cfg" --netns node --state-dir "$T/state" --socket "$SOCK" --bpf-dir "$PIN" --interval 3600 2>> "$T/podnetd.log" &
cleanup_add kill $!
wait_until 60 bash -c "curl -s --unix-socket '$SOCK' http://x/v1/status | jq -en 'input | .converged and (.shaping | length == 2)'"

ip netns exec peer iperf3 -s -i 0.1 -J -D -I "$T/iperf3.pid" --logfile "$T/iperf3-server.log"
cleanup_add pkill -F "$T/iperf3.pid"
wait_until 20 bash -c "ip netns exec peer ss -ltn | grep -q ':5201 '"

# pod_add WHERE ID NS: the main plugin's ADD for a pod on master WHERE (or
# a ptp pod); prints its result.
pod_add() {
    local where=$1 n main
    n=$(subnet "$where")
    ip netns add "$3"
    main=$(jq -nc --arg where "$where" --arg dir "$T/ipam" --arg sub "10.5$n.0.0/24" --arg first "10.5$n.0.10" --arg last "10.5$n.0.250" '
        {cniVersion:"1.0.0", name:"pods",
         ipam:{type:"host-local", ranges:[[{subnet:$sub, rangeStart:$first, rangeEnd:$last}]], dataDir:$dir}}
        * if $where == "ptp" then {type:"ptp", ipMasq:false, ipam:{routes:[{dst:"0.0.0.0/0"}]}}
          elif $where[1:] == "i" then {type:"ipvlan", master:$where, mode:"l2"}
          else {type:"macvlan", master:$where, mode:"bridge"} end')
    echo "$main" > "$T/main-$2"
    cni_call ADD "/usr/lib/cni/$(jq -r .type <<< "$main")" "$main" "$2" "$3"
}
pod_del() { # ID NS
    local main
    main=$(cat "$T/main-$1")
    cni_call DEL "/usr/lib/cni/$(jq -r .type <<< "$main")" "$main" "$1" "$2" > /dev/null || true
    ip netns del "$2"
}
# shaper_conf WHERE PREV RATE: the chained entry: podnet-cni after
# ipvlan/macvlan, bandwidth after ptp; RATE "" for none.
shaper_conf() {
    jq -nc --arg where "$1" --argjson prev "$2" --arg rate "$3" --arg sock "$SOCK" --argjson burst "$KUBELET_BURST" '
        {cniVersion:"1.0.0", name:"pods", capabilities:{bandwidth:true}, prevResult:$prev}
        + (if $where == "ptp" then {type:"bandwidth"} else {type:"podnet-cni", socket:$sock, master:$where} end)
        + (if $rate == "" then {} else {runtimeConfig:{bandwidth:{egressRate:($rate | tonumber), egressBurst:$burst}}} end)'
}
shaper_bin() { if [[ $1 == ptp ]]; then echo /usr/lib/cni/bandwidth; else echo "$CNI"; fi; }
iperf_from() { # NS -> JSON
    ip netns exec "$1" iperf3 -c "$2" -t "$SECS" -Z -J --get-server-output
}
peer_of() { echo "10.5$(subnet "$1").0.1"; }
[[ $(subnet ptp) == 5 ]] # the ptp pods reach 10.50.0.1 (peer) through node

# run_pod WHERE RATE -> JSON of an iperf3 run from a new, shaped pod
run_pod() {
    local where=$1 rate=$2 id ns prev conf dst json
    id=bench$RANDOM$RANDOM
    ns=b$id
    prev=$(pod_add "$where" "$id" "$ns")
    conf=$(shaper_conf "$where" "$prev" "$rate")
    cni_call ADD "$(shaper_bin "$where")" "$conf" "$id" "$ns" > /dev/null
    dst=$(peer_of "$where")
    [[ $where == ptp ]] && dst=10.50.0.1
    json=$(iperf_from "$ns" "$dst") || fail "iperf3 from a $where pod: $json"
    cni_call DEL "$(shaper_bin "$where")" "$conf" "$id" "$ns" > /dev/null
    pod_del "$id" "$ns"
    printf '%s' "$json"
}

TABLE=$T/table
: > "$TABLE"
bench_table_end() {
    echo "BENCH TABLE BEGIN"
    cat "$TABLE"
    echo "BENCH TABLE END"
}
