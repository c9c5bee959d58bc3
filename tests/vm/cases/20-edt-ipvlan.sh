#!/usr/bin/env bash
# EDT egress shaping of ipvlan (l2) pods on a real kernel with fq: an
# iperf3 pod limited at 100M and 10M gets its rate (bytes on the wire, within
# EDT_TOL %) from the first second on (at most 110% there); a pod without an
# entry is not limited; upgrading the program during a run keeps the rate;
# both attachments (TCX and clsact); turning shaping off restores the root
# qdisc the master had (the kernel's default, or a configured fq_codel).
# vm: timeout=420
source "$(dirname "$0")/../lib.sh"

need_module ipvlan sch_fq sch_fq_codel veth
need_cmd jq iperf3 tc
DEMO=$(podnet_bin examples/edt-demo)
TOL=${EDT_TOL:-3}     # steady state: within ±TOL % of the limit
FIRST_MAX=110         # first second: at most this % of the limit
# At MTU 1500 a full TCP segment (timestamps on) carries 1448 payload bytes
# in a 1514-byte frame: the limit counts frames, iperf3 counts payload.
WIRE_NUM=1514
WIRE_DEN=1448

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
PIN=/sys/fs/bpf/podnet-$PODNET_CASE
STATE=$PODNET_CASE_TMP/state
cleanup_add rm -rf "$PIN"
demo() { "$DEMO" --netns node --pin-dir "$PIN" --state-dir "$STATE" "$@"; }

# node: the master m0; peer: "the network" behind it, running iperf3 -s;
# pod1, pod2: ipvlan l2 children of m0 as the ipvlan CNI plugin makes them.
netns_new node
netns_new peer
ip -n node link add m0 type veth peer name p0
ip -n node link set p0 netns peer
ip -n node link set m0 up
ip -n peer link set p0 up
ip -n peer addr add 10.20.0.1/24 dev p0
for i in 1 2; do
    netns_new "pod$i"
    ip -n node link add "ipv$i" link m0 type ipvlan mode l2
    ip -n node link set "ipv$i" netns "pod$i"
    ip -n "pod$i" link set "ipv$i" name eth0
    ip -n "pod$i" addr add "10.20.0.1$i/24" dev eth0
    ip -n "pod$i" link set eth0 up
done
must ip netns exec pod1 ping -c 1 -W 5 10.20.0.1

ip netns exec peer iperf3 -s -J -D -I "$PODNET_CASE_TMP/iperf3.pid" --logfile "$PODNET_CASE_TMP/iperf3-server.log"
cleanup_add pkill -F "$PODNET_CASE_TMP/iperf3.pid"
wait_until 20 bash -c "ip netns exec peer ss -ltn | grep -q ':5201 '"

# iperf3 POD SECONDS -> JSON on stdout (the server's per-second intervals
# included: what arrived, not what the sender queued).
iperf() {
    ip netns exec "$1" iperf3 -c 10.20.0.1 -t "$2" -J --get-server-output
}
# Wire bit/s from iperf3 goodput.
wire() { echo "$1 * $WIRE_NUM / $WIRE_DEN" | bc -l; }
pct() { printf '%.1f' "$(echo "100 * $1 / $2" | bc -l)"; }
within() { # VALUE LIMIT TOL%
    (($(echo "v = $1; l = $2; t = $3; (v >= l * (100 - t) / 100) && (v <= l * (100 + t) / 100)" | bc -l)))
}

# check_limited POD LIMIT_BPS SECONDS LABEL [RUN [SWAP]]: runs iperf3 (or
# the function RUN, which prints iperf3's JSON) and asserts the first second
# and the steady state, and every second within ±2 x TOL %. SWAP "A-B": the
# seconds (counted from 1) in which a new program was loaded and swapped in.
# There only the upper bound holds: loading a program (verifying it and
# compiling it to x86) takes the guest's vCPUs for a while under TCG, and
# the sender with them, so such a second may fall short; what the swap
# itself could do wrong shows as a burst above the limit (a moment
# unshaped, or a clock reset) or as retransmits (packets lost), and both
# are failures there too.
#
# Above the limit is always a failure. Below it is the shaper's fault only
# if the path still carries BLAME_MARGIN x the limit (pod2, no entry,
# measured at once): then the run is made once more, and short twice
# fails. A slower path (a busy machine starving TCG's vCPUs) makes it a
# limit not tested, listed by the report, as the rate cases do.
BLAME_MARGIN=${RATE_BLAME_MARGIN:-2}
check_limited() {
    local pod=$1 limit=$2 secs=$3 label=$4 run=${5:-} swap=${6:-} attempt short path
    for attempt in 1 2; do
        short=$(limited_once "$@") || exit 1
        [[ -n $short ]] || return 0
        path=$(wire "$(jq -r '.end.sum_received.bits_per_second' <<< "$(iperf pod2 3)")")
        log "$label: $short; the path (pod2, no entry) carries $(pct "$path" "$limit")% of the limit"
        if (($(echo "$path < $limit * $BLAME_MARGIN" | bc -l))); then
            untested "$label: $short while the path carried $(pct "$path" "$limit")% of the limit, under $BLAME_MARGIN x: TCG's speed, not the shaper's"
            return 0
        fi
        ((attempt == 1)) && log "$label: once more"
    done
    fail "$label: $short twice while the path carried $BLAME_MARGIN x the limit"
}

# limited_once ARGS (as check_limited): one run. Fails the case on what is
# always wrong (above the limit, retransmits around a swap); prints why the
# run fell short of the limit, or nothing.
limited_once() {
    local pod=$1 limit=$2 secs=$3 label=$4 run=${5:-} swap=${6:-} json first steady all i n retrans
    if [[ -n $run ]]; then json=$($run) || exit 1; else json=$(iperf "$pod" "$secs"); fi
    # The receiver's whole seconds (iperf3 ends with a short interval that
    # holds the tail of the queue: not a rate).
    mapfile -t ivals < <(jq -r '.server_output_json.intervals[].sum | select(.seconds > 0.9) | .bits_per_second' <<< "$json")
    n=${#ivals[@]}
    ((n >= 3)) || fail "$label: only $n whole-second server intervals"
    first=$(wire "${ivals[0]}")
    steady=0
    for ((i = 1; i < n; i++)); do
        steady=$(echo "$steady + ${ivals[i]}" | bc -l)
    done
    steady=$(wire "$(echo "$steady / ($n - 1)" | bc -l)")
    all=$(wire "$(jq -r '.end.sum_received.bits_per_second' <<< "$json")")
    retrans=$(jq -r '.end.sum_sent.retransmits' <<< "$json")
    log "$label: limit $limit bit/s; wire rate: first second $(pct "$first" "$limit")%," \
        "steady $(pct "$steady" "$limit")%, whole run $(pct "$all" "$limit")%;" \
        "per second (wire %): $(for v in "${ivals[@]}"; do printf '%s ' "$(pct "$(wire "$v")" "$limit")"; done)" \
        "retransmits $retrans" >&2
    (($(echo "$first <= $limit * $FIRST_MAX / 100" | bc -l))) ||
        fail "$label: first second $(pct "$first" "$limit")% of the limit (max $FIRST_MAX%)"
    [[ -z $swap || $retrans == 0 ]] || fail "$label: $retrans retransmits: packets were lost around the swap"
    (($(echo "$steady <= $limit * (100 + $TOL) / 100" | bc -l))) ||
        fail "$label: steady state $(pct "$steady" "$limit")% of the limit (at most +$TOL%)"
    for ((i = 1; i < n; i++)); do
        (($(echo "$(wire "${ivals[i]}") <= $limit * (100 + TOL * 2) / 100" | bc -l))) ||
            fail "$label: second $((i + 1)) at $(pct "$(wire "${ivals[i]}")" "$limit")% of the limit (at most +$((TOL * 2))%)"
    done
    if ! within "$steady" "$limit" "$TOL"; then
        echo "steady state $(pct "$steady" "$limit")% of the limit (below -$TOL%)"
        return 0
    fi
    for ((i = 1; i < n; i++)); do
        if [[ -n $swap ]] && ((i + 1 >= ${swap%-*} && i + 1 <= ${swap#*-})); then
            continue
        fi
        if ! within "$(wire "${ivals[i]}")" "$limit" "$((TOL * 2))"; then
            echo "second $((i + 1)) at $(pct "$(wire "${ivals[i]}")" "$limit")% of the limit (below -$((TOL * 2))%)"
            return 0
        fi
    done
}

root_qdisc() { tc -n node -j qdisc show dev m0 | jq -r '.[] | select(.root == true) | "\(.kind) \(.handle)"'; }

# ---- unshaped baseline -----------------------------------------------------
json=$(iperf pod2 3)
free=$(wire "$(jq -r '.end.sum_received.bits_per_second' <<< "$json")")
log "unshaped pod2: $(printf '%.0f' "$free") bit/s on the wire"

# ---- TCX ----------------------------------------------------------------------
log "=== TCX attachment, master with the kernel's default root qdisc"
assert_eq "noqueue 0:" "$(root_qdisc)" "root qdisc before"
out=$(demo attach m0 --mode tcx)
log "attach: $out"
assert_eq tcx "$(jq -r .mode <<< "$out")" "mode"
assert_eq false "$(jq -r .replaced <<< "$out")" "first attach creates"
status=$(demo status m0)
log "status: $status"
assert_eq true "$(jq -r .fq <<< "$status")" "fq at the root"
[[ -e $PIN/podnet_edt_v1 ]] || fail "map not pinned at $PIN/podnet_edt_v1"
prog1=$(jq -r .tcx_program <<< "$status")

must demo set 10.20.0.11 100M
check_limited pod1 100000000 5 "tcx 100M"
must demo set 10.20.0.11 10M
check_limited pod1 10000000 5 "tcx 10M"

# Fail open: pod2 has no entry and keeps (nearly) the unshaped rate.
json=$(iperf pod2 3)
other=$(wire "$(jq -r '.end.sum_received.bits_per_second' <<< "$json")")
log "pod2 (no entry) while shaping: $(printf '%.0f' "$other") bit/s ($(pct "$other" "$free")% of unshaped)"
(($(echo "$other > 100000000 * 2" | bc -l))) || fail "pod2 without an entry was limited: $other bit/s"
stats=$(demo stats)
log "stats: $stats"
assert_eq 10.20.0.11 "$(jq -r '[.[].ip] | join(",")' <<< "$stats")" "only pod1 has an entry"
(($(jq -r '.[0].bytes' <<< "$stats") > 0)) || fail "no bytes counted for pod1"

# Upgrade during a run: a new process loads the program again and swaps it
# into the pinned link; the link stays, the rate holds (see check_limited
# for the seconds of the swap), and no packet is lost.
# upgraded_run MODE: an 8 s run of pod1 during which, at 3 s, a new process
# loads the program again and swaps it in; prints iperf3's JSON.
upgraded_run() {
    local out iperf_pid
    ip netns exec pod1 iperf3 -c 10.20.0.1 -t 8 -J --get-server-output > "$PODNET_CASE_TMP/up.json" &
    iperf_pid=$!
    sleep 3
    out=$(demo attach m0 --mode "$1")
    log "upgrade: $out" >&2
    [[ $(jq -r .replaced <<< "$out") == true ]] || fail "re-attach did not replace in place: $out"
    wait "$iperf_pid" || fail "iperf3 failed during the upgrade"
    cat "$PODNET_CASE_TMP/up.json"
}
tcx_upgrade() { upgraded_run tcx; }
clsact_upgrade() { upgraded_run clsact; }

must demo set 10.20.0.11 100M
check_limited pod1 100000000 8 "tcx 100M, upgraded at 3 s" tcx_upgrade 3-5
prog2=$(jq -r .tcx_program <<< "$(demo status m0)")
assert_ne "$prog1" "$prog2" "program id after the upgrade"

must demo detach m0
assert_eq "noqueue 0:" "$(root_qdisc)" "root qdisc restored"
[[ ! -e $PIN/tcx-egress-if$(ip -n node -j link show m0 | jq -r '.[0].ifindex') ]] || fail "TCX link pin left behind"
json=$(iperf pod1 3)
after=$(wire "$(jq -r '.end.sum_received.bits_per_second' <<< "$json")")
log "pod1 after detach: $(printf '%.0f' "$after") bit/s"
(($(echo "$after > 100000000 * 2" | bc -l))) || fail "still limited after detach: $after bit/s"

# ---- clsact -----------------------------------------------------------------
log "=== clsact attachment, master with a configured fq_codel root"
tc -n node qdisc replace dev m0 root handle 5: fq_codel limit 1234 flows 512 quantum 1600 noecn
# fq_codel keeps times in 1024 ns units and dumps them rounded down to µs,
# so its target/interval come back 1 µs lower from any dump-and-restore;
# everything else must come back as it was.
root_conf() {
    tc -n node -j qdisc show dev m0 |
        jq -c '.[] | select(.root == true) | {kind, handle, options: (.options | del(.target, .interval))}'
}
before=$(root_conf)
log "configured root: $before"
out=$(demo attach m0 --mode clsact)
log "attach: $out"
assert_eq clsact "$(jq -r .mode <<< "$out")" "mode"
assert_eq "fq_codel 5:0" "$(jq -r .previous_root <<< "$out")" "previous root recorded"
assert_eq true "$(jq -r .clsact_filter <<< "$(demo status m0)")" "clsact filter"
must tc -n node filter show dev m0 egress

check_limited pod1 100000000 5 "clsact 100M"
check_limited pod1 100000000 8 "clsact 100M, upgraded at 3 s" clsact_upgrade 3-5
assert_eq 1 "$(tc -n node -j filter show dev m0 egress | jq '[.[] | select(.options.handle != null)] | length')" "one filter after the upgrade"

must demo detach m0
after=$(root_conf)
assert_eq "$before" "$after" "configured root qdisc restored exactly"
assert_eq "" "$(tc -n node -j qdisc show dev m0 | jq -r '.[] | select(.kind == "clsact") | .kind')" "clsact removed (podnet added it)"

must demo remove 10.20.0.11
assert_eq "[]" "$(demo stats | jq -c .)" "no entries left"
log "ok"
