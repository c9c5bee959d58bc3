#!/usr/bin/env bash
# vm: timeout=1500
# bench/latency (VM part): queueing delay behind a shaped pod's own bulk
# traffic. Each row is a shaper at a 100M egress limit; a pod A sends bulk
# TCP (iperf3, ECN on in its namespace: net.ipv4.tcp_ecn=1) with 1 flow,
# then with 128 connections; meanwhile A and another pod B under the same
# shaper each ping the network every 10 ms. Printed per row: ping RTT
# p50/p99 from A (its probes share its queue) and from B, pings lost, and
# A's bulk rate on the wire / the limit (steady state, from 1 s).
#   podnet EDT (marking)   the node's defaults: mark at 5 ms, horizon 250 ms
#   podnet EDT (2s, none)  Cilium's setting: horizon 2 s, no marking
#   podnet HTB             [shaping] backend = "htb" (podnet switches the
#                          master from EDT to HTB for these rows): a class
#                          per pod address, bfifo bounded by the horizon
#   bandwidth plugin       Debian's bandwidth plugin on ptp (veth) pods
#                          (tbf, limit = rate x 25 ms + burst), burst 1 Mbit
# "C p99" is a third pod, on a master podnet does not shape, pinging at the
# same time: what the machine itself adds under that load (under TCG, the
# per-packet cost of 128 flows reaches every path). "cpu%" is how busy the
# guest's vCPUs were while the probes ran.
# Ingress rows (BENCH_LAT_DIRS, default "egress ingress"): the same at a
# 100M ingress limit, the bulk sent to A by the network (iperf3 -R: A's
# client receives, asks for ECN, and the network's sender then sends ECT),
# the pings' replies queued behind it: podnet through its ifb (EDT, or HTB
# for the HTB rows), the bandwidth plugin with its ingress TBF on the
# veth.
source "$PODNET_ROOT/tests/vm/lib.sh"
source "$PODNET_ROOT/tests/vm/measure.sh"
source "$PODNET_ROOT/bench/vm/setup.sh"

need_cmd ping
RATE=${BENCH_LAT_RATE:-100000000}
SECS=${BENCH_LAT_SECS:-12}
PINGS=${BENCH_LAT_PINGS:-700}
FLOWS=${BENCH_LAT_FLOWS:-1 128}
ROWS=${BENCH_LAT_ROWS:-marking cilium htb bandwidth}
DIRS=${BENCH_LAT_DIRS:-egress ingress}
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
[tiers.marking_in]
ingress = "$RATE"
[tiers.cilium_in]
ingress = "$RATE"
horizon = "2s"
ce_threshold = "off"
TOML
wait_until 60 bash -c "[[ \$(curl -s --unix-socket '$SOCK' http://x/v1/status | jq '.generation > $gen and .converged') == true ]]"

# shaped_pod WHERE TIER ID NS: a pod on WHERE shaped at RATE in $DIR (by
# TIER for podnet, by kubelet's annotation for the bandwidth plugin); its
# ECN on.
shaped_pod() {
    local where=$1 tier=$2 prev conf out
    prev=$(pod_add "$where" "$3" "$4")
    if [[ $where == ptp ]]; then
        conf=$(shaper_conf ptp "$prev" "$RATE" | jq -c --argjson b "$PLUGIN_BURST" --arg d "$DIR" '
            if $d == "ingress" then .runtimeConfig.bandwidth = {ingressRate: .runtimeConfig.bandwidth.egressRate, ingressBurst: $b}
            else .runtimeConfig.bandwidth.egressBurst = $b end')
    else
        conf=$(shaper_conf "$where" "$prev" "" | jq -c --arg t "$tier" '. + {args:{cni:{tier:$t}}}')
    fi
    echo "$conf" > "$T/conf-$3"
    out=$(cni_call ADD "$(shaper_bin "$where")" "$conf" "$3" "$4") ||
        fail "ADD of $(shaper_bin "$where") for a $where pod: $out; podnetd: $(tail -20 "$T/podnetd.log")"
    ip netns exec "$4" sysctl -qw net.ipv4.tcp_ecn=1
}
unshaped_pod() { # ID NS
    cni_call DEL "$(shaper_bin "$WHERE")" "$(cat "$T/conf-$1")" "$1" "$2" > /dev/null || true
    pod_del "$1" "$2"
}
# cpu_now -> "busy total" jiffies of all CPUs
cpu_now() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
# backend_of DEV -> edt | htb, as podnetd's status says
backend_of() { curl -s --unix-socket "$SOCK" http://x/v1/status | jq -r --arg d "$1" '.shaping[] | select(.device == $d) | .backend'; }
# set_backend edt|htb: the node file's [shaping] backend, applied by podnetd
set_backend() {
    if [[ $1 == htb ]]; then
        printf '[shaping]\nbackend = "htb"\n' > "$T/cfg/30-backend.toml"
    else
        rm -f "$T/cfg/30-backend.toml"
    fi
    wait_until 60 bash -c "[[ \$(curl -s --unix-socket '$SOCK' http://x/v1/status | jq -r '.converged and ([.shaping[] | select(.device == \"mi\") | .backend] == [\"$1\"])') == true ]]" ||
        fail "podnetd did not switch mi to $1: $(curl -s --unix-socket "$SOCK" http://x/v1/status)"
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

# C: an unshaped ipvlan pod on ui, for the machine's own floor.
C_NS=blatc
pod_add ui latc "$C_NS" > /dev/null
cleanup_add pod_del latc "$C_NS"
for DIR in $DIRS; do
{
    echo "latency at a ${RATE} bit/s $DIR limit: ping RTT (ms) every 10 ms from the bulk pod A and from pod B under the same shaper"
    printf '%-24s %6s %9s %9s %9s %9s %9s %6s %8s %7s %5s\n' shaper flows "A p50" "A p99" "B p50" "B p99" "C p99" lost "bulk%" marks cpu%
} >> "$TABLE"
# The tier of a row in this direction; the receiver's intervals.
sfx=
iperf_dir=()
FIG_FROM=
if [[ $DIR == ingress ]]; then sfx=_in iperf_dir=(-R -i 0.1) FIG_FROM=.intervals; fi
for row in $ROWS; do
    case $row in
        marking) WHERE=mi TIER=marking$sfx label="podnet EDT (marking)" ;;
        htb) WHERE=mi TIER=marking$sfx label="podnet HTB" ;;
        h*) WHERE=mi TIER=$row label="podnet EDT ($row)" ;;
        cilium) WHERE=mi TIER=cilium$sfx label="podnet EDT (2s, none)" ;;
        bandwidth) WHERE=ptp TIER= label="bandwidth plugin (veth)" ;;
    esac
    if [[ $WHERE == mi ]]; then
        want=edt
        [[ $row == htb ]] && want=htb
        [[ $(backend_of mi) == "$want" ]] || set_backend "$want"
        log "mi shaped by $(backend_of mi)"
    fi
    dst=$(peer_of "$WHERE")
    [[ $WHERE == ptp ]] && dst=10.50.0.1
    for flows in $FLOWS; do
        a=lat$RANDOM$RANDOM b=lat$RANDOM$RANDOM
        shaped_pod "$WHERE" "$TIER" "$a" "b$a"
        shaped_pod "$WHERE" "$TIER" "$b" "b$b"
        ip netns exec "b$a" iperf3 -c "$dst" "${iperf_dir[@]}" -t "$SECS" -P "$flows" -Z -J --get-server-output > "$T/bulk.json" &
        bulk=$!
        sleep 3
        read -r busy0 total0 <<< "$(cpu_now)"
        ip netns exec "b$a" ping -n -i 0.01 -c "$PINGS" "$dst" > "$T/ping-a" 2>&1 &
        pa=$!
        ip netns exec "b$b" ping -n -i 0.01 -c "$PINGS" "$dst" > "$T/ping-b" 2>&1 &
        pb=$!
        ip netns exec "$C_NS" ping -n -i 0.01 -c "$PINGS" "$(peer_of ui)" > "$T/ping-c" 2>&1 &
        pc=$!
        wait "$pa" "$pb" "$pc" || true
        read -r busy1 total1 <<< "$(cpu_now)"
        cpu=$(((busy1 - busy0) * 100 / (total1 - total0)))
        wait "$bulk" || fail "iperf3 from $WHERE: $(tail -5 "$T/bulk.json")"
        read -r a50 a99 alost <<< "$(rtts "$T/ping-a")"
        read -r b50 b99 blost <<< "$(rtts "$T/ping-b")"
        read -r _ c99 _ <<< "$(rtts "$T/ping-c")"
        iperf_figures "$(cat "$T/bulk.json")"
        marks=-
        if [[ $row != htb && $WHERE != ptp ]]; then
            marks=$("$(podnet_bin examples/edt-demo)" --pin-dir "$PIN" stats |
                jq --arg d "$DIR" --slurpfile pod <(curl -s --unix-socket "$SOCK" "http://x/v1/endpoints/$a/eth0") \
                    '[.[] | select(.direction == $d) | select(.ip as $ip | $pod[0].ips | map(split("/")[0]) | index($ip)) | .marks] | add // 0')
        fi
        line=$(printf '%-24s %6s %9s %9s %9s %9s %9s %6s %7s%% %7s %5s' "$label" "$flows" "$a50" "$a99" "$b50" "$b99" "$c99" "$((alost + blost))" "$(pct "$FIG_STEADY" "$RATE")" "$marks" "$cpu")
        log "$line"
        echo "$line" >> "$TABLE"
        unshaped_pod "$a" "b$a"
        unshaped_pod "$b" "b$b"
    done
done
done
[[ $(backend_of mi) == edt ]] || set_backend edt
bench_table_end
