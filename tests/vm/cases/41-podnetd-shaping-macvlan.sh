#!/usr/bin/env bash
# podnetd shaping end to end for a macvlan (bridge) pod: see ../podnetd-shaping.sh.
# vm: timeout=420
KIND=macvlan
MODE=bridge
# The 100 re-applies are the ipvlan case's (40): 10 here.
REAPPLIES=10
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../podnetd-shaping.sh"
