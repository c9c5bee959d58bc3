#!/usr/bin/env bash
# Rates through podnetd for ipvlan pods in l2, l3 and l3s: see ../rates.sh.
# vm: timeout=420
KIND=ipvlan
MODES=(l2 l3 l3s)
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../rates.sh"
