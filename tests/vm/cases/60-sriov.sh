#!/usr/bin/env bash
# SR-IOV on QEMU's igb (an Intel 82576 PF with 7 VFs): podnetctl makes 4
# VFs and sets each one's MAC, VLAN with priority, trust, spoofchk and
# max_tx_rate (explicit and from a tier), read back from the kernel; igb's
# refusal of link-state is reported for the VF that asks it, and the rest
# is applied; a count change goes through 0 (vf-reset in the plan, refused
# by --max-disruption hitless) and the settings come back; a count over
# the device's total is an error naming the file and line; podnetd repairs
# each setting changed by hand (the time it took is logged); a VF moved
# into a namespace (as sriov-cni does), one bound to vfio-pci and held
# open, and one a registered endpoint names are in use: a moved VF's
# settings are left to its user, and a count or driver change is refused
# without --force.
# vm: timeout=600
# vm: qemu-opts=-device intel-iommu,intremap=off -device pcie-root-port,id=pn_rp1,chassis=1,slot=1 -device igb,bus=pn_rp1,netdev=pn_igb0 -netdev hubport,id=pn_igb0,hubid=7
# An emulated IOMMU for vfio-pci (Debian's kernel has no vfio no-IOMMU
# mode); passthrough for every other device, so the other cases' virtio
# devices pay no translation.
# vm: append=intel_iommu=on iommu=pt
source "$(dirname "$0")/../lib.sh"

need_module igb igbvf
need_cmd jq ip curl /usr/bin/python3
PODNETCTL=$(podnet_bin podnetctl)
PODNETD=$(podnet_bin podnetd)
T=$PODNET_CASE_TMP
CFG=$T/cfg
STATE=$T/state
mkdir -p "$CFG" "$STATE"
ctl() { "$PODNETCTL" -c "$CFG" --state-dir "$STATE" --bpf-dir "$T/bpf" --direct "$@"; }
# run CMD...: its output (stdout and stderr) printed and kept in $out, its
# status in $rc; never fails by itself.
run() {
    set +e
    out=$("$@" 2>&1)
    rc=$?
    set -e
    printf '%s\n' "$out"
}
# ok CMD...: run, and fail unless it succeeded.
ok() { run "$@"; ((rc == 0)) || fail "exit $rc: $*"; }

source "$(dirname "$0")/../igb.sh"
assert_eq 7 "$(cat "$SYS/sriov_totalvfs")" "igb's sriov_totalvfs"
log "PF $PF ($(basename "$(readlink -f "$SYS")")), $(cat "$SYS/sriov_totalvfs") VFs at most"

# vf N FIELD: VF N's FIELD as `ip -j link show` reports it.
vf() { ip -j link show "$PF" | jq -r --argjson n "$1" ".[0].vfinfo_list[] | select(.vf == \$n) | $2"; }

node_file() { # NUM_VFS [EXTRA [PF_EXTRA]]
    cat > "$CFG/10-node.toml" <<TOML
version = 1
[tiers.gold]
egress = "200Mbit"

[sriov.$PF]
num_vfs = $1
vf = { trust = true, spoofchk = false }
${3:-}
[sriov.$PF.vfs.0]
mac = "02:00:00:00:00:10"
vlan = 100
qos = 3
[sriov.$PF.vfs.1]
max_tx_rate = "100Mbit"
mac = "02:00:00:00:00:11"
${2:-}
TOML
}

log "=== 4 VFs with their settings; igb refuses link-state for VF 3 only"
node_file 4 "[sriov.$PF.vfs.2]
tier = \"gold\"
[sriov.$PF.vfs.3]
link_state = \"enable\"
spoofchk = true"
ok ctl apply --dry-run
assert_contains "$out" "num_vfs 0 -> 4"
assert_contains "$out" "VF 0: mac 02:00:00:00:00:10, vlan 100 qos 3, spoofchk off, trust on"
assert_eq 0 "$(cat "$SYS/sriov_numvfs")" "VFs after a dry run"
run ctl apply
assert_eq 1 "$rc" "apply's status with a refused setting"
assert_contains "$out" "VF 3 link_state enable: the igb driver refuses it"
assert_eq 4 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs"
for i in 0 1 2 3; do
    [[ -e $SYS/virtfn$i/net ]] && ls "$SYS/virtfn$i/net" >/dev/null || fail "VF $i has no netdev"
done
ip link show "$PF"
assert_eq 02:00:00:00:00:10 "$(vf 0 .address)" "VF 0 mac"
assert_eq 100 "$(vf 0 '.vlan_list[0].vlan')" "VF 0 vlan"
assert_eq 3 "$(vf 0 '.vlan_list[0].qos')" "VF 0 qos"
assert_eq 02:00:00:00:00:11 "$(vf 1 .address)" "VF 1 mac"
assert_eq 100 "$(vf 1 .rate.max_tx)" "VF 1 max_tx_rate (Mbit/s)"
assert_eq 200 "$(vf 2 .rate.max_tx)" "VF 2 max_tx_rate from tier gold"
for i in 0 1 2; do
    assert_eq true "$(vf "$i" .trust)" "VF $i trust"
    assert_eq false "$(vf "$i" .spoofchk)" "VF $i spoofchk"
done
assert_eq true "$(vf 3 .spoofchk)" "VF 3 spoofchk (its own over the PF's default)"
assert_eq true "$(vf 3 .trust)" "VF 3 trust (the PF's default)"
run ctl apply --dry-run
assert_contains "$out" "No changes can be made"
assert_contains "$out" "VF 3 link_state enable: the igb driver refuses it"

log "=== without link-state: a second apply is a no-op"
node_file 4 "[sriov.$PF.vfs.2]
tier = \"gold\"
[sriov.$PF.vfs.3]
spoofchk = true"
ok ctl apply
assert_contains "$out" "No changes: the host matches the node files."

log "=== over the device's total: an error at the file and line, nothing changed"
node_file 9
run ctl apply --dry-run
assert_eq 2 "$rc" "status of an over-total count"
assert_contains "$out" "10-node.toml:6"
assert_contains "$out" "offers at most 7 VFs"
assert_eq 4 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs after the refusal"

log "=== 4 -> 2 goes through 0: vf-reset, refused by --max-disruption hitless"
node_file 2
ok ctl apply --dry-run
assert_contains "$out" "num_vfs 4 -> 2 (through 0: every VF destroyed and made again)  [vf-reset]"
must_fail ctl apply --max-disruption hitless
assert_eq 4 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs after --max-disruption hitless"
must ctl apply
assert_eq 2 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs"
assert_eq 02:00:00:00:00:10 "$(vf 0 .address)" "VF 0 mac after the reset"
assert_eq 100 "$(vf 0 '.vlan_list[0].vlan')" "VF 0 vlan after the reset"
assert_eq 100 "$(vf 1 .rate.max_tx)" "VF 1 max_tx_rate after the reset"
assert_eq true "$(vf 1 .trust)" "VF 1 trust after the reset"
ok ctl apply
assert_contains "$out" "No changes: the host matches the node files."

log "=== vfio-pci: refused without its driver; bound (through the emulated IOMMU) and back"
modprobe -r vfio_pci 2>/dev/null || true
node_file 2 'driver = "vfio-pci"'
run ctl apply --dry-run
assert_contains "$out" "VF 1 driver = \"vfio-pci\": the vfio-pci driver is not loaded"
need_module vfio-pci
# The IOMMU gives every VF its group: the no-IOMMU refusal is golden-tested
# (tests/golden/sriov-vfio-no-iommu), as this VM has one.
group=$(basename "$(readlink "$SYS/virtfn1/iommu_group")")
[[ -n $group ]] || fail "VF 1 has no IOMMU group: is QEMU's intel-iommu there (see the headers)?"
ok ctl apply
assert_contains "$out" "VF 1: driver igbvf -> vfio-pci"
assert_eq vfio-pci "$(basename "$(readlink "$SYS/virtfn1/driver")")" "VF 1's driver"
[[ -e /dev/vfio/$group ]] || fail "no /dev/vfio/$group"
assert_eq 02:00:00:00:00:11 "$(vf 1 .address)" "VF 1 mac, set through the PF whatever drives the VF"
ok ctl status
assert_contains "$out" "(vfio-pci)"
ok ctl apply
assert_contains "$out" "No changes: the host matches the node files."

log "=== a VF bound to vfio-pci and open (as a DPDK or KubeVirt pod holds it) is in use"
# The holder does what a VFIO user does: a container, the group in it, an
# IOMMU type, then the VF's device file, which makes vfio-pci enable it.
pci1=$(basename "$(readlink -f "$SYS/virtfn1")")
/usr/bin/python3 - "$group" "$pci1" > "$T/holder.out" 2>&1 <<'PY' &
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
group, pci = sys.argv[1], sys.argv[2]
container = os.open("/dev/vfio/vfio", os.O_RDWR)
g = os.open(f"/dev/vfio/{group}", os.O_RDWR)
# VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU (type1), VFIO_GROUP_GET_DEVICE_FD
held = "group"
if libc.ioctl(g, 0x3B68, ctypes.byref(ctypes.c_int(container))) == 0 and libc.ioctl(container, 0x3B66, 1) == 0:
    dev = libc.ioctl(g, 0x3B6A, ctypes.c_char_p(pci.encode()))
    held = "device" if dev >= 0 else f"group (device: errno {ctypes.get_errno()})"
else:
    held = f"group (container: errno {ctypes.get_errno()})"
print(held, flush=True)
time.sleep(600)
PY
holder=$!
cleanup_add kill "$holder"
wait_until 20 test -s "$T/holder.out"
log "the holder holds: $(cat "$T/holder.out")"
if [[ $(head -1 "$T/holder.out") == device ]]; then
    assert_eq 1 "$(cat "$SYS/virtfn1/enable")" "VF 1 enabled while its device file is open"
fi
run ctl status
assert_contains "$out" "in use: bound to vfio-pci and open: pid $holder (python3) holds /dev/vfio/$group"
node_file 2 'driver = "kernel"'
run ctl apply
assert_eq 1 "$rc" "status of a driver change of a VF in use"
assert_contains "$out" "VF 1 changes driver, and it is in use: bound to vfio-pci and open"
assert_eq vfio-pci "$(basename "$(readlink "$SYS/virtfn1/driver")")" "VF 1's driver after the refusal"
kill "$holder"
wait "$holder" 2>/dev/null || true
wait_until 20 bash -c "[[ \$(cat $SYS/virtfn1/enable) == 0 ]]"
run ctl status
[[ $out != *"in use"* ]] || fail "VF 1 still in use once its holder is gone"

ok ctl apply
assert_contains "$out" "VF 1: driver vfio-pci -> the kernel's VF driver"
assert_eq igbvf "$(basename "$(readlink "$SYS/virtfn1/driver")")" "VF 1's driver, back"
[[ -n $(ls "$SYS/virtfn1/net") ]] || fail "VF 1 has no netdev after going back to igbvf"
node_file 2
ok ctl apply
assert_contains "$out" "No changes: the host matches the node files."

log "=== show -> files -> apply is a no-op"
mkdir -p "$T/shown"
ctl show > "$T/shown/10-node.toml"
cat "$T/shown/10-node.toml"
ok "$PODNETCTL" -c "$T/shown" --state-dir "$STATE" --bpf-dir "$T/bpf" --direct apply
assert_contains "$out" "No changes: the host matches the node files."

log "=== by hand, the floor of a MAC repair: a VF's netdev takes a MAC when igbvf binds"
# The MAC set through the PF reaches VF 0's netdev only when its driver
# starts again (igb says "Reload the VF driver"): the repair an operator
# would make by hand, timed, for podnetd's below.
pci0=$(basename "$(readlink -f "$SYS/virtfn0")")
vf0_mac() { cat "$SYS"/virtfn0/net/*/address 2> /dev/null || true; }
ip link set "$PF" vf 0 mac 02:00:00:00:00:98
sleep 1
log "VF 0's netdev shows $(vf0_mac) after the PF set 02:00:00:00:00:98"
t0=$(date +%s%N)
echo "$pci0" > /sys/bus/pci/drivers/igbvf/unbind
ip link set "$PF" vf 0 mac 02:00:00:00:00:10
echo "$pci0" > /sys/bus/pci/drivers/igbvf/bind
until [[ $(vf0_mac) == 02:00:00:00:00:10 ]]; do
    (($(date +%s%N) - t0 < 20000000000)) || fail "VF 0's netdev did not come back with its MAC by hand"
    sleep 0.02
done
log "by hand: VF 0's MAC back on the PF and on its netdev in $((($(date +%s%N) - t0) / 1000000)) ms (unbind, set, bind)"
ok ctl apply --dry-run
assert_contains "$out" "No changes: the host matches the node files."

log "=== podnetd repairs settings changed by hand"
SOCK=$T/podnetd.sock
"$PODNETD" -c "$CFG" --state-dir "$STATE" --socket "$SOCK" --bpf-dir "$T/bpf" 2>> "$T/podnetd.log" &
podnetd_pid=$!
cleanup_add kill "$podnetd_pid"
(wait_until 30 test -S "$SOCK") || { cat "$T/podnetd.log"; fail "podnetd did not start"; }
# Its first pass done: a change made before it would be repaired by that
# pass, and timed as podnetd's start.
(wait_until 60 bash -c "curl -sf --unix-socket '$SOCK' http://podnet/v1/status | jq -en 'input.converged == true'") ||
    { cat "$T/podnetd.log"; fail "podnetd did not converge"; }
repair() { # DESCRIPTION VF JQ WANT IP-LINK-SET-ARGS...
    local what=$1 n=$2 expr=$3 want=$4 ms seen
    shift 4
    seen=$(wc -l < "$T/podnetd.log")
    ip link set "$PF" vf "$n" "$@"
    t0=$(date +%s%N)
    until [[ $(vf "$n" "$expr") == "$want" ]]; do
        ms=$((($(date +%s%N) - t0) / 1000000))
        ((ms < 20000)) || { cat "$T/podnetd.log"; fail "$what not repaired in 20 s"; }
        sleep 0.02
    done
    log "repaired: $what in $((($(date +%s%N) - t0) / 1000000)) ms; podnetd meanwhile:"
    sleep 0.5
    tail -n +"$((seen + 1))" "$T/podnetd.log" | cut -c1-220
}
repair "VF 0 mac" 0 .address 02:00:00:00:00:10 mac 02:00:00:00:00:99
until [[ $(vf0_mac) == 02:00:00:00:00:10 ]]; do
    (($(date +%s%N) - t0 < 20000000000)) || { cat "$T/podnetd.log"; fail "VF 0's netdev did not get its MAC back"; }
    sleep 0.02
done
log "VF 0's netdev has its MAC back too, $((($(date +%s%N) - t0) / 1000000)) ms after the change"
repair "VF 0 vlan" 0 '.vlan_list[0].vlan' 100 vlan 200
repair "VF 1 trust" 1 .trust true trust off
repair "VF 1 spoofchk" 1 .spoofchk false spoofchk on
repair "VF 1 max_tx_rate" 1 .rate.max_tx 100 max_tx_rate 50
node=$(curl -sf --unix-socket "$SOCK" http://podnet/v1/node)
jq . <<< "$node"
assert_eq 2 "$(jq -r --arg pf "$PF" '.sriov[] | select(.name == $pf) | .vfs | length' <<< "$node")" "VFs in /v1/node"
assert_eq "100 3 true false" "$(jq -r '.sriov[0].vfs[0] | "\(.vlan) \(.qos) \(.trust) \(.spoofchk)"' <<< "$node")" "VF 0 in /v1/node"
assert_eq "$(basename "$(readlink -f "$SYS/virtfn1")")" "$(jq -r '.sriov[0].vfs[1].pci' <<< "$node")" "VF 1's PCI address in /v1/node"

log "=== a VF that a registered endpoint names (the CNI config's deviceID) is in use"
# A pod's namespace that exists: podnetd forgets endpoints whose is gone.
netns_new sriov-pod
ok curl -sf --unix-socket "$SOCK" -X PUT -H 'Content-Type: application/json' \
    -d "{\"netns\": \"/run/netns/sriov-pod\", \"ips\": [\"10.70.0.5/24\"], \"vf\": \"$pci0\"}" \
    http://podnet/v1/endpoints/sriovpod1/net1
# Its registration makes a pass, whose view of the VFs /v1/node serves.
wait_until 20 bash -c "curl -sf --unix-socket '$SOCK' http://podnet/v1/node | jq -en 'input.sriov[0].vfs[0].in_use == \"endpoint sriovpod1/net1 is registered on it\"'" ||
    { curl -sf --unix-socket "$SOCK" http://podnet/v1/node; fail "VF 0 not in use in /v1/node"; }
node_file 3
run ctl apply --dry-run
assert_eq 1 "$rc" "status of a count change while an endpoint uses VF 0"
assert_contains "$out" "VF 0 ($pci0) is in use: endpoint sriovpod1/net1 is registered on it"
node_file 2
ok curl -sf --unix-socket "$SOCK" -X DELETE http://podnet/v1/endpoints/sriovpod1/net1
kill "$podnetd_pid"
wait "$podnetd_pid" || true

log "=== a VF moved into a namespace is in use: left alone, count change refused"
netns_new pod
vf1=$(ls "$SYS/virtfn1/net")
ip link set "$vf1" netns pod
ip link set "$PF" vf 1 vlan 300
ok ctl apply --dry-run
assert_contains "$out" "No changes: the host matches the node files."
assert_eq 300 "$(vf 1 '.vlan_list[0].vlan')" "the pod's VF's vlan, left to its user"
run ctl status
assert_contains "$out" "-- in use: its netdev left this network namespace"
node_file 3
run ctl apply
assert_eq 1 "$rc" "status of a count change with a VF in use"
assert_contains "$out" "VF 1 ($(basename "$(readlink -f "$SYS/virtfn1")")) is in use"
assert_eq 2 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs after the refusal"
must ctl apply --force
assert_eq 3 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs with --force"
log "all good"
