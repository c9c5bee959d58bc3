#!/usr/bin/env bash
# The VM side of bench/shaping: podnet's EDT shaper (podnetd + podnet-cni
# chained after Debian's ipvlan or macvlan plugin) against Debian's
# `bandwidth` plugin chained after `ptp` (veth pods; the plugin shapes pod
# egress with tbf on an ifb), every pod made as libcni makes it, in one VM:
#   1. achieved/limit at 10M, 100M and 1G, first second and steady state
#      (bytes on the wire), each pod asking through kubelet's bandwidth
#      capability with kubelet's default burst (MaxInt32 bits);
#   2. what the shaper costs: guest CPU time per byte at one offered rate
#      below the guest's ceiling (BENCH_COST_RATE, 400M), through a shaped
#      master (a pod with no entry, and a pod limited at 100G so that every
#      packet is stamped) / through an unshaped one, over ROUNDS x 3 rounds;
# Prints the table between "BENCH TABLE" markers. BENCH_RATES="100000000"
# limits part 1 to some rates.
# vm: timeout=1200
source "$PODNET_ROOT/tests/vm/lib.sh"
source "$PODNET_ROOT/tests/vm/measure.sh"

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
"$PODNETD" -c "$T/cfg" --netns node --state-dir "$T/state" --socket "$SOCK" --bpf-dir "$PIN" 2>> "$T/podnetd.log" &
cleanup_add kill $!
wait_until 60 bash -c "curl -s --unix-socket '$SOCK' http://x/v1/status | jq -e '.converged and (.shaping | length == 2)'"

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
{
    echo "1. achieved / limit, bytes on the wire (iperf3 -Z, one TCP stream, ${SECS} s, kubelet burst)"
    printf '%-8s %-34s %14s %14s\n' limit shaper "first second" "steady (1s-)"
} > "$TABLE"
for rate in ${BENCH_RATES:-10000000 100000000 1000000000}; do
    for where in mi mm ptp; do
        case $where in
            mi) label="podnet EDT, ipvlan l2 pod" ;;
            mm) label="podnet EDT, macvlan bridge pod" ;;
            ptp) label="bandwidth plugin, ptp (veth) pod" ;;
        esac
        iperf_figures "$(run_pod "$where" "$rate")"
        row=$(printf '%-8s %-34s %13s%% %13s%%' "$(printf '%sM' $((rate / 1000000)))" "$label" \
            "$(pct "$FIG_FIRST" "$rate")" "$(pct "$FIG_STEADY" "$rate")")
        log "$row"
        echo "$row" >> "$TABLE"
    done
done

# 2. What the shaper costs: guest CPU time per byte at one offered rate,
# through a shaped master (a pod without an entry, and a pod limited at
# 100G so that every packet is stamped) / through an unshaped one. TCG's
# speed drifts by tens of percent over seconds, but at an offered rate well
# below the guest's ceiling every configuration moves the same bytes, and
# the CPU time they take is what differs: busy = wall x CPUs - idle, where
# the kernel keeps idle time to the microsecond (NO_HZ) and /proc/stat
# gives it in 10 ms units. The pods stay up; each round runs all three back
# to back in a turning order, and the medians of the rounds' ratios are
# reported. A run that falls short of the offered rate is reported: its
# bytes cost CPU differently.
RUN_SECS=${BENCH_COST_SECS:-4}
OFFERED=${BENCH_COST_RATE:-400M}
declare -A pod_ns pod_dst
keep_pod() { # KEY WHERE RATE: a pod kept for the rounds below
    local id=keep$1 ns=k$1 prev conf
    prev=$(pod_add "$2" "$id" "$ns")
    conf=$(shaper_conf "$2" "$prev" "$3")
    cni_call ADD "$(shaper_bin "$2")" "$conf" "$id" "$ns" > /dev/null
    cleanup_add pod_del "$id" "$ns"
    pod_ns[$1]=$ns pod_dst[$1]=$(peer_of "$2")
}
# busy_ticks: CPU time spent not idle, all CPUs, in USER_HZ (1/100 s).
busy_ticks() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { idle = $5 + $6 } END {
        getline up < "/proc/uptime"; split(up, u, " ")
        printf "%.0f", u[1] * hz * cpus - idle }' cpus="$(nproc)" /proc/stat
}
declare -A cpu_per_gb ratio short
for kind in i m; do
    keep_pod "u$kind" "u$kind" ""
    keep_pod "s$kind" "m$kind" ""
    keep_pod "x$kind" "m$kind" 100000000000
done
for ((r = 1; r <= ROUNDS * 3; r++)); do
    for kind in i m; do
        keys=("u$kind" "s$kind" "x$kind")
        declare -A got=()
        for ((k = 0; k < 3; k++)); do
            key=${keys[(k + r) % 3]}
            t0=$(busy_ticks)
            json=$(ip netns exec "${pod_ns[$key]}" iperf3 -c "${pod_dst[$key]}" -t "$RUN_SECS" -b "$OFFERED" -Z -J)
            t1=$(busy_ticks)
            bytes=$(jq -r .end.sum_received.bytes <<< "$json")
            bps=$(jq -r .end.sum_received.bits_per_second <<< "$json")
            # CPU seconds per GB of TCP payload received.
            got[$key]=$(echo "($t1 - $t0) / $(getconf CLK_TCK) / ($bytes / 10^9)" | bc -l)
            cpu_per_gb[$key]+="${got[$key]} "
            (($(echo "$bps >= $(numfmt --from=si "$OFFERED") * 0.97" | bc -l))) || short[$key]+="$(printf '%.0f' "$(echo "$bps / 10^6" | bc -l)")M "
        done
        ratio[s$kind]+="$(echo "${got[s$kind]} / ${got[u$kind]}" | bc -l) "
        ratio[x$kind]+="$(echo "${got[x$kind]} / ${got[u$kind]}" | bc -l) "
    done
done
median() { tr ' ' '\n' <<< "$1" | grep . | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
{
    echo
    echo "2. what the shaper costs: guest CPU seconds per GB of TCP payload at $OFFERED offered, one stream"
    echo "   ($((ROUNDS * 3)) rounds of ${RUN_SECS} s runs back to back; median; ratio: median of the rounds' ratios, target <= 1.03)"
    printf '%-8s %10s %18s %18s %16s %16s\n' pod unshaped "shaped, no entry" "shaped, 100G" "ratio, no entry" "ratio, 100G"
    for kind in i m; do
        printf '%-8s %10.3f %18.3f %18.3f %16.3f %16.3f\n' "$([[ $kind == i ]] && echo ipvlan || echo macvlan)" \
            "$(median "${cpu_per_gb[u$kind]}")" "$(median "${cpu_per_gb[s$kind]}")" "$(median "${cpu_per_gb[x$kind]}")" \
            "$(median "${ratio[s$kind]}")" "$(median "${ratio[x$kind]}")"
    done
    for key in "${!short[@]}"; do
        echo "   note: $key fell short of $OFFERED in some runs: ${short[$key]}"
    done
} >> "$TABLE"
log "CPU s/GB: $(declare -p cpu_per_gb)"
log "ratios: $(declare -p ratio)"

echo "BENCH TABLE BEGIN"
cat "$TABLE"
echo "BENCH TABLE END"
