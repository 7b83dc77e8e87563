"""The controller SIGKILLed at each step of `remediate apply` on the lab, then `remediate recover`:
the estate ends byte-identical to its baseline (configuration objects and extensions.conf) with
the baseline DNs in service, or applied and verified when the controller died after verification.
A second `recover` finds nothing. Plus: locks against a second controller while a run is alive,
`recover` refused (exit 5) while a live process holds the site's lock, and a `recover` that is
itself killed midway, finished by the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import (
    CliRun,
    cli,
    estate_checksums,
    in_service,
    inventory_with_short_bounds,
)

from remediate.inventory import load_site
from remediate.lab.layout import LabLayout
from remediate.lock import SiteLock, TargetLock
from remediate.state import StateDir
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

BASELINE = {"1002", "1003"}
TARGETS = {"5001", "5002"}
APPLY = ["apply", "--dn", "5001", "--dn", "5002", "--fix", "auto", "--yes"]
APPLY += ["--change-id", "CHG-KILL", "--verify-timeout", "20s"]


@pytest.fixture
def estate(lab_factory: Callable[[str], LabLayout], tmp_path: Path) -> tuple[LabLayout, Path, Path]:
    """A pristine lab for each test (a start takes about 1.5 s): each case begins from the
    seed's fault, with no registration history that an earlier case left in the log."""
    layout = lab_factory("untrusted-gateway")
    inventory = inventory_with_short_bounds(layout, tmp_path / "inventory")
    return layout, inventory, tmp_path / "state"


def remediate_process(*args: str, state: Path) -> subprocess.Popen[str]:
    """`remediate ARGS` as its own process, without a terminal (as cron runs it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "remediate", *args, "--state-dir", str(state)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_remediate(*args: str, state: Path, timeout: float = 180) -> CliRun:
    process = remediate_process(*args, state=state)
    out, err = process.communicate(timeout=timeout)
    return CliRun(process.returncode, out, err)


def journal_events(run_dir: Path) -> list[tuple[str, str | None]]:
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]  # a torn last line is ignored
    return [(entry["event"], entry["step"]) for entry in map(json.loads, lines)]


def kill_when_started(
    process: subprocess.Popen[str], state: Path, step: str, known: set[str], occurrence: int = 1
) -> Path:
    """Freeze the process the moment its run's journal says `step-started <step>` (for the
    `occurrence`th time), check the step has not ended, then SIGKILL it. Returns the run's dir."""
    deadline = time.monotonic() + 120
    run_dir: Path | None = None
    while time.monotonic() < deadline:
        if run_dir is None:
            fresh = [p for p in (state / "runs").glob("*") if p.name not in known]
            run_dir = fresh[0] if fresh else None
        if run_dir is not None:
            events = journal_events(run_dir)
            if events.count(("step-started", step)) >= occurrence:
                process.send_signal(signal.SIGSTOP)
                events = journal_events(run_dir)
                process.kill()
                process.communicate()
                started = [s for e, s in events if e == "step-started"]
                assert started[-1] == step or step in started, started
                assert events.count(("step-finished", step)) < occurrence, (
                    f"{step} had already finished when the controller was frozen: {events}"
                )
                return run_dir
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"remediate ended (exit {process.returncode}) before {step}: {err}")
        time.sleep(0.002)
    process.kill()
    pytest.fail(f"{step} never started")


def known_runs(state: Path) -> set[str]:
    runs = state / "runs"
    return {path.name for path in runs.glob("*")} if runs.exists() else set()


def recover(state: Path) -> CliRun:
    return run_remediate("recover", "--yes", "--verify-timeout", "20s", "--output", "json",
                         state=state)  # fmt: skip


def assert_back_to_baseline(layout: LabLayout, before: dict[str, str]) -> None:
    assert estate_checksums(layout) == before  # every object and extensions.conf byte-identical
    assert in_service(layout) >= BASELINE
    assert not in_service(layout) & TARGETS  # the seed's fault is back, as before the change


@pytest.mark.parametrize(
    "step", ["guards", "preflight", "plan", "backup", "restart", "verify", "commit"]
)
def test_sigkill_at_a_step_then_recover(estate: Any, step: str) -> None:
    layout, inventory, state = estate
    before = estate_checksums(layout)
    known = known_runs(state)
    process = remediate_process(*APPLY, "-i", str(inventory), state=state)
    run_dir = kill_when_started(process, state, step, known)

    recovered = recover(state)
    assert recovered.code == ExitStatus.SUCCESS, recovered.out + recovered.err
    document = recovered.json()
    assert document["schema_version"] == 1 and document["kind"] == "recovery"
    (entry,) = document["runs"]
    assert entry["run_id"] == run_dir.name and entry["run"]["change_id"] == "CHG-KILL"
    run = entry["run"]
    assert run["recovered"]["last_step"] == step
    if step == "commit":  # it died after verification: the change is confirmed
        assert entry["decision"] == "confirm" and entry["status"] == "committed"
        assert in_service(layout) >= TARGETS | BASELINE
        assert estate_checksums(layout) != before
    elif step in ("restart", "verify"):
        assert entry["decision"] == "roll-back" and entry["status"] == "rolled-back"
        assert_back_to_baseline(layout, before)
    else:
        assert entry["decision"] == "nothing-changed"
        assert entry["status"] == "failed-before-change"
        assert_back_to_baseline(layout, before)
    shown = cli("show", run_dir.name, "--output", "json", state_dir=state).json()
    steps = [item["name"] for item in shown["steps"]]
    assert "recover" in steps and shown["status"] == entry["status"]

    again = recover(state)  # idempotent: nothing is left open
    assert again.code == 0 and again.json()["runs"] == []
    assert not Path(load_site(inventory).lock_path).exists()  # the target lock is released


def test_a_second_controller_is_locked_out_and_recover_waits_for_a_live_holder(
    estate: Any, tmp_path: Path
) -> None:
    layout, inventory, state = estate
    before = estate_checksums(layout)
    site = load_site(inventory)
    known = known_runs(state)
    first = remediate_process(*APPLY, "-i", str(inventory), state=state)
    # frozen (not killed) during its preflight: alive, holding both locks
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fresh = [p for p in (state / "runs").glob("*") if p.name not in known]
        if fresh and ("step-started", "preflight") in journal_events(fresh[0]):
            first.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.005)
    (run_dir,) = [p for p in (state / "runs").glob("*") if p.name not in known]
    try:
        for other_state in (state, tmp_path / "controller-2"):  # one controller, then another
            second = cli(*APPLY, "--output", "json", state_dir=other_state, inventory=inventory)
            assert second.code == ExitStatus.LOCKED, second.err
            assert f"locked by run {run_dir.name} (change CHG-KILL)" in second.err
            assert f"pid {first.pid}" in second.err
            assert second.json()["error"]["reference"] == "site-locked"
        # the site's lock file on the Asterisk host names the holder for anyone on the host
        on_target = json.loads(Path(site.lock_path).read_text())
        assert on_target["run_id"] == run_dir.name and on_target["pid"] == first.pid
    finally:
        first.kill()
        first.communicate()

    # Dead now, at preflight. Its lock on the target is stale, but another controller must not take
    # it over: the dead run may have half-changed the site, and only its own journal can tell.
    third = cli(
        *APPLY, "--output", "json", state_dir=tmp_path / "controller-3", inventory=inventory
    )
    assert third.code == ExitStatus.LOCKED, third.err
    assert f"run {run_dir.name}" in third.err and "left site lab open" in third.err
    # nor on this controller, until it is recovered
    fourth = cli(*APPLY, state_dir=state, inventory=inventory)
    assert fourth.code == ExitStatus.LOCKED and "remediate recover" in fourth.err
    recovered = recover(state)
    assert recovered.code == 0, recovered.err
    assert recovered.json()["runs"][0]["decision"] == "nothing-changed"
    assert_back_to_baseline(layout, before)


def test_recover_is_refused_while_a_live_process_holds_the_lock_and_survives_its_own_death(
    estate: Any, tmp_path: Path
) -> None:
    layout, inventory, state = estate
    before = estate_checksums(layout)
    site = load_site(inventory)
    known = known_runs(state)
    process = remediate_process(*APPLY, "-i", str(inventory), state=state)
    run_dir = kill_when_started(process, state, "apply", known)

    # a live process (this test) takes the site's lock on the Asterisk host
    holder = SiteLock(
        StateDir.open(tmp_path / "controller-2"),
        site.name,
        run_id="20261205T235959Z-c0de",
        change_id="CHG-OTHER",
        ttl=timedelta(minutes=5),
        target=TargetLock(site.asterisk.ssh, site.lock_path),
    )
    holder.acquire()
    try:
        refused = recover(state)
    finally:
        holder.release()
    assert refused.code == ExitStatus.LOCKED, refused.out + refused.err
    assert "20261205T235959Z-c0de" in refused.err and "CHG-OTHER" in refused.err
    assert refused.json()["runs"][0]["status"] == "running"  # still open

    # a recover killed during its own rollback is finished by the next one
    dying = remediate_process("recover", "--yes", "--verify-timeout", "20s", state=state)
    kill_when_started(dying, state, "rollback", known_runs(state) - {run_dir.name})
    finished = recover(state)
    assert finished.code == 0, finished.out + finished.err
    (entry,) = finished.json()["runs"]
    assert entry["run_id"] == run_dir.name and entry["status"] == "rolled-back"
    assert_back_to_baseline(layout, before)
    events = journal_events(run_dir)
    assert events.count(("run-resumed", None)) == 3  # refused, killed, finished
    assert recover(state).json()["runs"] == []
    assert not os.path.exists(site.lock_path)
