# shellcheck shell=bash
# The body of the podnetd shaping cases (cases/40-*, 41-*): podnetd shaping
# end to end on a real kernel for a $KIND ($MODE) pod made by Debian's
# $KIND + host-local plugins chained with podnet-cni, whose kubelet-style
# bandwidth annotation (50M egress) podnetd turns into an EDT map entry on
# the master it shapes; `bandwidth list` shows live counters; CHECK passes,
# and fails (code 102) when the entry is removed behind podnetd's back until
# a pass puts it back; the rate holds through a podnetd restart (which finds
# its program attached and keeps it) and through the loss of the pinned map
# (a new map, filled, then the program swapped to it); DEL frees the pod;
# turning shaping off in the files puts the root qdisc back; a flow that is
# not ECN-capable is never CE-marked and an ECN-capable one is, at its rate.
# Set KIND and
# MODE, source lib.sh, then this.

source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

need_module "$KIND" sch_fq
need_cmd jq iperf3 tc curl bc
[[ -x /usr/lib/cni/$KIND ]] || fail "containernetworking-plugins missing on the host"
PODNETD=$(podnet_bin podnetd)
CNI=$(podnet_bin podnet-cni)
DEMO=$(podnet_bin examples/edt-demo)
podnetd_layout

netns_new node
netns_new peer
ip -n node link add m0 type veth peer name p0
ip -n node link set p0 netns peer
ip -n peer link set p0 up
ip -n peer addr add 10.20.0.1/24 dev p0
node_file() { # SHAPING [SILVER]
    cat > "$T/cfg/10-node.toml" <<TOML
version = 1
[masters.m0]
kind = "$KIND"
mode = "$MODE"
shaping = $1
shim = { name = "pn-shim0", addresses = ["10.20.0.250/32"], routes = ["10.20.0.0/24"] }
[tiers.silver]
egress = "${2:-100M}"
[shaping]
default_tier = "silver"
TOML
}
node_file true
start_daemon() {
    "$PODNETD" -c "$T/cfg" --netns node --state-dir "$T/state" --socket "$SOCK" --bpf-dir "$PIN" 2>> "$T/podnetd.log" &
    daemon=$!
    wait_until 60 bash -c "curl -s --unix-socket '$SOCK' http://x/v1/status | jq -en 'input.converged == true'"
}
start_daemon
cleanup_add bash -c 'kill $(pgrep -f "podnetd -c '"$T"'/cfg") 2>/dev/null'
# fq at the root, or mq with an fq per queue on a multiqueue device.
fq_on_m0() { tc -n node -j qdisc show dev m0 | jq -e '[.[] | select(.kind == "fq")] | length > 0' > /dev/null; }
if ! timeout 20 bash -c "until $(declare -f fq_on_m0); fq_on_m0; do sleep 0.2; done"; then
    cat "$T/podnetd.log"; api /v1/status; tc -n node qdisc show
    fail "no fq on m0"
fi
log "qdiscs on m0: $(tc -n node qdisc show dev m0 | tr '\n' ';')"

# The pod, as kubelet's runtime makes it (libcni conflist semantics).
netns_new pod
ID=feedface01
MAIN=$(jq -nc --arg dir "$T/ipam" --arg kind "$KIND" --arg mode "$MODE" '{cniVersion:"1.0.0", name:"pods", type:$kind, master:"m0", mode:$mode,
  ipam:{type:"host-local", ranges:[[{subnet:"10.20.0.0/24", rangeStart:"10.20.0.10", rangeEnd:"10.20.0.99"}]], dataDir:$dir}}')
plugin() { cni_call "$1" "$2" "$3" "$ID" pod; } # COMMAND BINARY CONFIG
prev=$(plugin ADD "/usr/lib/cni/$KIND" "$MAIN")
PODNET=$(jq -nc --arg sock "$SOCK" --argjson prev "$prev" '{cniVersion:"1.0.0", name:"pods", type:"podnet-cni",
  socket:$sock, master:"m0", capabilities:{bandwidth:true}, prevResult:$prev,
  runtimeConfig:{bandwidth:{egressRate:50000000, egressBurst:2147483647}}}')
plugin ADD "$CNI" "$PODNET" > /dev/null
ip=$(jq -r '.ips[0].address' <<< "$prev")
log "pod $ip registered: $(api "/v1/endpoints/$ID/eth0")"
ip -n pod route add default dev eth0 2>/dev/null || true
must ip netns exec pod ping -c 1 -W 5 10.20.0.1

ip netns exec peer iperf3 -s -i 0.1 -J -D -I "$T/iperf3.pid" --logfile "$T/iperf3-server.log"
cleanup_add pkill -F "$T/iperf3.pid"
wait_until 20 bash -c "ip netns exec peer ss -ltn | grep -q ':5201 '"
# check JSON LIMIT LABEL: the first second at most 110%, the steady state
# within ±3% (wire rates, from the receiver's 100 ms intervals).
check() {
    iperf_figures "$1"
    log "$3: first second $(pct "$FIG_FIRST" "$2")%, steady $(pct "$FIG_STEADY" "$2")% of $2"
    (($(echo "$FIG_FIRST <= $2 * 1.10" | bc -l))) || fail "$3: first second above 110%"
    (($(echo "$FIG_STEADY >= $2 * 0.97 && $FIG_STEADY <= $2 * 1.03" | bc -l))) ||
        fail "$3: steady state off by more than 3%"
}
json=$(ip netns exec pod iperf3 -c 10.20.0.1 -t 5 -J --get-server-output)
check "$json" 50000000 "50M from the annotation" || { cat "$T/podnetd.log"; exit 1; }
list=$("$(podnet_bin podnetctl)" --socket "$SOCK" bandwidth list --bpf-dir "$PIN" -o json)
log "bandwidth list: $list"
assert_eq 50000000 "$(jq -r '.[0].egress_bps' <<< "$list")" "listed egress limit"
(($(jq -r '.[0].egress_bytes' <<< "$list") > 20000000)) || fail "live byte counter missing or low"

log "=== ECN: a flow that is not ECN-capable is never marked; an ECN-capable one is, and keeps its rate"
# The entry podnetd wrote marks at 5 ms (the default at 50M); the flow
# above did not ask for ECN (tcp_ecn=2: only answer it), so nothing on it
# could be marked, whatever its queue.
marks() { "$DEMO" --pin-dir "$PIN" stats | jq --arg ip "${ip%/*}" '[.[] | select(.ip == $ip) | .marks] | add'; }
entry=$("$DEMO" --pin-dir "$PIN" stats | jq -c --arg ip "${ip%/*}" '.[] | select(.ip == $ip)')
log "entry: $entry"
assert_eq 5000000 "$(jq -r .ce_threshold_ns <<< "$entry")" "marking threshold at 50M (default)"
assert_eq 250000000 "$(jq -r .horizon_ns <<< "$entry")" "horizon at 50M (default)"
assert_eq 0 "$(marks)" "marks after a flow that is not ECN-capable"
ip netns exec pod sysctl -qw net.ipv4.tcp_ecn=1
json=$(ip netns exec pod iperf3 -c 10.20.0.1 -t 5 -J --get-server-output)
check "$json" 50000000 "50M, ECN on" || { cat "$T/podnetd.log"; exit 1; }
m=$(marks)
log "CE marks on the ECN flow: $m; retransmits: $(jq -r '.end.sum_sent.retransmits' <<< "$json")"
((m > 0)) || fail "an ECN-capable flow at its limit was never marked"
ip netns exec pod sysctl -qw net.ipv4.tcp_ecn=2

log "=== CHECK: the limit is in force"
assert_eq true "$(api "/v1/endpoints/$ID/eth0" | jq -r .enforcement.enforced)" "enforced after ADD"
must plugin CHECK "$CNI" "$PODNET"
log "=== the map entry removed behind podnetd's back: CHECK says so until a pass puts it back"
"$DEMO" --pin-dir "$PIN" remove "${ip%/*}" > /dev/null
out=$(plugin CHECK "$CNI" "$PODNET") && fail "CHECK passed without the map entry"
log "CHECK: $out"
assert_eq 102 "$(jq -r .code <<< "$out")" "CHECK's error code"
log "reconcile: $(api /v1/reconcile -X POST)"
plugin CHECK "$CNI" "$PODNET" || { cat "$T/podnetd.log"; fail "CHECK failed after a pass"; }

# during_run LABEL ACTION: an 8 s iperf3 run with ACTION at 3 s; the rate
# must hold throughout.
during_run() {
    ip netns exec pod iperf3 -c 10.20.0.1 -t 8 -J --get-server-output > "$T/run.json" &
    local run=$!
    sleep 3
    "$2"
    wait "$run"
    check "$(cat "$T/run.json")" 50000000 "50M $1" || { cat "$T/podnetd.log"; exit 1; }
}
program() { api /v1/status | jq -r '.shaping[] | select(.device == "m0") | .program_id'; }

log "=== podnetd restart during a run: the new daemon finds the program it would attach"
# Same program (tag) reading the same pinned map: nothing to swap, the
# attachment and its id stay, and the rate holds throughout.
before=$(program)
restart() { kill -TERM "$daemon"; wait "$daemon" || true; start_daemon; }
log_before=$(wc -l < "$T/podnetd.log")
during_run "through a restart" restart
after=$(program)
log "program on m0: $before before the restart, $after after"
if [[ $before != "$after" ]]; then
    log "status: $(api /v1/status)"
    tail -n +"$((log_before + 1))" "$T/podnetd.log"
fi
assert_eq "$before" "$after" "program id after the restart"
steps=$(tail -n +"$((log_before + 1))" "$T/podnetd.log" | grep -E "(shaping|endpoint) [^ ]+: [-+~] " || true)
[[ -z $steps ]] || fail "the restart took shaping steps: $steps"

log "=== the pinned map lost during a run: a new one, filled, and the program swapped"
lose_map() { rm "$PIN/podnet_edt_v1"; api /v1/reconcile -X POST > /dev/null; }
before=$(program)
during_run "through a map loss" lose_map
[[ -e $PIN/podnet_edt_v1 ]] || fail "the map was not pinned again"
assert_ne "$before" "$(program)" "program id after the map loss"
grep -q "shaping m0: ~ EDT program $before swapped in place" "$T/podnetd.log" ||
    fail "no in-place swap in the log"
must plugin CHECK "$CNI" "$PODNET"

REAPPLIES=${REAPPLIES:-100}
log "=== $REAPPLIES re-applies on a shaped node write nothing"
# Links, addresses, routes (ip monitor), qdiscs, classes and filters (tc
# monitor), the program (its id) and the map (podnetd logs every entry it
# writes or removes, and every attach).
ip -n node monitor link address route > "$T/ip-monitor.txt" &
ipmon=$!
tc -n node monitor > "$T/tc-monitor.txt" &
tcmon=$!
sleep 0.5
prog_before=$(program)
log_before=$(wc -l < "$T/podnetd.log")
started=$(date +%s%N)
# The first through podnetctl, the others as the request it makes (a pass
# each; podnetctl's own start costs ~1 s under TCG).
"$(podnet_bin podnetctl)" --socket "$SOCK" -c "$T/cfg" apply > /dev/null || fail "podnetctl apply failed"
for _ in $(seq 2 "$REAPPLIES"); do
    api /v1/reconcile -X POST | jq -en 'input.reconcile.outcome == "converged"' > /dev/null ||
        fail "a re-apply did not find the node converged"
done
took=$((($(date +%s%N) - started) / 1000000 / REAPPLIES))
sleep 0.5
kill "$ipmon" "$tcmon"
wait "$ipmon" "$tcmon" 2> /dev/null || true
[[ ! -s $T/ip-monitor.txt ]] || fail "re-applies changed links, addresses or routes: $(head -5 "$T/ip-monitor.txt")"
[[ ! -s $T/tc-monitor.txt ]] || fail "re-applies changed qdiscs or filters: $(head -5 "$T/tc-monitor.txt")"
assert_eq "$prog_before" "$(program)" "program on m0 after 100 re-applies"
# Every plan step podnetd takes is logged as "<object>: <step>".
writes=$(tail -n +"$((log_before + 1))" "$T/podnetd.log" | grep -E "(shaping|endpoint) [^ ]+: [-+~] " || true)
[[ -z $writes ]] || fail "re-applies wrote the map or attached again: $writes"
log "$REAPPLIES re-applies (${took} ms each): no kernel event, no map write, program $prog_before kept"

log "=== a tier edit reaches the map in the pass that loads it"
# Endpoints of the default tier (silver), registered through the API.
for i in 1 2 3; do
    must curl -sf --unix-socket "$SOCK" -X PUT -H 'content-type: application/json' \
        -d "{\"ips\":[\"10.20.0.20$i/32\"],\"master\":\"m0\"}" "http://x/v1/endpoints/tier$i/eth0"
done
rates() { "$DEMO" --pin-dir "$PIN" stats | jq -c '[.[] | select(.ip | startswith("10.20.0.20")) | .rate_bps] | unique'; }
assert_eq "[100000000]" "$(rates)" "silver entries before the edit"
node_file true 200M
started=$(date +%s%N)
# The reconcile a request asks for reloads the files; when it returns, the
# pass that loaded the edit has also written the map.
log "reconcile: $(api /v1/reconcile -X POST)"
took=$((($(date +%s%N) - started) / 1000000))
assert_eq "[200000000]" "$(rates)" "silver entries after the pass that loaded the edit"
for i in 1 2 3; do
    assert_eq true "$(api "/v1/endpoints/tier$i/eth0" | jq -r .enforcement.enforced)" "tier$i enforced at once"
done
log "tier edit: every entry at the new rate ${took} ms after the edit"
for i in 1 2 3; do api "/v1/endpoints/tier$i/eth0" -X DELETE > /dev/null; done

log "=== DEL frees the pod"
plugin DEL "$CNI" "$PODNET" > /dev/null
wait_until 10 bash -c "! curl -s --unix-socket '$SOCK' http://x/v1/endpoints/$ID/eth0 | jq -e .container_id"
client_reconcile=$(api /v1/reconcile -X POST)
json=$(ip netns exec pod iperf3 -c 10.20.0.1 -t 3 -J)
free=$(jq -r '.end.sum_received.bits_per_second' <<< "$json")
log "after DEL: $(printf '%.0f' "$free") bit/s"
(($(echo "$free > 50000000 * 2" | bc -l))) || fail "the pod is still limited after DEL"

log "=== shaping off: the kernel's default root qdisc comes back"
node_file false
wait_until 10 bash -c "tc -n node -j qdisc show dev m0 | jq -e '[.[] | select(.kind == \"fq\" or .kind == \"mq\")] | length == 0'"
log "root after: $(tc -n node qdisc show dev m0 | head -1)"
plugin DEL "/usr/lib/cni/$KIND" "$MAIN" > /dev/null
log "all good"
