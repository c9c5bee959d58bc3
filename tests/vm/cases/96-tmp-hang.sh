#!/usr/bin/env bash
# vm: timeout=5
# Stops the guest runner itself, so only the host-side timeout can end the VM.
kill -STOP "$(pgrep -f guest-runner.sh | head -1)"
