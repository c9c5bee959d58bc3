# shellcheck shell=bash
# The body of the rate cases (cases/50-*, 51-*): for each of the $MODES of
# $KIND, a master shaped by podnetd and pods made by Debian's $KIND +
# host-local plugins chained with podnet-cni, as libcni runs a conflist.
# Pods limited at 10M (kubelet's egress annotation, with kubelet's default
# burst) and 100M (the node's default tier) in every mode, and 1G (a tier
# named in the attachment's args) in every mode but ipvlan l3/l3s
# (RATE_ONE_G_MODES). Each pod sends with iperf3 as soon as it exists, and
# the receiver's 100 ms intervals must show:
#   - the first 100 ms: at most rate x 0.1 s + the tier's burst;
#   - the first second: at most 110% of the limit;
#   - the steady state (1 s to the end): within ±RATE_TOL % (3) of it.
#     Above the band fails at once. Below it, the shaper let through all
#     that came: at 1G a TCG vCPU sometimes cannot send that much (2 Gbit/s
#     unshaped at best), so that run is made once more, and the summary
#     says so; twice below fails.
# Rates are bytes on the wire (1514-byte frames for 1448 payload bytes), as
# tc counts them. Set KIND and MODES, source lib.sh, then this.

source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

need_module "$KIND" sch_fq
need_cmd jq iperf3 tc curl bc
[[ -x /usr/lib/cni/$KIND && -x /usr/lib/cni/host-local ]] ||
    fail "containernetworking-plugins missing on the host"
PODNETD=$(podnet_bin podnetd)
CNI=$(podnet_bin podnet-cni)
TOL=${RATE_TOL:-3}
SECS=${RATE_SECS:-5}
podnetd_layout
# The tiers' bursts, in bytes (the node file below says them in bits).
STANDARD_BURST=$((1000000 / 8))
GOLD_BURST=$((8000000 / 8))

# node: the masters m1.. (one per mode: ipvlan's mode belongs to the
# master), each a veth to p1.. in peer, "the network", 10.3<i>.0.0/24.
netns_new node
netns_new peer
{
    echo "version = 1"
    for i in "${!MODES[@]}"; do
        m=$((i + 1))
        ip -n node link add "m$m" type veth peer name "p$m"
        ip -n node link set "p$m" netns peer
        ip -n peer link set "p$m" up
        ip -n peer addr add "10.3$m.0.1/24" dev "p$m"
        printf '[masters.m%s]\nkind = "%s"\nmode = "%s"\n' "$m" "$KIND" "${MODES[i]}"
    done
    cat <<'TOML'
[tiers.standard]
egress = "100M"
burst = "1Mbit"
[tiers.gold]
egress = "1G"
burst = "8Mbit"
[shaping]
default_tier = "standard"
TOML
} > "$T/cfg/10-node.toml"
"$PODNETD" -c "$T/cfg" --netns node --state-dir "$T/state" --socket "$SOCK" --bpf-dir "$PIN" 2>> "$T/podnetd.log" &
daemon=$!
cleanup_add kill "$daemon"
wait_until 60 bash -c "curl -s --unix-socket '$SOCK' http://x/v1/status | jq -e .converged"
fq_everywhere() {
    local m
    for m in $(seq 1 "${#MODES[@]}"); do
        tc -n node -j qdisc show dev "m$m" | jq -e '[.[] | select(.kind == "fq")] | length > 0' > /dev/null || return 1
    done
}
if ! timeout 20 bash -c "until $(declare -f fq_everywhere); MODES=(${MODES[*]}); fq_everywhere; do sleep 0.2; done"; then
    cat "$T/podnetd.log"; api /v1/status; tc -n node qdisc show
    fail "fq missing on a master"
fi

# The receiver reports every 100 ms.
ip netns exec peer iperf3 -s -i 0.1 -J -D -I "$T/iperf3.pid" --logfile "$T/iperf3-server.log"
cleanup_add pkill -F "$T/iperf3.pid"
wait_until 20 bash -c "ip netns exec peer ss -ltn | grep -q ':5201 '"

# check JSON LIMIT_BPS BURST_BYTES LABEL: the three bounds above.
check() {
    local json=$1 limit=$2 burst=$3 label=$4 bound
    iperf_figures "$json"
    bound=$(echo "$limit / 8 * $FIG_S0 + $burst" | bc -l)
    RESULT="$label: first 100 ms $(printf '%.0f' "$FIG_B0") B (bound $(printf '%.0f' "$bound") B), first second $(pct "$FIG_FIRST" "$limit")%, steady $(pct "$FIG_STEADY" "$limit")%"
    log "$RESULT"
    echo "$RESULT" >> "$T/summary"
    (($(echo "$FIG_B0 <= $bound" | bc -l))) || fail "$label: the first 100 ms sent more than rate x 0.1 s + burst"
    (($(echo "$FIG_FIRST <= $limit * 1.10" | bc -l))) || fail "$label: first second above 110% of the limit"
    (($(echo "$FIG_STEADY <= $limit * (100 + $TOL) / 100" | bc -l))) ||
        fail "$label: steady state more than $TOL% above the limit"
    # Below the band: the shaper let everything through that came, so the
    # sender (a TCG vCPU at 1G) fell short: say so, and let the caller run
    # it once more.
    (($(echo "$FIG_STEADY >= $limit * (100 - $TOL) / 100" | bc -l))) || {
        log "$label: steady state more than $TOL% below the limit"
        return 3
    }
}

# pod_run MASTER_NO MODE NAME RUNTIME_BW ARGS_TIER LIMIT BURST: makes a pod
# on m<no> with the chain, checks podnetd registered the limit, sends, checks
# the rates, deletes it.
pod_run() {
    local m=$1 mode=$2 name=$3 rc=$4 tier=$5 limit=$6 burst=$7
    local id="rate$m$name" ns="pod$m$name" main podnet prev ip got
    netns_new "$ns"
    main=$(jq -nc --arg dir "$T/ipam" --arg kind "$KIND" --arg mode "$mode" --arg master "m$m" --arg sub "10.3$m.0.0/24" \
        '{cniVersion:"1.0.0", name:"pods", type:$kind, master:$master, mode:$mode,
          ipam:{type:"host-local", ranges:[[{subnet:$sub, rangeStart:"10.3\($master[1:]).0.10", rangeEnd:"10.3\($master[1:]).0.99"}]], dataDir:$dir}}')
    cni() { cni_call "$1" "$2" "$3" "$id" "$ns"; }
    prev=$(cni ADD "/usr/lib/cni/$KIND" "$main")
    podnet=$(jq -nc --arg sock "$SOCK" --arg master "m$m" --argjson prev "$prev" --argjson rc "$rc" --arg tier "$tier" \
        '{cniVersion:"1.0.0", name:"pods", type:"podnet-cni", socket:$sock, master:$master,
          capabilities:{bandwidth:true}, prevResult:$prev}
         + (if $rc == {} then {} else {runtimeConfig:{bandwidth:$rc}} end)
         + (if $tier == "" then {} else {args:{cni:{tier:$tier}}} end)')
    cni ADD "$CNI" "$podnet" > /dev/null
    ip=$(jq -r '.ips[0].address | split("/")[0]' <<< "$prev")
    got=$(api "/v1/endpoints/$id/eth0" | jq -r '.limits.egress')
    assert_eq "$limit" "$got" "m$m $name: registered egress limit"
    # l3/l3s children answer no ARP and send none: "the network" has a
    # static route to the pod (here a neighbour entry), as routers do.
    if [[ $KIND == ipvlan && $mode != l2 ]]; then
        ip -n peer neigh replace "$ip" lladdr "$(ip -n node -j link show "m$m" | jq -r '.[0].address')" dev "p$m"
        ip -n node neigh replace "10.3$m.0.1" lladdr "$(ip -n peer -j link show "p$m" | jq -r '.[0].address')" dev "m$m"
    fi
    local json try rc
    for try in 1 2; do
        json=$(ip netns exec "$ns" iperf3 -c "10.3$m.0.1" -t "$SECS" -Z -J --get-server-output) ||
            fail "m$m $name: iperf3 failed: $json"
        rc=0
        check "$json" "$limit" "$burst" "$KIND $mode $name" || rc=$?
        ((rc == 3 && try == 1)) || break
        echo "(once more: below the band)" >> "$T/summary"
    done
    ((rc == 0)) || { tail -20 "$T/podnetd.log"; fail "$KIND $mode $name: steady state below the limit twice"; }
    cni DEL "$CNI" "$podnet" > /dev/null
    cni DEL "/usr/lib/cni/$KIND" "$main" > /dev/null
    ip netns del "$ns"
}

for i in "${!MODES[@]}"; do
    m=$((i + 1))
    mode=${MODES[i]}
    log "=== $KIND $mode on m$m"
    # kubelet's annotation: the rate, and its default burst (MaxInt32 bits),
    # which podnet leaves to the tier.
    pod_run "$m" "$mode" 10M '{"egressRate":10000000,"egressBurst":2147483647}' "" 10000000 "$STANDARD_BURST"
    pod_run "$m" "$mode" 100M '{}' "" 100000000 "$STANDARD_BURST"
    # 1G: not for ipvlan l3/l3s by default. Under TCG the VM sends 2 Gbit/s
    # unshaped at best, and less through l3/l3s's routing in the node
    # namespace: there a 1G run measures the vCPU more than the shaper
    # (it passes on a quiet machine: RATE_ONE_G_MODES="l2 l3 l3s").
    [[ " ${RATE_ONE_G_MODES:-l2 bridge private vepa} " != *" $mode "* ]] ||
        pod_run "$m" "$mode" 1G '{}' gold 1000000000 "$GOLD_BURST"
done
log "summary:"
cat "$T/summary"
log "all good"
