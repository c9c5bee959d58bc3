#!/usr/bin/env bash
# Shaping in the one plan, with `podnetctl apply` on a real kernel with fq:
# the dry run lists the map, qdisc and program steps and changes nothing;
# `--max-disruption hitless` refuses a plan that replaces a root qdisc
# holding packets (queue-reset); a step that fails midway (the failpoint
# fails the second master's program attach) rolls back every step before
# it: the first master's configured root qdisc (pfifo 1:) is back, no
# program is left on either; a mode switch (clsact wanted, TCX attached)
# that fails midway puts the very program it took off (same id) back.
# vm: timeout=300
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../measure.sh"

need_module sch_fq veth
need_cmd jq tc
PCTL_BIN=$(podnet_bin podnetctl)
DEMO=$(podnet_bin examples/edt-demo)
podnetd_layout

netns_new node
ip -n node link add m0 type veth peer name p0
ip -n node link add m1 type veth peer name p1
ip -n node link set p0 up
ip -n node link set p1 up
ip -n node link set m0 up
ip -n node link set m1 up
# A root someone configured on m0 (podnet must put it back exactly); m1
# keeps the kernel's default (noqueue on a veth).
tc -n node qdisc add dev m0 root handle 1: pfifo limit 321
cat > "$T/cfg/10-node.toml" <<'TOML'
version = 1
[masters.m0]
kind = "macvlan"
mode = "bridge"
shaping = true
[masters.m1]
kind = "macvlan"
mode = "bridge"
shaping = true
[tiers.silver]
egress = "100M"
[shaping]
default_tier = "silver"
TOML
# One registered pod on m0, as podnetd's registry holds it on disk.
cat > "$T/state/endpoints.json" <<'JSON'
{"version": 1, "endpoints": [{"container_id": "c1", "ifname": "eth0", "ips": ["10.30.0.5/24"],
  "master": "m0", "registered_at": 0, "limits": {"egress": 100000000, "tier": "silver"}}]}
JSON
pctl() { "$PCTL_BIN" -c "$T/cfg" --netns node --state-dir "$T/state" --bpf-dir "$PIN" "$@"; }
status() { "$DEMO" --netns node --pin-dir "$PIN" --state-dir "$T/state/shaping" status "$1"; }
root_of() { tc -n node -j qdisc show dev "$1" root | jq -c '.[0] | {kind, handle}'; }
tc_state() { tc -n node qdisc show; tc -n node filter show dev m0 egress; tc -n node filter show dev m1 egress; }

log "=== the dry run lists every shaping step and changes nothing"
before=$(tc_state)
plan=$(pctl apply --dry-run) || fail "dry run failed: $plan"
log "plan:"$'\n'"$plan"
assert_contains "$plan" "endpoint 10.30.0.5"$'\n'"  + egress 100Mbit" "the map entry"
assert_contains "$plan" "shaping m0"$'\n'"  ~ root qdisc fq 706e:" "m0's root step"
assert_contains "$plan" "replacing pfifo 1:0 (recorded, put back when shaping goes)  [queue-reset]"$'\n'"  + EDT program on egress (tcx; fails open)"$'\n'"shaping m1" "m0's steps"
# noqueue holds no packets: replacing it is hitless.
assert_contains "$(grep -A2 "^shaping m1" <<< "$plan")" "replacing default noqueue (recorded, put back when shaping goes)"$'\n'"  + EDT program on egress (tcx; fails open)" "m1's steps"
# Entries before the programs that read them, fq before the program.
entry_line=$(grep -n "endpoint 10.30.0.5" <<< "$plan" | cut -d: -f1)
prog_line=$(grep -n "EDT program on egress" <<< "$plan" | head -1 | cut -d: -f1)
((entry_line < prog_line)) || fail "the entry is not written before the program"
assert_eq "$before" "$(tc_state)" "qdiscs and filters after the dry run"
[[ ! -e $PIN ]] || fail "the dry run pinned something under $PIN"

log "=== --max-disruption hitless refuses replacing a root that holds packets"
out=$(pctl apply --max-disruption hitless 2>&1) && fail "a queue-reset plan ran under --max-disruption hitless: $out"
assert_contains "$out" "the plan is queue-reset but --max-disruption is hitless; nothing was changed" "the refusal"
assert_eq "$before" "$(tc_state)" "qdiscs and filters after the refusal"

log "=== a step failing midway rolls back every step before it"
json=$(pctl apply --dry-run -o json)
# The step that fails: m1's program attach, after m0 is fully shaped.
n=$(jq '[.actions[] | .object + " " + .op] | index("shaping m1 attach-program") + 1' <<< "$json")
total=$(jq '.actions | length' <<< "$json")
log "failing step $n of $total"
out=$(PODNET_FAILPOINT=fail-step:$n pctl apply 2>&1) && fail "apply passed with a failing step: $out"
log "apply: $out"
assert_contains "$out" "failpoint fail-step:$n" "the failing step"
assert_contains "$out" "rolled back $((n - 1)) applied step(s)" "the rollback"
assert_eq '{"kind":"pfifo","handle":"1:"}' "$(root_of m0)" "m0's root after the rollback"
assert_eq "321" "$(tc -n node -j qdisc show dev m0 root | jq -r '.[0].options.limit')" "m0's pfifo limit after the rollback"
assert_eq '{"kind":"noqueue","handle":"0:"}' "$(root_of m1)" "m1's root after the rollback"
for d in m0 m1; do
    st=$(status "$d")
    assert_eq "null false" "$(jq -r '"\(.tcx_program) \(.clsact_filter)"' <<< "$st")" "$d's hook after the rollback"
done

log "=== the same apply without the failpoint shapes both, and a second one finds nothing to do"
out=$(pctl apply) || fail "apply failed: $out"
for d in m0 m1; do
    assert_eq true "$(status "$d" | jq -r .fq)" "fq on $d"
done
p0=$(status m0 | jq -r .tcx_program)
[[ $p0 != null ]] || fail "no TCX program on m0"
again=$(pctl apply --dry-run)
assert_contains "$again" "No changes: the host matches the node files." "the re-plan"

log "=== a mode switch (clsact wanted) failing midway puts the TCX program it took off back"
json=$(PODNET_ATTACH_MODE=clsact pctl apply --dry-run -o json)
jq -r '.actions[] | .object + ": " + .text' <<< "$json"
n=$(jq '[.actions[] | .object + " " + .op] | index("shaping m1 detach-program") + 1' <<< "$json")
out=$(PODNET_ATTACH_MODE=clsact PODNET_FAILPOINT=fail-step:$n pctl apply 2>&1) && fail "apply passed with a failing step: $out"
log "apply: $out"
assert_contains "$out" "rolled back $((n - 1)) applied step(s)" "the rollback"
st=$(status m0)
log "m0 after: $st"
assert_eq "$p0" "$(jq -r .tcx_program <<< "$st")" "m0's TCX program: the same one, put back"
assert_eq false "$(jq -r .clsact_filter <<< "$st")" "m0's clsact filter after the rollback"
assert_eq true "$(jq -r .fq <<< "$st")" "fq on m0 after the rollback"

log "=== shaping off: programs off, then the roots podnet replaced back"
sed -i 's/shaping = true/shaping = false/' "$T/cfg/10-node.toml"
out=$(pctl apply) || fail "apply failed: $out"
log "$out"
assert_eq '{"kind":"pfifo","handle":"1:"}' "$(root_of m0)" "m0's root once shaping is off"
assert_eq "321" "$(tc -n node -j qdisc show dev m0 root | jq -r '.[0].options.limit')" "m0's pfifo limit"
assert_eq '{"kind":"noqueue","handle":"0:"}' "$(root_of m1)" "m1's root once shaping is off"
log "all good"
