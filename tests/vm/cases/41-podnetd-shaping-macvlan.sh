#!/usr/bin/env bash
# podnetd shaping end to end for a macvlan (bridge) pod: see ../podnetd-shaping.sh.
# vm: timeout=420
KIND=macvlan
MODE=bridge
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../podnetd-shaping.sh"
