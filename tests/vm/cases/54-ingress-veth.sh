#!/usr/bin/env bash
# Ingress rates through podnetd for veth pods (Debian's ptp plugin), shaped
# on each pod's host-side veth: the rate cases' body (../rates.sh) with
# KIND=ptp and DIRECTION=ingress.
# vm: timeout=300
KIND=ptp
MODES=(routed)
DIRECTION=ingress
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../rates.sh"
