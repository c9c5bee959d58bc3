#!/usr/bin/env bash
# Egress rates through podnetd for veth pods (Debian's ptp plugin) behind
# masquerade on the node's shaped device: the rate cases' body
# (../rates.sh) with KIND=ptp and MASQ=1. The pods' packets reach m1 with
# the node's address; the tag each pod's veth puts on them (edt_classify)
# carries the pod to m1's EDT program.
# vm: timeout=300
KIND=ptp
MODES=(routed)
DIRECTION=egress
MASQ=1
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../rates.sh"
