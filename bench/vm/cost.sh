#!/usr/bin/env bash
# bench/shaping, part 2: what the shaper costs, as guest CPU time per byte
# at one offered rate below the guest's ceiling, through a shaped master
# (a pod with no entry, and a pod limited at 100G so that every packet is
# stamped) / through an unshaped one.
#
# Booted with QEMU's -icount: the guest's clock counts the instructions it
# executes (2^5 ns each: a virtual CPU about as fast as TCG runs it), not the host's seconds, so the guest's CPU time
# is its instruction count and neither the host's load nor TCG's drift
# enters the figures (a plain TCG guest's speed drifts by tens of percent
# over seconds). What is left is what differs: the work a byte takes.
# vm: timeout=1800
# vm: qemu-opts=-icount shift=5,sleep=on
source "$PODNET_ROOT/tests/vm/lib.sh"
source "$PODNET_ROOT/tests/vm/measure.sh"
source "$PODNET_ROOT/bench/vm/setup.sh"

# At one offered rate well below the guest's ceiling every configuration
# moves the same bytes, and the CPU time they take is what differs: busy =
# (guest) wall x CPUs - idle, from /proc/uptime and /proc/stat (10 ms
# units). The pods stay up; each round runs all three back to back in a
# turning order, and the medians of the rounds' ratios are reported. A run
# that falls short of the offered rate is reported: its bytes cost CPU
# differently.
RUN_SECS=${BENCH_COST_SECS:-3}
# Two kinds of traffic, each from iperf3, which keeps to the rate by waking
# every 10 ms (its default of 1 ms costs a slow virtual CPU more than the
# packets do): one TCP stream, as pods send most (GSO: the shaper sees one
# packet per up to 64 KiB), and UDP datagrams in full 1514-byte frames,
# one packet each, so every packet meets fq and the program: the worst case.
declare -A PROTO=([tcp]="--pacing-timer 10000" [udp]="--pacing-timer 10000 -u -l 1472")
declare -A ROUNDS_OF=([tcp]=${BENCH_COST_ROUNDS:-9} [udp]=${BENCH_COST_UDP_ROUNDS:-5})
declare -A pod_ns pod_dst
keep_pod() { # KEY WHERE RATE: a pod kept for the rounds below
    local id=keep$1 ns=k$1 prev conf
    prev=$(pod_add "$2" "$id" "$ns")
    conf=$(shaper_conf "$2" "$prev" "$3")
    cni_call ADD "$(shaper_bin "$2")" "$conf" "$id" "$ns" > /dev/null
    cleanup_add pod_del "$id" "$ns"
    pod_ns[$1]=$ns pod_dst[$1]=$(peer_of "$2")
}
# The window each figure is taken over lies inside a transfer, a second
# after it started and a second before it ends, and everything in it is a
# bash builtin: starting iperf3 (an exec over 9p, costly under TCG) and
# reading its report would otherwise add the same CPU time to every
# configuration and pull their ratios towards 1.
(($(getconf CLK_TCK) == 100)) || fail "USER_HZ is not 100"
NCPU=$(nproc)
SERVER=$(cat "$T/iperf3.pid")
mkfifo "$T/tick"
exec {TICK}<> "$T/tick"
pause() { read -rt "$1" -u "$TICK" || true; } # a sleep with no exec
# sample DEV: BUSY (CPU time not idle, all CPUs, in 1/100 s) and RX (bytes
# "the network" received on DEV so far).
sample() {
    local cpu user nice sys idle iowait rest up line
    read -r cpu user nice sys idle iowait rest < /proc/stat
    read -r up rest < /proc/uptime
    BUSY=$((10#${up/./} * NCPU - idle - iowait))
    while read -r line; do
        [[ $line == "$1:"* ]] || continue
        read -r RX _ <<< "${line#*:}"
        return
    done < "/proc/$SERVER/net/dev"
    fail "no $1 in the network's namespace"
}
# window KEY RATE: runs UDP from pod KEY at RATE (0: as fast as it goes)
# and measures a RUN_SECS window inside the run -> W_BUSY (1/100 s of CPU)
# and W_BYTES (bytes on the wire that reached "the network").
window() {
    local key=$1 rate=$2 dev x0 b0 client w
    # The peer-side end of the pod's master: pu<kind> or pm<kind>.
    dev=p${key/[sx]/m}
    sample "$dev"
    x0=$RX
    # shellcheck disable=SC2086 # the protocol's options, split
    ip netns exec "${pod_ns[$key]}" iperf3 -c "${pod_dst[$key]}" -t $((RUN_SECS + 3)) ${PROTO[$proto]} -b "$rate" -Z > /dev/null &
    client=$!
    # Starting iperf3 takes a while under TCG: the window opens once the
    # data flows, and a second later.
    for ((w = 0; w < 600; w++)); do
        sample "$dev"
        ((RX - x0 < 1000000)) || break
        pause 0.1
    done
    ((RX - x0 >= 1000000)) || fail "no data from $key within a minute"
    pause 1
    sample "$dev"
    b0=$BUSY x0=$RX
    pause "$RUN_SECS"
    sample "$dev"
    wait "$client" || fail "iperf3 from $key failed"
    W_BUSY=$((BUSY - b0)) W_BYTES=$((RX - x0))
}
declare -A cpu_per_gb ratio short
for kind in i m; do
    keep_pod "u$kind" "u$kind" ""
    keep_pod "s$kind" "m$kind" ""
    keep_pod "x$kind" "m$kind" 100000000000
done
median() { tr ' ' '\n' <<< "$1" | grep . | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
declare -A offered_of ceiling_of
for proto in tcp udp; do
    # The offered rate: a third of what an unshaped pod gets through here
    # (under -icount that is the same from run to run), unless
    # BENCH_COST_RATE says.
    window ui 0
    ceiling_of[$proto]=$((W_BYTES * 8 / RUN_SECS))
    offered_of[$proto]=${BENCH_COST_RATE:-$((ceiling_of[$proto] / 3 / 1000000))M}
    offered=$(numfmt --from=si "${offered_of[$proto]}")
    log "$proto: an unshaped ipvlan pod gets $((ceiling_of[$proto] / 1000000)) Mbit/s through; offering ${offered_of[$proto]}"
    for ((r = 1; r <= ROUNDS_OF[$proto]; r++)); do
        for kind in i m; do
            keys=("u$kind" "s$kind" "x$kind")
            declare -A got=()
            for ((k = 0; k < 3; k++)); do
                key=${keys[(k + r) % 3]}
                window "$key" "${offered_of[$proto]}"
                # CPU seconds per GB on the wire, and the rate in the window.
                got[$key]=$(echo "$W_BUSY / 100 / ($W_BYTES / 10^9)" | bc -l)
                cpu_per_gb[$proto$key]+="${got[$key]} "
                ((W_BYTES * 8 / RUN_SECS >= offered * 97 / 100)) || short[$proto $key]+="$((W_BYTES * 8 / RUN_SECS / 1000000))M "
            done
            ratio[${proto}s$kind]+="$(echo "${got[s$kind]} / ${got[u$kind]}" | bc -l) "
            ratio[${proto}x$kind]+="$(echo "${got[x$kind]} / ${got[u$kind]}" | bc -l) "
        done
    done
done
{
    echo "2. what the shaper costs: guest CPU seconds per GB on the wire, at a third of what an unshaped pod gets through"
    echo "   (QEMU -icount: guest seconds are instructions x 32 ns); rounds of a ${RUN_SECS} s window inside each run, the three"
    echo "   back to back; median; ratio: median of the rounds' ratios to unshaped, target <= 1.03"
    printf '%-34s %9s %17s %13s %16s %12s\n' "pod, traffic" unshaped "shaped, no entry" "shaped, 100G" "ratio, no entry" "ratio, 100G"
    for proto in tcp udp; do
        for kind in i m; do
            label="$([[ $kind == i ]] && echo "ipvlan l2" || echo "macvlan bridge"), $([[ $proto == tcp ]] && echo "TCP" || echo "UDP 1514 B frames") ${offered_of[$proto]}"
            printf '%-34s %9.1f %17.1f %13.1f %16.3f %12.3f\n' "$label" \
                "$(median "${cpu_per_gb[${proto}u$kind]}")" "$(median "${cpu_per_gb[${proto}s$kind]}")" \
                "$(median "${cpu_per_gb[${proto}x$kind]}")" "$(median "${ratio[${proto}s$kind]}")" "$(median "${ratio[${proto}x$kind]}")"
        done
    done
    echo "   rounds: TCP ${ROUNDS_OF[tcp]}, UDP ${ROUNDS_OF[udp]}; unshaped pods get TCP $((ceiling_of[tcp] / 1000000))M, UDP $((ceiling_of[udp] / 1000000))M through"
    for key in "${!short[@]}"; do
        echo "   note: $key fell short of its offered rate in some runs: ${short[$key]}"
    done
} >> "$TABLE"
log "CPU s/GB: $(declare -p cpu_per_gb)"
log "ratios: $(declare -p ratio)"

bench_table_end
