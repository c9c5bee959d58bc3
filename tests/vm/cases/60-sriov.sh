#!/usr/bin/env bash
# SR-IOV on QEMU's igb (an Intel 82576 PF with 7 VFs): podnetctl makes 4
# VFs and sets each one's MAC, VLAN with priority, trust, spoofchk and
# max_tx_rate (explicit and from a tier), read back from the kernel; igb's
# refusal of link-state is reported for the VF that asks it, and the rest
# is applied; a count change goes through 0 (vf-reset in the plan, refused
# by --max-disruption hitless) and the settings come back; a count over
# the device's total is an error naming the file and line; podnetd repairs
# each setting changed by hand (the time it took is logged); a VF moved
# into a namespace (as sriov-cni does) is in use: its settings are left to
# its user, and a count change is refused without --force.
# vm: timeout=600
# vm: qemu-opts=-device pcie-root-port,id=pn_rp1,chassis=1,slot=1 -device igb,bus=pn_rp1,netdev=pn_igb0 -netdev user,id=pn_igb0,restrict=on
source "$(dirname "$0")/../lib.sh"

need_module igb igbvf
need_cmd jq ip curl
PODNETCTL=$(podnet_bin podnetctl)
PODNETD=$(podnet_bin podnetd)
T=$PODNET_CASE_TMP
CFG=$T/cfg
STATE=$T/state
mkdir -p "$CFG" "$STATE"
ctl() { "$PODNETCTL" -c "$CFG" --state-dir "$STATE" --bpf-dir "$T/bpf" --direct "$@"; }

# The PF: the one netdev igb drives.
PF=
for dev in /sys/class/net/*; do
    [[ $(basename "$(readlink -f "$dev/device/driver" 2>/dev/null)") == igb ]] && PF=$(basename "$dev")
done
[[ -n $PF ]] || fail "no igb netdev: QEMU's -device igb is missing (see this case's qemu-opts)"
SYS=/sys/class/net/$PF/device
assert_eq 7 "$(cat "$SYS/sriov_totalvfs")" "igb's sriov_totalvfs"
ip link set "$PF" up
cleanup_add bash -c "echo 0 > $SYS/sriov_numvfs"
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
$2
TOML
}

log "=== 4 VFs with their settings; igb refuses link-state for VF 3 only"
node_file 4 "[sriov.$PF.vfs.2]
tier = \"gold\"
[sriov.$PF.vfs.3]
link_state = \"enable\"
spoofchk = true"
out=$(ctl apply --dry-run)
printf '%s\n' "$out"
assert_contains "$out" "num_vfs 0 -> 4"
assert_contains "$out" "VF 0: mac 02:00:00:00:00:10, vlan 100 qos 3, spoofchk off, trust on"
assert_eq 0 "$(cat "$SYS/sriov_numvfs")" "VFs after a dry run"
set +e
out=$(ctl apply 2>&1)
rc=$?
set -e
printf '%s\n' "$out"
assert_eq 1 "$rc" "apply's status with a refused setting"
assert_contains "$out" "VF 3 link_state enable: the igb driver refuses it"
assert_eq 4 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs"
for i in 0 1 2 3; do
    [[ -e $SYS/virtfn$i/net ]] && ls "$SYS/virtfn$i/net" >/dev/null || fail "VF $i has no netdev"
done
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
out=$(ctl apply --dry-run 2>&1 || true)
printf '%s\n' "$out"
assert_contains "$out" "No changes can be made"
assert_contains "$out" "VF 3 link_state enable: the igb driver refuses it"

log "=== without link-state: a second apply is a no-op"
node_file 4 "[sriov.$PF.vfs.2]
tier = \"gold\""
out=$(ctl apply)
assert_contains "$out" "No changes: the host matches the node files."

log "=== over the device's total: an error at the file and line, nothing changed"
node_file 9
set +e
out=$(ctl apply --dry-run 2>&1)
rc=$?
set -e
printf '%s\n' "$out"
assert_eq 2 "$rc" "status of an over-total count"
assert_contains "$out" "10-node.toml:6"
assert_contains "$out" "offers at most 7 VFs"
assert_eq 4 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs after the refusal"

log "=== 4 -> 2 goes through 0: vf-reset, refused by --max-disruption hitless"
node_file 2
out=$(ctl apply --dry-run)
printf '%s\n' "$out"
assert_contains "$out" "num_vfs 4 -> 2 (through 0: every VF destroyed and made again)  [vf-reset]"
must_fail ctl apply --max-disruption hitless
assert_eq 4 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs after --max-disruption hitless"
must ctl apply
assert_eq 2 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs"
assert_eq 02:00:00:00:00:10 "$(vf 0 .address)" "VF 0 mac after the reset"
assert_eq 100 "$(vf 0 '.vlan_list[0].vlan')" "VF 0 vlan after the reset"
assert_eq 100 "$(vf 1 .rate.max_tx)" "VF 1 max_tx_rate after the reset"
assert_eq true "$(vf 1 .trust)" "VF 1 trust after the reset"
out=$(ctl apply)
assert_contains "$out" "No changes: the host matches the node files."

log "=== vfio-pci: refused without the driver, and without an IOMMU unless no-IOMMU mode is asked; bound and back"
modprobe -r vfio_pci 2>/dev/null || true
node_file 2 'driver = "vfio-pci"'
out=$(ctl apply --dry-run 2>&1 || true)
printf '%s\n' "$out"
assert_contains "$out" "VF 1 driver = \"vfio-pci\": the vfio-pci driver is not loaded"
need_module vfio-pci
out=$(ctl apply --dry-run 2>&1 || true)
printf '%s\n' "$out"
assert_contains "$out" "VF 1 driver = \"vfio-pci\" needs an IOMMU, and $PF has no IOMMU group"
node_file 2 'driver = "vfio-pci"' 'vfio_noiommu = true'
out=$(ctl apply)
printf '%s\n' "$out"
assert_contains "$out" "VF 1: driver igbvf -> vfio-pci (vfio's unsafe no-IOMMU mode turned on first)"
assert_eq vfio-pci "$(basename "$(readlink "$SYS/virtfn1/driver")")" "VF 1's driver"
ls /dev/vfio/noiommu-* >/dev/null || fail "no /dev/vfio/noiommu-* group"
assert_eq 02:00:00:00:00:11 "$(vf 1 .address)" "VF 1 mac, set through the PF whatever drives the VF"
out=$(ctl status)
printf '%s\n' "$out"
assert_contains "$out" "(vfio-pci)"
out=$(ctl apply)
assert_contains "$out" "No changes: the host matches the node files."
node_file 2 'driver = "kernel"'
out=$(ctl apply)
printf '%s\n' "$out"
assert_contains "$out" "VF 1: driver vfio-pci -> the kernel's VF driver"
assert_eq igbvf "$(basename "$(readlink "$SYS/virtfn1/driver")")" "VF 1's driver, back"
[[ -n $(ls "$SYS/virtfn1/net") ]] || fail "VF 1 has no netdev after going back to igbvf"
node_file 2
out=$(ctl apply)
assert_contains "$out" "No changes: the host matches the node files."

log "=== show -> files -> apply is a no-op"
mkdir -p "$T/shown"
ctl show > "$T/shown/10-node.toml"
cat "$T/shown/10-node.toml"
out=$("$PODNETCTL" -c "$T/shown" --state-dir "$STATE" --bpf-dir "$T/bpf" --direct apply)
printf '%s\n' "$out"
assert_contains "$out" "No changes: the host matches the node files."

log "=== podnetd repairs settings changed by hand"
SOCK=$T/podnetd.sock
"$PODNETD" -c "$CFG" --state-dir "$STATE" --socket "$SOCK" --bpf-dir "$T/bpf" 2>> "$T/podnetd.log" &
cleanup_add bash -c 'kill $(pgrep -f "podnetd -c '"$CFG"'") 2>/dev/null'
(wait_until 30 test -S "$SOCK") || { cat "$T/podnetd.log"; fail "podnetd did not start"; }
repair() { # DESCRIPTION VF JQ WANT IP-LINK-SET-ARGS...
    local what=$1 n=$2 expr=$3 want=$4 t0 ms
    shift 4
    ip link set "$PF" vf "$n" "$@"
    t0=$(date +%s%N)
    until [[ $(vf "$n" "$expr") == "$want" ]]; do
        ms=$((($(date +%s%N) - t0) / 1000000))
        ((ms < 20000)) || { cat "$T/podnetd.log"; fail "$what not repaired in 20 s"; }
        sleep 0.02
    done
    log "repaired: $what in $((($(date +%s%N) - t0) / 1000000)) ms"
}
repair "VF 0 mac" 0 .address 02:00:00:00:00:10 mac 02:00:00:00:00:99
repair "VF 0 vlan" 0 '.vlan_list[0].vlan' 100 vlan 200
repair "VF 1 trust" 1 .trust true trust off
repair "VF 1 spoofchk" 1 .spoofchk false spoofchk on
repair "VF 1 max_tx_rate" 1 .rate.max_tx 100 max_tx_rate 50
node=$(curl -sf --unix-socket "$SOCK" http://podnet/v1/node)
jq . <<< "$node"
assert_eq 2 "$(jq -r --arg pf "$PF" '.sriov[] | select(.name == $pf) | .vfs | length' <<< "$node")" "VFs in /v1/node"
assert_eq "100 3 true false" "$(jq -r '.sriov[0].vfs[0] | "\(.vlan) \(.qos) \(.trust) \(.spoofchk)"' <<< "$node")" "VF 0 in /v1/node"
assert_eq "$(basename "$(readlink -f "$SYS/virtfn1")")" "$(jq -r '.sriov[0].vfs[1].pci' <<< "$node")" "VF 1's PCI address in /v1/node"
kill "$(pgrep -f "podnetd -c $CFG")"
wait_until 10 bash -c "! pgrep -f 'podnetd -c $CFG' >/dev/null" || fail "podnetd did not stop"

log "=== a VF moved into a namespace is in use: left alone, count change refused"
netns_new pod
vf1=$(ls "$SYS/virtfn1/net")
ip link set "$vf1" netns pod
ip link set "$PF" vf 1 vlan 300
out=$(ctl apply --dry-run)
printf '%s\n' "$out"
assert_contains "$out" "No changes: the host matches the node files."
assert_eq 300 "$(vf 1 '.vlan_list[0].vlan')" "the pod's VF's vlan, left to its user"
out=$(ctl status || true)
printf '%s\n' "$out"
assert_contains "$out" "-- in use: its netdev left this network namespace"
node_file 3
set +e
out=$(ctl apply 2>&1)
rc=$?
set -e
printf '%s\n' "$out"
assert_eq 1 "$rc" "status of a count change with a VF in use"
assert_contains "$out" "VF 1 ($(basename "$(readlink -f "$SYS/virtfn1")")) is in use"
assert_eq 2 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs after the refusal"
must ctl apply --force
assert_eq 3 "$(cat "$SYS/sriov_numvfs")" "sriov_numvfs with --force"
log "all good"
