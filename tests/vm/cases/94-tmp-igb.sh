#!/usr/bin/env bash
# vm: qemu-opts=-device igb,netdev=n1 -netdev user,id=n1,restrict=on
source "$(dirname "$0")/../lib.sh"
need_module igb rdma_rxe
pf=$(basename /sys/bus/pci/drivers/igb/0000:*/net/*)
echo "pf=$pf"
ip link set "$pf" up
echo 2 > /sys/class/net/$pf/device/sriov_numvfs
sleep 2
ip -d link show "$pf"
ip -j link | jq -r '.[].ifname'
ip link set "$pf" vf 0 mac 02:00:00:00:00:01
ip link show "$pf"
rdma link add rxe0 type rxe netdev "$pf" && rdma link show
