#!/usr/bin/env bash
# ipvlan masters and their host shims in every mode (l2, l3, l3s), which the
# development kernel cannot make: podnetctl plans, applies and verifies; the
# shim really carries host <-> pod traffic to a pod made the way the ipvlan
# CNI plugin makes one; a second apply is a no-op; a mode change re-creates
# only podnet's shim; removing the master's shim removes only podnet's link.
# vm: timeout=240
source "$(dirname "$0")/../lib.sh"

need_module ipvlan
need_cmd jq ping
PODNETCTL=$(podnet_bin podnetctl)
CFG=$PODNET_CASE_TMP/cfg
mkdir -p "$CFG"

node_file() { # MODE
    cat > "$CFG/10-node.toml" <<TOML
version = 1
[masters.ens192]
kind = "ipvlan"
mode = "$1"
mtu = 1500
shim = { name = "pn-shim0", addresses = ["172.51.0.230/32"], routes = ["172.51.0.0/24"] }
TOML
}

for mode in l2 l3 l3s; do
    log "=== ipvlan $mode"
    ns=node-$mode
    netns_new "$ns"
    ip -n "$ns" link add ens192 type veth peer name ens192-peer
    ip -n "$ns" link set ens192-peer up
    node_file "$mode"

    must "$PODNETCTL" -c "$CFG" --netns "$ns" apply --dry-run
    [[ -z $(ip -n "$ns" link show pn-shim0 2>/dev/null) ]] || fail "dry-run created the shim"

    must "$PODNETCTL" -c "$CFG" --netns "$ns" apply
    shim=$(ip -n "$ns" -d -j link show pn-shim0)
    assert_eq ipvlan "$(jq -r '.[0].linkinfo.info_kind' <<< "$shim")" "shim kind"
    assert_eq "$mode" "$(jq -r '.[0].linkinfo.info_data.mode' <<< "$shim")" "shim mode"
    assert_eq ens192 "$(jq -r '.[0].link' <<< "$shim")" "shim parent"
    assert_eq "podnet:shim master=ens192" "$(jq -r '.[0].ifalias' <<< "$shim")" "ownership mark"
    assert_eq 157 "$(ip -n "$ns" -j route show 172.51.0.0/24 | jq -r '.[0].protocol')" "route protocol"

    # A pod as the ipvlan CNI plugin makes it: an ipvlan child of the same
    # master, moved into the pod's namespace, default route via its device.
    netns_new "pod-$mode"
    ip -n "$ns" link add pod0 link ens192 type ipvlan mode "$mode"
    ip -n "$ns" link set pod0 netns "pod-$mode"
    ip -n "pod-$mode" link set pod0 name eth0
    ip -n "pod-$mode" addr add 172.51.0.10/32 dev eth0
    ip -n "pod-$mode" link set eth0 up
    ip -n "pod-$mode" route add default dev eth0
    must ip netns exec "$ns" ping -c 2 -W 3 172.51.0.10

    out=$("$PODNETCTL" -c "$CFG" --netns "$ns" apply)
    assert_contains "$out" "No changes" "second apply"
    must "$PODNETCTL" -c "$CFG" --netns "$ns" status
done

log "=== a mode change is refused while a foreign ipvlan child shares the master"
# ipvlan keeps one mode per master: re-making the shim in l3s would switch
# foreign0 (and every pod) to l3s, so podnet refuses and changes nothing.
ns=node-l2
ip -n "$ns" link add foreign0 link ens192 type ipvlan mode l2
before=$(ip -n "$ns" -d -j link show | jq -c '[.[] | {ifname, ifindex, linkinfo}]')
node_file l3s
must_fail "$PODNETCTL" -c "$CFG" --netns "$ns" apply
out=$("$PODNETCTL" -c "$CFG" --netns "$ns" apply --dry-run || true)
assert_contains "$out" "one mode for all its children, and foreign0 (l2)"
assert_eq "$before" "$(ip -n "$ns" -d -j link show | jq -c '[.[] | {ifname, ifindex, linkinfo}]')" "links after a refused apply"

log "=== without it, the mode change re-creates only podnet's shim"
ip -n "$ns" link del foreign0
out=$("$PODNETCTL" -c "$CFG" --netns "$ns" apply)
printf '%s\n' "$out"
assert_contains "$out" "re-created as ipvlan l3s on ens192"
assert_eq l3s "$(ip -n "$ns" -d -j link show pn-shim0 | jq -r '.[0].linkinfo.info_data.mode')" "new mode"
must ip netns exec "$ns" ping -c 1 -W 3 172.51.0.10
ip -n "$ns" link add foreign1 link ens192 type ipvlan mode l3s

log "=== dropping the shim removes podnet's link only"
printf 'version = 1\n[masters.ens192]\nkind = "ipvlan"\nmode = "l3s"\n' > "$CFG/10-node.toml"
must "$PODNETCTL" -c "$CFG" --netns "$ns" apply
[[ -z $(ip -n "$ns" link show pn-shim0 2>/dev/null) ]] || fail "shim still there"
[[ -n $(ip -n "$ns" link show foreign1 2>/dev/null) ]] || fail "foreign ipvlan removed"
log "all good"
