#!/bin/bash
# Runs INSIDE the systemd VM of tests/vm/packages, as a oneshot unit after
# multi-user.target: installs podnet's .deb, checks what it put in place and
# that the install left the network as it was, has the service shape a pod,
# upgrades to a rebuilt package (the pod's map entry, the program and the
# shim's ifindex must survive), then purges. Every check prints
# "PASS ..." or "FAIL ..." into /root/packages/result; the last line is
# "DONE <failures>".
set -uo pipefail
DIR=/root/packages
OUT=$DIR/result
: > "$OUT"
fails=0
pass() { echo "PASS $*" | tee -a "$OUT"; }
fail() { echo "FAIL $*" | tee -a "$OUT"; fails=$((fails + 1)); }
check() { # WHAT COMMAND...
    local what=$1 t0=${EPOCHREALTIME/./} rc=0
    shift
    "$@" >> "$DIR/commands.log" 2>&1 || rc=$?
    echo "# $what: rc $rc in $(((${EPOCHREALTIME/./} - t0) / 1000)) ms" >> "$DIR/commands.log"
    if ((rc == 0)); then pass "$what"; else fail "$what (\`$*\`)"; fi
}
api() { curl -sf --unix-socket /run/podnet/podnet.sock "http://localhost$1" "${@:2}"; }
# api_is PATH FILTER: the answer at PATH exists and FILTER holds on it.
api_is() { local a; a=$(api "$1") && jq -e "$2" <<< "$a" > /dev/null; }
wait_for() { # SECONDS COMMAND...
    local end=$((SECONDS + $1))
    shift
    until "$@" > /dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 0.5; done
}
# What a network configurator could have changed, as iproute2 shows it.
network() {
    ip -d -j link show | jq -S 'map(del(.stats, .stats64, .operstate, .linkinfo.info_slave_data))'
    ip -j addr show | jq -S 'map(del(.addr_info[]?.valid_life_time, .addr_info[]?.preferred_life_time))'
    ip -j route show table all
    tc -j qdisc show
    ls /sys/fs/bpf
}
finish() {
    echo "DONE $fails" >> "$OUT"
    journalctl -u podnetd --no-pager > "$DIR/podnetd.journal" 2>&1
    sync
    systemctl poweroff --no-block
    exit 0
}

deb1=$(ls "$DIR"/podnet_*-1_amd64.deb)
deb2=$(ls "$DIR"/podnet_*-2_amd64.deb)
# A master for later, made before the install: the network the install
# must leave alone includes it.
# Their MACs are given: udev replaces a kernel-random one with its
# "persistent" MAC (the default .link policy) whenever it gets to the
# event, which on a loaded TCG guest can be after any settle, and that
# change would look like the install's.
ip link add m0 address 02:70:6e:00:00:01 type veth peer name m0-peer address 02:70:6e:00:00:02
ip link set m0-peer up
ip netns add pod
udevadm settle -t 60
network > "$DIR/network.before"
findmnt /sys/fs/bpf >> "$DIR/commands.log" 2>&1 || fail "no bpffs on /sys/fs/bpf"

echo "=== install $deb1"
check "dpkg -i installs the package" dpkg -i "$deb1"
check "the podnet group exists" getent group podnet
for f in /usr/bin/podnetd /usr/bin/podnetctl /usr/bin/podnet-cni /usr/lib/cni/podnet-cni \
    /lib/systemd/system/podnetd.service /usr/share/podnet/podnet.schema.json \
    /usr/share/doc/podnet/examples/macvlan-sriov/10-node.toml \
    /usr/share/bash-completion/completions/podnetctl /usr/share/zsh/vendor-completions/_podnetctl \
    /usr/share/fish/vendor_completions.d/podnetctl.fish; do
    check "installed: $f" test -e "$f"
done
check "man pages installed: podnetd(8), podnet.toml(5)" test -e /usr/share/man/man8/podnetd.8.gz -a -e /usr/share/man/man5/podnet.toml.5.gz
check "nothing installed into /etc/podnet" test -z "$(ls -A /etc/podnet)"
check "podnetctl --version names the version and commit" bash -c 'podnetctl --version | grep -E "^podnetctl [0-9.]+ \(commit [0-9a-f]{12}"'
check "man podnetd renders" bash -c 'man -P cat podnetd 2>&1 | grep -q "podnetd"'
check "man podnet.toml renders" bash -c 'man -P cat podnet.toml 2>&1 | grep -q "masters"'
check "bash completes podnetctl" bash -c '. /usr/share/bash-completion/bash_completion; _comp_load podnetctl 2>/dev/null || __load_completion podnetctl; complete -p podnetctl'
check "the unit is enabled" systemctl is-enabled podnetd
check "the service reached READY (active, Type=notify)" wait_for 60 systemctl is-active podnetd
check "the socket answers" api_is /v1/status '.generation == 0'
check "the socket belongs to the podnet group, mode 0660" bash -c '[ "$(stat -c %G:%a /run/podnet/podnet.sock)" = podnet:660 ]'
check "/metrics answers" bash -c 'curl -sf --unix-socket /run/podnet/podnet.sock http://localhost/metrics | grep -q "^podnet_generation "'
sleep 2
network > "$DIR/network.after-install"
if diff -u "$DIR/network.before" "$DIR/network.after-install" > "$DIR/network.diff"; then
    pass "installing and starting the service changed nothing on the network"
else
    fail "the install changed the network: $(head -c 600 "$DIR/network.diff")"
fi
check "systemd-analyze verify passes on the installed unit" systemd-analyze verify podnetd.service
systemd-analyze security podnetd.service --no-pager > "$DIR/security.txt" 2>&1 || true
pass "security: $(grep -o 'Overall exposure level.*' "$DIR/security.txt")"

echo "=== a node file and a shaped pod"
# On this guest's 9p root the service's watch of /etc/podnet sees no event
# for the file written here (9p without a cache makes a new inode at each
# lookup; the journal said trigger="timer", 60 s later): the file is
# applied on a reconcile request (which reloads the files, as the timer
# does). tests/daemon.rs checks the watch itself.
cat > /etc/podnet/10-node.toml << 'TOML'
version = 1
[masters.m0]
kind = "macvlan"
shaping = true
shim = { name = "pn-shim0", addresses = ["10.30.0.250/32"], routes = ["10.30.0.0/24"] }
[tiers.silver]
egress = "50M"
[shaping]
default_tier = "silver"
TOML
check "the running service applies the new node file on request" \
    api /v1/reconcile -X POST
check "the node converges" \
    wait_for 90 api_is /v1/status '.converged == true and .generation >= 1'
check "a pod's endpoint registers as the CNI plugin would" \
    api /v1/endpoints/feedface01/eth0 -X PUT -H 'Content-Type: application/json' \
    -d '{"netns": "/run/netns/pod", "ips": ["10.30.0.10/24"], "master": "m0"}'
check "the pod is shaped (enforced)" \
    wait_for 30 api_is /v1/endpoints/feedface01/eth0 '.enforcement.enforced == true'
state() { # what an upgrade must keep
    printf 'shim ifindex %s\n' "$(ip -j link show pn-shim0 | jq '.[0].ifindex')"
    printf 'map id %s\n' "$(bpftool -j map show pinned /sys/fs/bpf/podnet/podnet_edt_v1 | jq .id)"
    printf 'entry %s\n' "$(bpftool -j map dump pinned /sys/fs/bpf/podnet/podnet_edt_v1 | jq -c '[.[] | {key, rate: (.formatted.value.rate_bytes? // .value[0:8])}]')"
    # The program podnetd attached (TCX: bookworm's bpftool does not list it).
    printf 'program %s\n' "$(api /v1/status | jq -c '[.shaping[] | {device, program_id}]')"
    printf 'qdisc %s\n' "$(tc -j qdisc show dev m0 | jq -c '[.[] | {kind, handle}]')"
}
state > "$DIR/state.before" 2>> "$DIR/commands.log"
if grep -qE '^(shim ifindex|map id) (null)?$|^(entry|program) (\[\])?$' "$DIR/state.before"; then fail "the shaped state is incomplete: $(tr '\n' ';' < "$DIR/state.before")"; fi
cat "$DIR/state.before" >> "$DIR/commands.log"
pid1=$(systemctl show -p MainPID --value podnetd)

echo "=== upgrade to $deb2"
check "dpkg -i upgrades to the rebuilt package" dpkg -i "$deb2"
check "the service runs after the upgrade" wait_for 60 systemctl is-active podnetd
pid2=$(systemctl show -p MainPID --value podnetd)
if [[ $pid2 != "$pid1" && $pid2 != 0 ]]; then pass "the upgrade restarted podnetd ($pid1 -> $pid2)"; else fail "podnetd was not restarted ($pid1 -> $pid2)"; fi
check "the node is converged again" wait_for 60 api_is /v1/status '.converged == true'
state > "$DIR/state.after" 2>> "$DIR/commands.log"
if diff -u "$DIR/state.before" "$DIR/state.after" > "$DIR/state.diff"; then
    pass "the upgrade kept the data path: $(tr '\n' ';' < "$DIR/state.after" | head -c 400)"
else
    fail "the upgrade changed the data path: $(cat "$DIR/state.diff")"
fi
check "the pod is still shaped" api_is /v1/endpoints/feedface01/eth0 '.enforcement.enforced == true'
check "the endpoint registry survived the upgrade" bash -c 'set -o pipefail; podnetctl endpoints -o json | jq -e "length == 1"'

echo "=== purge"
check "dpkg --purge removes the package" dpkg --purge podnet
check "podnetd no longer runs" bash -c '! pgrep -x podnetd'
for f in /usr/bin/podnetd /usr/bin/podnetctl /usr/lib/cni/podnet-cni /lib/systemd/system/podnetd.service /var/lib/podnet /run/podnet /usr/share/podnet; do
    check "gone: $f" test ! -e "$f"
done
check "the podnet group is gone" bash -c '! getent group podnet'
check "the unit is gone from systemd" bash -c '! systemctl cat podnetd'
check "the operator's node file stays" test -e /etc/podnet/10-node.toml
check "the applied data path stays (the shim)" ip link show pn-shim0
finish
