#!/usr/bin/env bash
source "$(dirname "$0")/../lib.sh"
netns_new leaky
log "about to fail"
assert_eq 1 2 "one"
