#!/usr/bin/env bash
# podnetd shaping end to end for a ipvlan (l2) pod: see ../podnetd-shaping.sh.
# vm: timeout=600
KIND=ipvlan
MODE=l2
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../podnetd-shaping.sh"
