#!/usr/bin/env bash
# Runs INSIDE the VM (started by tests/vm/run through `vng --exec`).
#
# Usage: guest-runner.sh RESULTS_DIR
#   RESULTS_DIR/.env   variables to export (written by run)
#   RESULTS_DIR/.plan  one case a line: NAME<TAB>PATH<TAB>TIMEOUT_SECONDS
# Writes, per case: NAME.log (stdout+stderr) and NAME.rc (exit status), and
# RESULTS_DIR/.started / .finished so the host can tell "VM never ran us"
# and "VM died half way" apart from test failures.
#
# Results go to files, not the console: vng's console is unreliable for long
# output and the host only trusts what is in RESULTS_DIR.
set -uo pipefail # no -e: a failing case must not stop the runner

results=${1:?usage: guest-runner.sh RESULTS_DIR}
set -a
# shellcheck source=/dev/null
source "$results/.env"
set +a

echo "kernel $(uname -r), $(nproc) cpus" >"$results/.started"

# Leftover state from one case must not break the next one.
reset_between_cases() {
    local ns leaked=()
    for ns in $(ip netns list 2>/dev/null | cut -d' ' -f1); do
        leaked+=("$ns")
        ip netns del "$ns" 2>/dev/null
    done
    ((${#leaked[@]} == 0)) || echo "runner: WARNING: case left netns behind (deleted): ${leaked[*]}" >>"$1"
}

while IFS=$'\t' read -r name path tmo; do
    log=$results/$name.log
    echo "podnet-vm: RUN  $name"
    start=$SECONDS
    tmp=$(mktemp -d "/tmp/podnet-vm-$name.XXXXXX")
    # Own bash process per case (own traps/cleanup), stdin closed, cwd = repo
    # root. timeout -k: SIGTERM first so the case's cleanup trap can run,
    # then SIGKILL 10 s later if it hangs in cleanup.
    (
        cd "$PODNET_ROOT" || exit 1
        export PODNET_CASE=$name PODNET_CASE_TMP=$tmp
        exec timeout -k 10 "$tmo" bash "$path"
    ) >"$log" 2>&1 </dev/null
    rc=$?
    # 124/137 = timeout sent TERM/KILL (timeout reports 124 either way,
    # 137 if it had to KILL): make it obvious in the log.
    if ((rc == 124 || rc == 137)); then
        echo "runner: TIMEOUT: case killed after ${tmo}s" >>"$log"
    fi
    reset_between_cases "$log"
    rm -rf "$tmp"
    echo "$rc $((SECONDS - start))" >"$results/$name.rc"
    echo "podnet-vm: DONE $name rc=$rc $((SECONDS - start))s"
done <"$results/.plan"

dmesg >"$results/dmesg.log" 2>&1
sync
echo ok >"$results/.finished"
sync
