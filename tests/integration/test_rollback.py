"""The transaction's failure paths on the lab (scenario untrusted-gateway, one lab for the module):
a fault switched on at a precise step after the backup ends in a rollback (exit 3) that leaves
every configuration object and file byte-identical and the baseline DNs in service; a rollback
that itself fails ends with exit 4 and a report naming each backup; `remediate rollback` finishes
it once the fault is gone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import (
    cli,
    estate_checksums,
    in_service,
    inventory_with_short_bounds,
)

from remediate import api, engine
from remediate.journal import RunStatus
from remediate.lab.layout import LabLayout, set_fault
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

BASELINE = {"1002", "1003"}


@pytest.fixture(scope="module")
def estate(
    lab_factory: Callable[[str], LabLayout], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    layout = lab_factory("untrusted-gateway")
    work = tmp_path_factory.mktemp("rollback")
    inventory = inventory_with_short_bounds(layout, work / "inventory")
    return layout, inventory, work / "state"


def _apply_with_fault(
    estate: Any, fault: str, at: str, *, recovers: bool = True
) -> engine.RunReport:
    """apply --dn 5001 --dn 5002 --fix auto, `fault` switched on when step `at` starts and, if
    the estate `recovers`, off when the rollback starts (as an operator's estate would)."""
    layout, inventory, state = estate
    steps: list[tuple[str, str]] = []

    def on_step(step: str, phase: str) -> None:
        steps.append((step, phase))
        if step == at and phase == "started":
            set_fault(layout, fault, True)
        if step == "rollback" and phase == "started" and recovers:
            set_fault(layout, fault, False)

    options = engine.Options(
        dns=("5001", "5002"),
        fix="auto",
        change_id="CHG-TEST",
        yes=True,
        verify_timeout=5.0,
        poll_interval=0.5,
    )
    try:
        report = api.apply(inventory, None, options, engine.Hooks(on_step=on_step), state_dir=state)
    finally:
        set_fault(layout, fault, False)
    assert (at, "started") in steps, report.message
    assert ("backup", "finished") in steps, "the fault must strike after the backup"
    return report


@pytest.mark.parametrize(
    ("fault", "at", "failing"),
    [
        ("gax-500", "apply", "apply"),  # GAX answers 500 while the fix's playbook runs
        ("service-hang", "restart", "restart"),  # the stop hangs in StopPending
        ("winrm-drop", "restart", "restart"),  # WinRM drops mid-run
    ],
)
def test_a_failure_after_the_backup_rolls_back(
    estate: Any, fault: str, at: str, failing: str
) -> None:
    layout = estate[0]
    before = estate_checksums(layout)
    assert in_service(layout) >= BASELINE
    report = _apply_with_fault(estate, fault, at)
    assert report.exit_status is ExitStatus.VERIFICATION_FAILED, report.message
    assert report.status is RunStatus.ROLLED_BACK
    assert estate_checksums(layout) == before
    assert in_service(layout) >= BASELINE
    assert "5001" not in in_service(layout)  # the seed's fault is back, as before the run
    assert report.restarted == (at == "restart")
    record = api.show(report.run_id, estate[2])
    outcomes = {step.name: step.outcome.value for step in record.steps}
    assert outcomes[failing] == "failed"
    assert outcomes["rollback"] == outcomes["rollback-verify"] == "finished"


def test_a_failed_rollback_says_what_to_restore_and_rollback_finishes_it(estate: Any) -> None:
    layout, inventory, state = estate
    before = estate_checksums(layout)
    report = _apply_with_fault(estate, "gax-500", "apply", recovers=False)
    assert report.exit_status is ExitStatus.ROLLBACK_FAILED
    assert report.status is RunStatus.ROLLBACK_FAILED
    (item,) = report.restore
    backup = Path(item["path"])
    assert backup.is_file() and backup.parent.name == "backups"
    assert item["target"] == "CfgSwitch/SIP_P" and item["state"].startswith("unknown")
    assert str(backup) in item["how"] and "CfgSwitch 'SIP_P'" in item["how"]
    # The text an operator reads names the object, the backup file and its checksum.
    shown = cli("show", report.run_id, state_dir=state)
    assert shown.code == 0
    assert "RESTORE BY HAND" in shown.out and str(backup) in shown.out
    assert "CfgSwitch/SIP_P" in shown.out
    # The fault gone, `remediate rollback RUN_ID` finishes the job.
    again = cli(
        "rollback",
        report.run_id,
        "--yes",
        "--change-id",
        "CHG-TEST",
        state_dir=state,
        inventory=inventory,
    )
    assert again.code == 0, again.out + again.err
    assert "ROLLED-BACK" in again.out
    assert estate_checksums(layout) == before
    assert in_service(layout) >= BASELINE


def test_verification_that_never_succeeds_rolls_back(estate: Any) -> None:
    """Last in the module: the registrar accepted the gateway while the fault was on, so after
    this test the log no longer shows the gateway as never trusted."""
    test_a_failure_after_the_backup_rolls_back(estate, "registrar-silent", "restart", "verify")
