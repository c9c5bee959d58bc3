# shellcheck shell=bash
# QEMU's igb as the SR-IOV PF of a case or benchmark (source lib.sh first):
# sets PF (its netdev) and SYS (its PCI device in sysfs), takes whatever
# the guest's init gave it (the PF carries nothing of the test's), brings
# it up, and puts its VF count back to 0 when the case ends.
PF=
for dev in /sys/class/net/*; do
    [[ $(basename "$(readlink -f "$dev/device/driver" 2>/dev/null)") == igb ]] && PF=$(basename "$dev")
done
[[ -n $PF ]] || fail "no igb netdev: QEMU's -device igb is missing (see the case's qemu-opts header)"
SYS=/sys/class/net/$PF/device
# The PF is on a QEMU hub of its own (no DHCP, no router advertisements):
# a default route through it would make podnet refuse, rightly, to flap it
# without --force. Whatever the guest's init gave it goes.
sysctl -qw "net.ipv6.conf.$PF.accept_ra=0"
ip -4 route flush dev "$PF"
ip -6 route flush dev "$PF"
ip addr flush dev "$PF"
ip link set "$PF" up
cleanup_add bash -c "echo 0 > $SYS/sriov_numvfs"
