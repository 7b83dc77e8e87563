#!/usr/bin/env bash
# `make demo`: the operator's main job against the lab. The lab comes up with the seed's fault
# (the Asterisk gateway's REGISTERs for 5001/5002 refused, the softphone's 1002/1003 accepted);
# remediate diagnoses it, shows the plan, applies the fix the diagnosis recommends as one
# transaction (backup, change, restart, verification), and the DNs are in service. The lab is
# stopped whatever happens.
#
# REMEDIATE_LAB_DIR picks the lab's directory (default: a new temporary one); the run's record
# stays in $REMEDIATE_STATE_DIR (default: <lab dir>/state): `remediate show <run id>` reads it.
set -euo pipefail
cd "$(dirname "$0")/.."

lab_dir="${REMEDIATE_LAB_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/remediate-demo.XXXXXX")}"
export REMEDIATE_LAB_DIR="$lab_dir"
export REMEDIATE_STATE_DIR="${REMEDIATE_STATE_DIR:-$lab_dir/state}"
inventory="$lab_dir/inventory/hosts.yml"  # written by `lab up`, the lab's own addresses

stop_lab() {
    printf '\n$ remediate lab down --dir %s\n' "$lab_dir"
    remediate lab down --dir "$lab_dir" || true
}
trap stop_lab EXIT

run() {
    printf '\n$ %s\n' "$*"
    "$@"
}

run remediate lab up --dir "$lab_dir"
run remediate diagnose -i "$inventory" --dn 5001 --dn 1003
run remediate plan -i "$inventory" --dn 5001 --dn 5002
run remediate apply -i "$inventory" --dn 5001 --dn 5002 --fix auto --yes --change-id DEMO-1
run remediate lab status --dir "$lab_dir"
run remediate history
printf '\nThe run is recorded in %s (remediate show <run id>).\n' "$REMEDIATE_STATE_DIR"
