"""A fleet's wall time against one site's: 10 sites x 5 DNs, `apply --site all --parallel 10`.

In the same run, on a fleet lab of 11 fresh sites with the seed's fault (the first site on
REMEDIATE_TEST_GENESYS_HOST / REMEDIATE_TEST_ASTERISK_HOST, defaults 127.0.0.81 / 127.0.0.54; the
others on the next addresses), each gateway registering DNs 5001-5005:

1. one site: `remediate apply --site lab01 --dn 5001 ... --dn 5005 --yes` (its own process);
2. the fleet: `remediate apply --site all --parallel 10` with the same DNs, on an inventory of the
   ten other sites (lab02-lab11), so that both start from the same estate.

Each round (`--rounds`, default 3) brings up a fresh fleet lab and runs both, back to back; the
median round's ratio is the verdict. Printed: each round's wall times and ratio, then for the
median round both wall times, their ratio (target: at most 2x), the CPU time each used (the
`remediate` process and everything it ran: ansible-playbook, its workers, ssh), which bounds
the fleet's wall time from below on this machine: CPU seconds / cores, and each step's duration
(from the runs' journals: the one site's, and the slowest site's of the fleet).

    .venv/bin/python bench/fleet.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from remediate.journal import read_run_dir
from remediate.lab import fleet
from remediate.lab.layout import LabAddresses

SITES = 10
DNS = ["5001", "5002", "5003", "5004", "5005"]
TARGET_RATIO = 2.0
SHORT_SERVICE_BOUNDS = {"genesys_service_stop_timeout": 5, "genesys_service_start_timeout": 30}


def _addresses() -> LabAddresses:
    return LabAddresses(
        genesys_host=os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81",
        asterisk_host=os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54",
    )


def _inventory(source: Path, directory: Path, sites: list[str]) -> Path:
    """`source` cut down to `sites`, with the lab's short service bounds."""
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    children = document["all"]["children"]
    keep = {f"site_{name}" for name in sites}
    hosts = {host for group, body in children.items() if group in keep for host in body["hosts"]}
    for group in list(children):
        if group.startswith("site_") and group not in keep:
            del children[group]
    for kind in ("genesys", "asterisk"):
        children[kind]["hosts"] = {
            name: variables for name, variables in children[kind]["hosts"].items() if name in hosts
        }
    (directory / "group_vars").mkdir(parents=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump(document), encoding="utf-8")
    (directory / "group_vars" / "genesys.yml").write_text(yaml.safe_dump(SHORT_SERVICE_BOUNDS))
    return directory


def _apply(
    inventory: Path, sites: list[str], state: Path, parallel: int
) -> tuple[float, float, dict]:
    """`remediate apply` in its own process: (wall seconds, CPU seconds, its JSON)."""
    command = [sys.executable, "-m", "remediate", "apply", "-i", str(inventory)]
    for site in sites:
        command += ["--site", site]
    for dn in DNS:
        command += ["--dn", dn]
    command += ["--parallel", str(parallel), "--yes", "--change-id", "BENCH-FLEET"]
    command += ["--verify-timeout", "60s", "--output", "json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "REMEDIATE_STATE_DIR": str(state)},
        check=False,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"remediate apply exited {done.returncode}")
    return wall, cpu, json.loads(done.stdout)


def _step_seconds(state: Path, run_ids: list[str]) -> dict[str, float]:
    """Each step's duration, the longest among the runs."""
    longest: dict[str, float] = {}
    for run_id in run_ids:
        for step in read_run_dir(state / "runs" / run_id).steps:
            if step.ended is None:
                continue
            took = (
                datetime.fromisoformat(step.ended) - datetime.fromisoformat(step.started)
            ).total_seconds()
            longest[step.name] = max(took, longest.get(step.name, 0.0))
    return longest


@dataclass(frozen=True)
class Round:
    """One site's apply and the fleet's, back to back on a fresh fleet lab."""

    single_wall: float
    single_cpu: float
    fleet_wall: float
    fleet_cpu: float
    single_steps: dict[str, float]
    fleet_steps: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.fleet_wall / self.single_wall


def _round(work: Path) -> Round:
    root = work / "lab"
    started = time.monotonic()
    fleet.up(root, SITES + 1, _addresses(), dns=DNS)
    took = time.monotonic() - started
    print(f"fleet lab: {SITES + 1} sites x {len(DNS)} DNs up in {took:.1f} s", flush=True)
    try:
        lab = fleet.load_fleet(root)
        names = [site.name for site in lab.sites]
        one = _inventory(lab.inventory, work / "one", names[:1])
        many = _inventory(lab.inventory, work / "many", names[1:])
        single_wall, single_cpu, single = _apply(one, names[:1], work / "state", 1)
        assert single["status"] == "committed", single["message"]
        fleet_wall, fleet_cpu, report = _apply(many, ["all"], work / "state", SITES)
        assert report["counts"] == {"succeeded": SITES, "failed": 0, "skipped": 0}, report
        return Round(
            single_wall,
            single_cpu,
            fleet_wall,
            fleet_cpu,
            _step_seconds(work / "state", [single["run_id"]]),
            _step_seconds(work / "state", [site["run_id"] for site in report["sites"]]),
        )
    finally:
        fleet.down(root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of (one site, then the fleet) on a fresh lab; the median ratio is the "
        "verdict (default 3: the machines are shared and one run's noise is large)",
    )
    rounds_wanted = parser.parse_args().rounds
    rounds: list[Round] = []
    for number in range(1, rounds_wanted + 1):
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as work_dir:
            done = _round(Path(work_dir))
        rounds.append(done)
        print(
            f"round {number}: one site {done.single_wall:5.1f} s wall {done.single_cpu:5.1f} s CPU"
            f" | {SITES} sites {done.fleet_wall:5.1f} s wall {done.fleet_cpu:5.1f} s CPU"
            f" | ratio {done.ratio:.2f}x",
            flush=True,
        )
    middle = sorted(rounds, key=lambda each: each.ratio)[len(rounds) // 2]
    ratio = middle.ratio
    cores = os.cpu_count() or 1
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"the median round (ratio {ratio:.2f}x):")
    rows = [
        ("one site  apply --site lab01", middle.single_wall, middle.single_cpu),
        (f"{SITES} sites apply --site all --parallel {SITES}", middle.fleet_wall, middle.fleet_cpu),
    ]
    for label, wall, cpu in rows:
        print(f"{label:<48}{wall:6.1f} s wall {cpu:6.1f} s CPU")
    print(f"{'step':<22}{'one site':>10}{'fleet (slowest site)':>24}")
    for step, took in middle.single_steps.items():
        print(f"{step:<22}{took:8.1f} s{middle.fleet_steps.get(step, 0.0):20.1f} s")
    ratios = ", ".join(f"{each.ratio:.2f}x" for each in rounds)
    print(f"ratio     {ratio:.2f}x, the median of {ratios} (target at most 2x: {verdict})")
    floor = middle.fleet_cpu / cores
    print(
        f"CPU floor on this machine ({cores} cores): {floor:.1f} s for the fleet "
        f"= {floor / middle.single_wall:.2f}x one site's wall time; "
        f"{middle.fleet_cpu / SITES:.1f} s CPU per site in the fleet, "
        f"{middle.single_cpu:.1f} s alone"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
