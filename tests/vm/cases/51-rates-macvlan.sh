#!/usr/bin/env bash
# Rates through podnetd for macvlan pods in bridge, private and vepa mode:
# see ../rates.sh.
# vm: timeout=420
KIND=macvlan
MODES=(bridge private vepa)
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../rates.sh"
