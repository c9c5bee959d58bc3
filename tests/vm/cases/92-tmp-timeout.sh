#!/usr/bin/env bash
# vm: timeout=5
source "$(dirname "$0")/../lib.sh"
sleep 100
