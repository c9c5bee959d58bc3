#!/usr/bin/env bash
# Sanity check of the VM lab itself: the right kernel, the modules podnet
# relies on can be loaded, and iproute2 can build ipvlan links in every mode.
# vm: timeout=180
source "$(dirname "$0")/../lib.sh"

log "kernel $(uname -r)"
assert_match '^6\.12\.' "$(uname -r)" "kernel version"

# Modules come from the extracted Debian package (tests/vm/.cache/kernel).
need_module ipvlan sch_fq ipip dummy
for m in ipvlan sch_fq ipip dummy; do
    [[ -d /sys/module/$m ]] || fail "module $m not loaded after modprobe"
done

# ip -j must give JSON we can query (cases rely on it instead of parsing text).
need_cmd ip jq
ip -j link show lo | jq -e '.[0].ifname == "lo"' >/dev/null || fail "ip -j link show lo: unexpected JSON"

# ipvlan in each mode on top of a veth, inside a fresh netns.
netns_new ipvl
ip -n ipvl link add veth0 type veth peer name veth1
ip -n ipvl link set veth0 up
for mode in l2 l3 l3s; do
    must ip -n ipvl link add "ipvl-$mode" link veth0 type ipvlan mode "$mode"
    ip -n ipvl link set "ipvl-$mode" up
    got=$(ip -n ipvl -d -j link show "ipvl-$mode" | jq -r '.[0].linkinfo.info_data.mode')
    assert_eq "$mode" "$got" "ipvlan mode of ipvl-$mode"
    ip -n ipvl link del "ipvl-$mode"
done

# sch_fq actually usable as a qdisc.
must tc -n ipvl qdisc replace dev veth0 root fq
assert_eq fq "$(tc -n ipvl -j qdisc show dev veth0 root | jq -r '.[0].kind')" "root qdisc"

log "all good"
