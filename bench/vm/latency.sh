#!/usr/bin/env bash
# bench/latency (VM part): queueing delay behind a shaped pod's own bulk
# traffic. Each row is a shaper at a 100M egress limit; a pod A sends bulk
# TCP (iperf3, ECN on in its namespace: net.ipv4.tcp_ecn=1) with 1 flow,
# then with 128 connections; meanwhile A and another pod B under the same
# shaper each ping the network every 10 ms. Printed per row: ping RTT
# p50/p99 from A (its probes share its queue) and from B, pings lost, and
# A's bulk rate on the wire / the limit (steady state, from 1 s).
#   podnet EDT (marking)   the node's defaults: mark at 1 ms, horizon 25 ms
#   podnet EDT (2s, none)  Cilium's setting: horizon 2 s, no marking
#   bandwidth plugin       Debian's bandwidth plugin on ptp (veth) pods
#                          (tbf, limit = rate x 25 ms + burst), burst 1 Mbit
# Ingress rows: podnet does not shape ingress yet (issue 10, part 2).
# vm: timeout=1500
source "$PODNET_ROOT/tests/vm/lib.sh"
source "$PODNET_ROOT/tests/vm/measure.sh"
source "$PODNET_ROOT/bench/vm/setup.sh"

need_cmd ping
RATE=${BENCH_LAT_RATE:-100000000}
SECS=${BENCH_LAT_SECS:-12}
PINGS=${BENCH_LAT_PINGS:-700}
FLOWS=${BENCH_LAT_FLOWS:-1 128}
ROWS=${BENCH_LAT_ROWS:-marking cilium bandwidth}
# The bandwidth plugin's burst: kubelet's (MaxInt32 bits, 256 MiB) lets a
# 12 s run through unshaped at 100M, so the plugin gets 1 Mbit, as podnet's
# tiers default to a 64 KiB packet.
PLUGIN_BURST=${BENCH_LAT_PLUGIN_BURST:-1000000}
gen_of() { curl -s --unix-socket "$SOCK" http://x/v1/status | jq .generation; }
gen=$(gen_of)
cat > "$T/cfg/20-latency.toml" <<TOML
[tiers.marking]
egress = "$RATE"
[tiers.h100]
egress = "$RATE"
horizon = "100ms"
[tiers.h250]
egress = "$RATE"
horizon = "250ms"
[tiers.h250m2]
egress = "$RATE"
horizon = "250ms"
ce_threshold = "2ms"
[tiers.h250m5]
egress = "$RATE"
horizon = "250ms"
ce_threshold = "5ms"
[tiers.cilium]
egress = "$RATE"
horizon = "2s"
ce_threshold = "off"
TOML
wait_until 60 bash -c "[[ \$(curl -s --unix-socket '$SOCK' http://x/v1/status | jq '.generation > $gen and .converged') == true ]]"

# shaped_pod WHERE TIER ID NS: a pod on WHERE shaped at RATE (by TIER for
# podnet, by kubelet's annotation for the bandwidth plugin); its ECN on.
shaped_pod() {
    local where=$1 tier=$2 prev conf
    prev=$(pod_add "$where" "$3" "$4")
    if [[ $where == ptp ]]; then
        conf=$(shaper_conf ptp "$prev" "$RATE" | jq -c --argjson b "$PLUGIN_BURST" '.runtimeConfig.bandwidth.egressBurst = $b')
    else
        conf=$(shaper_conf "$where" "$prev" "" | jq -c --arg t "$tier" '. + {args:{cni:{tier:$t}}}')
    fi
    echo "$conf" > "$T/conf-$3"
    cni_call ADD "$(shaper_bin "$where")" "$conf" "$3" "$4" > /dev/null
    ip netns exec "$4" sysctl -qw net.ipv4.tcp_ecn=1
}
unshaped_pod() { # ID NS
    cni_call DEL "$(shaper_bin "$WHERE")" "$(cat "$T/conf-$1")" "$1" "$2" > /dev/null || true
    pod_del "$1" "$2"
}
# rtts FILE -> "p50 p99 lost" in ms from ping's output
rtts() {
    awk -v n="$PINGS" '/time=/ { sub(/.*time=/, ""); print $1 + 0 }' "$1" | sort -n |
        awk -v n="$PINGS" '{ v[NR] = $1 } END {
            if (NR == 0) { print "- - " n; exit }
            p50 = v[int(NR * 0.50 + 0.5) > 0 ? int(NR * 0.50 + 0.5) : 1]
            i = int(NR * 0.99 + 0.5); if (i < 1) i = 1; if (i > NR) i = NR
            printf "%.2f %.2f %d\n", p50, v[i], n - NR }'
}

{
    echo "latency at a ${RATE} bit/s egress limit: ping RTT (ms) every 10 ms from the bulk pod A and from pod B under the same shaper"
    printf '%-24s %6s %9s %9s %9s %9s %6s %8s %7s\n' shaper flows "A p50" "A p99" "B p50" "B p99" lost "bulk%" marks
} >> "$TABLE"
for row in $ROWS; do
    case $row in
        marking) WHERE=mi TIER=marking label="podnet EDT (marking)" ;;
        h*) WHERE=mi TIER=$row label="podnet EDT ($row)" ;;
        cilium) WHERE=mi TIER=cilium label="podnet EDT (2s, none)" ;;
        bandwidth) WHERE=ptp TIER= label="bandwidth plugin (veth)" ;;
    esac
    dst=$(peer_of "$WHERE")
    [[ $WHERE == ptp ]] && dst=10.50.0.1
    for flows in $FLOWS; do
        a=lat$RANDOM$RANDOM b=lat$RANDOM$RANDOM
        shaped_pod "$WHERE" "$TIER" "$a" "b$a"
        shaped_pod "$WHERE" "$TIER" "$b" "b$b"
        ip netns exec "b$a" iperf3 -c "$dst" -t "$SECS" -P "$flows" -Z -J --get-server-output > "$T/bulk.json" &
        bulk=$!
        sleep 3
        ip netns exec "b$a" ping -n -i 0.01 -c "$PINGS" "$dst" > "$T/ping-a" 2>&1 &
        pa=$!
        ip netns exec "b$b" ping -n -i 0.01 -c "$PINGS" "$dst" > "$T/ping-b" 2>&1 &
        pb=$!
        wait "$pa" "$pb" || true
        wait "$bulk" || fail "iperf3 from $WHERE: $(tail -5 "$T/bulk.json")"
        read -r a50 a99 alost <<< "$(rtts "$T/ping-a")"
        read -r b50 b99 blost <<< "$(rtts "$T/ping-b")"
        iperf_figures "$(cat "$T/bulk.json")"
        marks=-
        if [[ $WHERE != ptp ]]; then
            marks=$(curl -s --unix-socket "$SOCK" http://x/v1/endpoints | jq --arg id "$a" '[.[] | select(.container_id == $id) | .traffic[]? | select(.direction == "egress") | .marks] | add // "-"')
        fi
        line=$(printf '%-24s %6s %9s %9s %9s %9s %6s %7s%% %7s' "$label" "$flows" "$a50" "$a99" "$b50" "$b99" "$((alost + blost))" "$(pct "$FIG_STEADY" "$RATE")" "$marks")
        log "$line"
        echo "$line" >> "$TABLE"
        unshaped_pod "$a" "b$a"
        unshaped_pod "$b" "b$b"
    done
done
bench_table_end
