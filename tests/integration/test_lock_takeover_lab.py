"""A run that ends while the Asterisk host is unreachable cannot remove its lock there: the next
run of the site, once SSH is back, takes that lock over (its record says the run ended) instead of
being refused for an hour. The controller is one long-lived process here (the API, as a fleet or
the fault matrix runs it), so the lock's holder process is alive all along."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from test_apply_support import cli, estate_checksums, in_service, inventory_with_short_bounds

from remediate import api, engine
from remediate.inventory import load_site
from remediate.journal import RunStatus
from remediate.lab.layout import LabLayout, set_fault
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

TARGETS = ("5001", "5002")


def test_a_lock_left_by_a_run_ssh_dropped_is_taken_over_by_the_next_run(
    lab_factory: Callable[[str], LabLayout], tmp_path: Path
) -> None:
    layout = lab_factory("untrusted-gateway")
    inventory = inventory_with_short_bounds(layout, tmp_path / "inventory")
    (inventory / "group_vars" / "asterisk.yml").write_text(
        yaml.safe_dump({"ansible_ssh_timeout": 3, "remediate_ssh_command_timeout": 20})
    )
    lock_file = Path(load_site(inventory).lock_path)  # in the lab's own directory
    state = tmp_path / "state"
    before = estate_checksums(layout)

    def drop_ssh_at_preflight(step: str, phase: str) -> None:
        if step == "preflight" and phase == "started":
            set_fault(layout, "ssh-drop", True)

    options = engine.Options(
        dns=TARGETS,
        fix="trusted-gateway",
        change_id="CHG-DROP",
        yes=True,
        verify_timeout=8.0,
        poll_interval=0.5,
        playbook_timeout=60.0,
    )
    try:
        dropped = api.apply(
            inventory, None, options, engine.Hooks(on_step=drop_ssh_at_preflight), state_dir=state
        )
    finally:
        set_fault(layout, "ssh-drop", False)

    assert dropped.exit_status == ExitStatus.PRECONDITION_FAILED == 7, dropped.message
    assert dropped.status is RunStatus.FAILED_BEFORE_CHANGE
    assert estate_checksums(layout) == before
    assert json.loads(lock_file.read_text())["run_id"] == dropped.run_id  # left on the target
    assert dropped.lock is not None
    warning = dropped.lock["release_warning"]
    assert f"could not remove the lock file {lock_file} on asterisk-lab" in warning
    assert "the next run of site lab takes it over" in warning

    # SSH back: the next apply of this controller takes the lock over and fixes the site.
    fixed = cli(
        "apply",
        *(arg for dn in TARGETS for arg in ("--dn", dn)),
        "--fix",
        "trusted-gateway",
        "--change-id",
        "CHG-NEXT",
        "--yes",
        "--verify-timeout",
        "8s",
        state_dir=state,
        inventory=inventory,
    )
    assert fixed.code == ExitStatus.SUCCESS, fixed.out + fixed.err
    assert f"took over the stale lock file {lock_file} on asterisk-lab" in " ".join(
        fixed.out.split()
    )
    assert in_service(layout) >= {"1002", "1003", *TARGETS}
    assert not lock_file.exists()  # released by the run that took it over

    (record,) = (run for run in api.history(state_dir=state) if run.run_id != dropped.run_id)
    assert record.status is RunStatus.COMMITTED
    (takeover,) = record.result["lock"]["takeovers"]
    assert takeover["previous"]["run_id"] == dropped.run_id
    assert takeover["reason"].startswith(
        f"its run ended (failed-before-change, as its record in {state} says)"
    )
