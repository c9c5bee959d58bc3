#!/usr/bin/env bash
# bench/shaping, part 1: achieved/limit at 10M, 100M and 1G, first second
# and steady state (bytes on the wire), for podnet's EDT on ipvlan and
# macvlan pods and for Debian's bandwidth plugin on ptp pods, each pod
# asking through kubelet's bandwidth capability with kubelet's default burst
# (MaxInt32 bits). BENCH_RATES="100000000" limits it to some rates.
# vm: timeout=1200
source "$PODNET_ROOT/tests/vm/lib.sh"
source "$PODNET_ROOT/tests/vm/measure.sh"
source "$PODNET_ROOT/bench/vm/setup.sh"

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

bench_table_end
