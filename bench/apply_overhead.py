"""One `remediate apply` on the lab, its own overhead set against plain `ansible-playbook`.

In the same run, on two fresh labs with the seed's fault (REMEDIATE_TEST_GENESYS_HOST /
REMEDIATE_TEST_ASTERISK_HOST, defaults 127.0.0.81 / 127.0.0.54):

1. plain: `ansible-playbook` runs what an operator would run by hand for the trusted-gateway fix:
   trusted_gateway.yml --check --diff (the review), trusted_gateway.yml, restart.yml;
2. remediate: `apply --dn 5001 --dn 5002 --fix trusted-gateway` through the API, which runs the
   same three playbooks through ansible-runner and adds the preflight diagnosis, the backup, the
   verification (log read over WinRM) and the journal.

The lab's own waits are printed separately: its service stop and start delays (spent inside
restart.yml by both), and the registration delay (restart done -> every DN's REGISTER accepted,
which only remediate waits for: the verification). The tool's overhead is its wall time minus
those waits; the plain run's time is its wall time minus the service delays. Target: overhead at
most 1.5x the plain run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from remediate import api, engine
from remediate.lab import control
from remediate.lab.genesys.service import DEFAULT_START_DELAY, DEFAULT_STOP_DELAY
from remediate.lab.layout import LabAddresses, LabLayout

ROOT = Path(__file__).resolve().parents[1]
DNS = ["5001", "5002"]
TARGET_RATIO = 1.5


def _addresses() -> LabAddresses:
    return LabAddresses(
        genesys_host=os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81",
        asterisk_host=os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54",
    )


def _kill_ssh_masters(control_dir: Path) -> None:
    """ControlPersist masters left by the plain runs (ours alone: they name our directory)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(control_dir).encode() in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGTERM)


def plain_run(layout: LabLayout, work: Path) -> dict[str, float]:
    inventory = layout.inventory_dir / "hosts.yml"
    extravars = work / "extravars.json"
    extravars.write_text(json.dumps({"remediate_dns": DNS, "remediate_run_id": "bench"}))
    control_dir = work / "cp"
    control_dir.mkdir()
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
    }
    binary = Path(sys.executable).parent / "ansible-playbook"
    timings: dict[str, float] = {}
    try:
        for label, playbook, extra in (
            ("check", "trusted_gateway.yml", ["--check", "--diff"]),
            ("apply", "trusted_gateway.yml", ["--diff"]),
            ("restart", "restart.yml", []),
        ):
            started = time.monotonic()
            subprocess.run(
                [str(binary), "-i", str(inventory), str(ROOT / "playbooks" / playbook),
                 "--limit", "site_lab", "-e", f"@{extravars}", *extra],
                cwd=ROOT, env=environment, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            timings[label] = time.monotonic() - started
    finally:
        _kill_ssh_masters(control_dir)
    return timings


def remediate_run(layout: LabLayout, work: Path) -> tuple[float, dict[str, float]]:
    steps: dict[str, float] = {}
    started_at: dict[str, float] = {}

    def on_step(step: str, phase: str) -> None:
        if phase == "started":
            started_at[step] = time.monotonic()
        else:
            steps[step] = time.monotonic() - started_at[step]

    options = engine.Options(
        dns=tuple(DNS), fix="trusted-gateway", change_id="BENCH", yes=True, poll_interval=0.25
    )
    started = time.monotonic()
    report = api.apply(
        layout.inventory_dir / "hosts.yml",
        None,
        options,
        engine.Hooks(on_step=on_step),
        state_dir=work / "state",
    )
    wall = time.monotonic() - started
    if report.exit_status != 0:
        raise SystemExit(f"apply did not commit: {report.status.value}: {report.message}")
    return wall, steps


def main() -> int:
    addresses = _addresses()
    service_delays = DEFAULT_STOP_DELAY + DEFAULT_START_DELAY
    with tempfile.TemporaryDirectory(prefix="remediate-bench-") as directory:
        work = Path(directory)
        plain_lab = LabLayout(work / "lab-plain", addresses)
        control.up(plain_lab, "untrusted-gateway")
        try:
            plain = plain_run(plain_lab, work)
        finally:
            control.down(plain_lab)
        tool_lab = LabLayout(work / "lab-remediate", addresses)
        control.up(tool_lab, "untrusted-gateway")
        try:
            wall, steps = remediate_run(tool_lab, work)
        finally:
            control.down(tool_lab)

    registration_wait = steps.get("verify", 0.0)
    plain_wall = sum(plain.values())
    plain_net = plain_wall - service_delays
    overhead = wall - service_delays - registration_wait
    print("plain ansible-playbook (check, apply, restart)")
    for label, seconds in plain.items():
        print(f"  {label:<8} {seconds:6.2f} s")
    print(f"  total    {plain_wall:6.2f} s")
    print("remediate apply (steps)")
    for step, seconds in steps.items():
        print(f"  {step:<10} {seconds:6.2f} s")
    print(f"  wall     {wall:6.2f} s")
    print("lab waits")
    print(f"  service stop+start delays   {service_delays:6.2f} s (inside restart.yml, both runs)")
    print(f"  registration delay          {registration_wait:6.2f} s (restart -> all accepted)")
    ratio = overhead / plain_net
    print(f"plain run without the lab's waits   {plain_net:6.2f} s")
    print(f"remediate overhead (wall - waits)   {overhead:6.2f} s")
    verdict = "ok" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
