# shellcheck shell=bash
# Helpers shared by the podnetd shaping cases (podnetd-shaping.sh,
# rates.sh) and the shaping benchmark (bench/vm/shaping.sh): a scratch
# podnetd layout, a CNI call made the way libcni makes it, and the figures
# of an iperf3 run. Source after lib.sh.

# podnetd_layout: T (the case's scratch dir, with cfg/ for node files and
# state/), PIN (the case's own BPF pin dir, removed at exit), SOCK, and
# `api PATH [CURL ARGS...]` to call podnetd.
podnetd_layout() {
    T=$PODNET_CASE_TMP
    mkdir -p "$T/cfg" "$T/state"
    mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
    PIN=/sys/fs/bpf/podnet-$PODNET_CASE
    cleanup_add rm -rf "$PIN"
    SOCK=$T/state/podnet.sock
}
api() { curl -s --unix-socket "$SOCK" "http://x$1" "${@:2}"; }

# cni_call COMMAND BINARY CONFIG CONTAINER_ID NETNS: runs a CNI plugin in
# the node namespace ($NODE_NS, default "node"; "." when already in it)
# with the environment kubelet's runtime gives it.
cni_call() {
    local in_node=(ip netns exec "${NODE_NS:-node}")
    [[ ${NODE_NS:-} != . ]] || in_node=()
    CNI_COMMAND=$1 CNI_CONTAINERID=$4 CNI_NETNS=/run/netns/$5 CNI_IFNAME=eth0 \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$5" \
        CNI_PATH=/usr/lib/cni "${in_node[@]}" "$2" <<< "$3"
}

# Wire bit/s or bytes from iperf3's TCP payload: at MTU 1500 a full segment
# (timestamps on) carries 1448 bytes in a 1514-byte frame, and a limit
# counts frames as tc does.
wire() { echo "$1 * 1514 / 1448" | bc -l; }
pct() { printf '%.1f' "$(echo "100 * $1 / $2" | bc -l)"; }

# iperf_figures JSON: from the receiver's 100 ms intervals (iperf3 -s -i 0.1,
# client with --get-server-output; FIG_FROM=.intervals: the client's own,
# when it receives (-R -i 0.1)) while the sender sent: the intervals that
# end after the test's duration (-t, plus 50 ms for the receiver's clock)
# are left out. They hold the drain of the queue the shaper keeps, or
# nothing: the server stops counting once the client's end of test
# reaches it, with up to the horizon's worth still queued when no TSQ
# holds the sender back (a veth pod routed by the node: one run had
# 2.26 MB, 181 ms at 100M, in the queue, and received nothing in its last
# 200 ms). Sets on the wire:
#   FIG_B0 FIG_S0   bytes in the first interval, and its length in seconds
#   FIG_FIRST       bit/s over the first second
#   FIG_STEADY      bit/s from 1 s to the end
iperf_figures() {
    local n
    # One jq for all of them: under TCG each process costs ~0.3 s.
    read -r n FIG_B0 FIG_S0 FIG_FIRST FIG_STEADY < <(jq -r ".start.test_start.duration as \$d
        | [${FIG_FROM:-.server_output_json.intervals}[].sum | {start, \"end\": .end, seconds, bytes}]
        | if \$d > 0 then map(select(.end <= \$d + 0.05)) else .[:-1] end
        | [length, (.[0].bytes // 0) * 1514 / 1448, .[0].seconds // 0,
           ([.[] | select(.end <= 1.0001) | .bytes] | add // 0) * 8 * 1514 / 1448,
           ([.[] | select(.start >= 0.9999)] | ((map(.bytes) | add // 0) * 8 * 1514 / 1448) / ((map(.seconds) | add) // 1))]
        | map(tostring) | join(\" \")" <<< "$1")
    ((${n:-0} >= 20)) || fail "too few 100 ms intervals from the receiver ($n): $(jq -c "[${FIG_FROM:-.server_output_json.intervals}[].sum.bytes]" <<< "$1")"
}
