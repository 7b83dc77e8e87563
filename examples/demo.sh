#!/usr/bin/env bash
# `make demo`: diagnose the bundled SIP Server log segments (the seed's fault: the Asterisk
# gateway's REGISTERs for 5001/5002 are refused, the softphone's 1002/1003 are accepted).
# Later this runs the operator's main job against the lab.
set -euo pipefail
cd "$(dirname "$0")/.."

logs=(examples/logs/SIP_P-001.*.log)
run() {
    printf '\n$ %s\n' "$*"
    "$@"
}
run remediate diagnose --log "${logs[@]}" --dn 5002 --dn 1003
run remediate diagnose --log "${logs[@]}" --dn 5001 --since 2026-02-03T00:00 --output json
