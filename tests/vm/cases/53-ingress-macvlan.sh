#!/usr/bin/env bash
# Ingress rates through podnetd for macvlan pods in bridge mode: the rate
# cases' body (../rates.sh) with DIRECTION=ingress.
# vm: timeout=300
KIND=macvlan
MODES=(bridge)
DIRECTION=ingress
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../rates.sh"
