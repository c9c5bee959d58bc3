#!/usr/bin/env bash
# bench/sriov, the VM side: QEMU's igb (7 VFs) in a TCG guest.
#   1. 0 -> 7 VFs with settings (MAC, VLAN, trust, spoofchk, max_tx_rate on
#      each), through `podnetctl apply` beside the same steps by hand
#      (sriov_numvfs, wait for the VFs' netdevs and the PF's link, one `ip
#      link set PF vf N ...` per VF and its VF driver bound again for the
#      MAC, as igb asks), in alternating rounds: median and spread of each.
#   2. a no-op `podnetctl apply` with the 7 VFs declared: its time, and
#      every link event `ip monitor` saw during it (zero writes: none).
#   3. with podnetd running: an edit of num_vfs (7 -> 6, then back to 7)
#      until every VF has its settings again (through 0 each time).
# vm: timeout=1500
# vm: qemu-opts=-device pcie-root-port,id=pn_rp1,chassis=1,slot=1 -device igb,bus=pn_rp1,netdev=pn_igb0 -netdev hubport,id=pn_igb0,hubid=7
source "$PODNET_ROOT/tests/vm/lib.sh"

need_module igb igbvf
need_cmd jq ip
PODNETCTL=$(podnet_bin podnetctl)
PODNETD=$(podnet_bin podnetd)
ROUNDS=${BENCH_ROUNDS:-5}
T=$PODNET_CASE_TMP
CFG=$T/cfg
STATE=$T/state
mkdir -p "$CFG" "$STATE"
ctl() { "$PODNETCTL" -c "$CFG" --state-dir "$STATE" --bpf-dir "$T/bpf" --direct "$@"; }

source "$PODNET_ROOT/tests/vm/igb.sh"

mac() { printf '02:00:00:00:01:%02x' "$1"; }
node_file() { # NUM_VFS
    {
        printf 'version = 1\n[sriov.%s]\nnum_vfs = %d\n' "$PF" "$1"
        printf 'vf = { trust = true, spoofchk = false, max_tx_rate = "100Mbit" }\n'
        for ((i = 0; i < $1; i++)); do
            printf '[sriov.%s.vfs.%d]\nmac = "%s"\nvlan = %d\n' "$PF" "$i" "$(mac "$i")" $((100 + i))
        done
    } > "$CFG/10-node.toml"
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
# settled N: every VF 0..N-1 has its MAC, VLAN, trust, spoofchk and rate.
settled() {
    local n=$1
    [[ $(cat "$SYS/sriov_numvfs") == "$n" ]] || return 1
    ip -j link show "$PF" | jq -e --argjson n "$n" '
        [.[0].vfinfo_list[] | select(.vf < $n)
         | select(.address == ("02:00:00:00:01:" + ((.vf | tostring) | if length == 1 then "0" + . else . end))
                  and .vlan_list[0].vlan == (100 + .vf) and .trust == true
                  and .spoofchk == false and .rate.max_tx == 100)] | length == $n' >/dev/null
}
reset() { echo 0 > "$SYS/sriov_numvfs"; }
# The VFs' netdevs, each there.
netdevs() { for ((i = 0; i < 7; i++)); do [[ -n $(ls "$SYS/virtfn$i/net" 2>/dev/null) ]] || return 1; done; }
by_hand() { # the same steps podnet takes, as a careful shell script would
    echo 7 > "$SYS/sriov_numvfs"
    until netdevs; do sleep 0.01; done
    # igb re-initialises the PF to enable SR-IOV, and refuses a VF's rate
    # while its link is down.
    until [[ $(cat "/sys/class/net/$PF/operstate") == up ]]; do sleep 0.01; done
    for ((i = 0; i < 7; i++)); do
        ip link set "$PF" vf "$i" mac "$(mac "$i")" vlan $((100 + i)) trust on spoofchk off max_tx_rate 100
        # "Reload the VF driver to make this change effective" (igb): the
        # VF's netdev takes the MAC when igbvf binds again.
        pci=$(basename "$(readlink "$SYS/virtfn$i")")
        echo "$pci" > "$SYS/virtfn$i/driver/unbind"
        echo "$pci" > /sys/bus/pci/drivers_probe
    done
    until netdevs; do sleep 0.01; done
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
spread() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }

node_file 7
: > "$T/podnet.ms"
: > "$T/hand.ms"
for ((r = 0; r < ROUNDS; r++)); do
    # Alternate who goes first: TCG's speed drifts over seconds.
    for who in $( ((r % 2)) && echo "hand podnet" || echo "podnet hand"); do
        reset
        sleep 1
        t0=$(date +%s%N)
        if [[ $who == podnet ]]; then
            ctl apply > "$T/apply.out" || { cat "$T/apply.out"; fail "podnetctl apply failed"; }
        else
            by_hand
        fi
        ms_since "$t0" >> "$T/$who.ms"
        settled 7 || fail "$who: the VFs do not have their settings"
    done
done
p=$(median < "$T/podnet.ms")
h=$(median < "$T/hand.ms")

# A no-op apply: its time, and what `ip monitor` saw meanwhile.
ctl apply | grep -q "No changes" || fail "not converged before the no-op"
: > "$T/noop.ms"
ip monitor link > "$T/monitor.out" 2>&1 &
mon=$!
sleep 0.5
for ((r = 0; r < ROUNDS; r++)); do
    t0=$(date +%s%N)
    ctl apply > /dev/null
    ms_since "$t0" >> "$T/noop.ms"
done
sleep 0.5
kill "$mon"
events=$(grep -c . "$T/monitor.out" || true)
# The floor: starting podnetctl at all, from the guest's 9p root.
: > "$T/start.ms"
for ((r = 0; r < ROUNDS; r++)); do
    t0=$(date +%s%N)
    "$PODNETCTL" --version > /dev/null
    ms_since "$t0" >> "$T/start.ms"
done

# podnetd: a hand count change, then an edit, until every VF is set again.
SOCK=$T/podnetd.sock
"$PODNETD" -c "$CFG" --state-dir "$STATE" --socket "$SOCK" --bpf-dir "$T/bpf" 2>> "$T/podnetd.log" &
cleanup_add kill "$!"
(wait_until 60 test -S "$SOCK") || { cat "$T/podnetd.log"; fail "podnetd did not start"; }
(wait_until 60 settled 7) || { cat "$T/podnetd.log"; fail "podnetd did not converge"; }
edit() { # NUM_VFS: the edit, then the ms until every VF has its settings
    local t0
    node_file "$1"
    t0=$(date +%s%N)
    (wait_until 60 settled "$1") >&2 || { cat "$T/podnetd.log" >&2; fail "podnetd did not apply num_vfs = $1"; }
    ms_since "$t0"
}
down_ms=$(edit 6)
up_ms=$(edit 7)

{
    echo "BENCH TABLE BEGIN"
    printf '%-58s %10s %12s\n' "igb, 7 VFs, TCG guest; $ROUNDS rounds" "median ms" "spread ms"
    printf '%-58s %10s %12s\n' "0 -> 7 VFs with settings, by hand (sysfs + ip link)" "$h" "$(spread < "$T/hand.ms")"
    printf '%-58s %10s %12s\n' "0 -> 7 VFs with settings, podnetctl apply" "$p" "$(spread < "$T/podnet.ms")"
    printf '%-58s %10s\n' "podnet / by hand" "$(echo "scale=2; $p / $h" | bc)"
    printf '%-58s %10s %12s\n' "no-op podnetctl apply, 7 VFs declared" "$(median < "$T/noop.ms")" "$(spread < "$T/noop.ms")"
    printf '%-58s %10s\n' "link events during the no-op applies (ip monitor)" "$events"
    printf '%-58s %10s %12s\n' "podnetctl --version (process start, the floor)" "$(median < "$T/start.ms")" "$(spread < "$T/start.ms")"
    printf '%-58s %10s\n' "podnetd: edit num_vfs 7 -> 6 -> every VF set again" "$down_ms"
    printf '%-58s %10s\n' "podnetd: edit num_vfs 6 -> 7 -> every VF set again" "$up_ms"
    echo "BENCH TABLE END"
} | tee "$T/table"
