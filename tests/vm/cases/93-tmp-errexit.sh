#!/usr/bin/env bash
source "$(dirname "$0")/../lib.sh"
ip netns add stray   # leaked on purpose, no cleanup
ip link show nonexistent0
echo unreachable
