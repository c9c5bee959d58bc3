#!/usr/bin/env bash
# Ingress rates through podnetd for ipvlan pods in l2, l3 and l3s: the
# rate cases' body (../rates.sh) with DIRECTION=ingress.
# vm: timeout=420
KIND=ipvlan
MODES=(l2 l3 l3s)
DIRECTION=ingress
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../rates.sh"
