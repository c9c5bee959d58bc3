#!/usr/bin/env bash
source "$(dirname "$0")/../lib.sh"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
