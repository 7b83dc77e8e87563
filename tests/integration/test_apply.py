"""End to end on the lab, one test per fix, through the CLI as an unattended job runs it: the
seed's fault present, `plan` then `apply` succeed, the log shows each target DN's accepted
registration after the restart, 1002/1003 still in service, the plan is exactly what apply
changed, and re-running apply changes nothing and exits 0."""

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
    log_since_last_start,
)

from remediate.lab import control
from remediate.lab.layout import LabLayout
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

BASELINE = {"1002", "1003"}
TARGETS = ("5001", "5002")
DN_ARGS = ["--dn", "5001", "--dn", "5002"]


def _plan_and_apply(
    layout: LabLayout, tmp_path: Path, fix: str
) -> tuple[dict[str, Any], dict[str, Any], Path, Path]:
    inventory = inventory_with_short_bounds(layout, tmp_path / "inventory")
    state = tmp_path / "state"
    plan = cli(
        "plan", *DN_ARGS, "--fix", fix, "--detailed-exitcode", "--output", "json",
        state_dir=state, inventory=inventory,
    )  # fmt: skip
    assert plan.code == ExitStatus.PLAN_HAS_CHANGES, plan.err
    applied = cli(
        "apply", *DN_ARGS, "--fix", fix, "--yes", "--change-id", "CHG-E2E", "--output", "json",
        state_dir=state, inventory=inventory,
    )  # fmt: skip
    assert applied.code == 0, applied.err
    report = applied.json()
    assert report["schema_version"] == 1 and report["status"] == "committed"
    # the plan reports exactly what apply then changed
    assert report["changes"] == plan.json()["changes"]
    assert set(report["in_service"]) >= set(TARGETS) | BASELINE
    assert in_service(layout) >= set(TARGETS) | BASELINE
    return plan.json(), report, inventory, state


def _rerun_changes_nothing(
    layout: LabLayout, inventory: Path, state: Path, fix: str, *, replan: bool = True
) -> None:
    before = estate_checksums(layout)
    again = cli(
        "apply", *DN_ARGS, "--fix", fix, "--yes", "--change-id", "CHG-E2E",
        state_dir=state, inventory=inventory,
    )  # fmt: skip
    assert again.code == 0, again.err
    assert "NO-CHANGE" in again.out and "nothing to do" in again.out
    assert estate_checksums(layout) == before
    if not replan:
        return
    plan = cli(
        "plan", *DN_ARGS, "--fix", fix, "--detailed-exitcode",
        state_dir=state, inventory=inventory,
    )  # fmt: skip
    assert plan.code == 0 and "nothing to do" in plan.out


def _accepted_after_restart(layout: LabLayout) -> None:
    log = log_since_last_start(layout)  # the segment SIP Server opened when it restarted
    for dn in TARGETS:
        assert f"REGISTRAR: ACTIVE:{dn}" in log
    assert "DN_IN_SERVICE" in log


def test_trusted_gateway(lab_factory: Callable[[str], LabLayout], tmp_path: Path) -> None:
    layout = lab_factory("untrusted-gateway")
    assert not in_service(layout) & set(TARGETS)  # the seed's fault
    before = estate_checksums(layout)
    plan, report, inventory, state = _plan_and_apply(layout, tmp_path, "auto")
    assert plan["fix"]["name"] == "trusted-gateway"
    (change,) = report["changes"]
    assert change["target"] == "CfgSwitch/SIP_P"
    assert f"+ [sip] trusted-gateways = {layout.addresses.asterisk_host}" in change["lines"]
    assert report["restarted"] is True
    _accepted_after_restart(layout)
    _rerun_changes_nothing(layout, inventory, state, "auto")
    # history has both runs; show tells the committed one step by step
    runs = cli("history", "--output", "json", state_dir=state).json()["runs"]
    assert [run["status"] for run in runs[:2]] == ["no-change", "committed"]
    shown = cli("show", str(report["run_id"]), state_dir=state)
    assert shown.code == 0 and "COMMITTED" in shown.out and "CfgSwitch/SIP_P" in shown.out
    for step in ("guards", "preflight", "plan", "backup", "apply", "restart", "verify", "commit"):
        assert f"    {step} " in shown.out
    # `remediate rollback` of the committed run puts the estate back as it was before it
    rolled = cli(
        "rollback", str(report["run_id"]), "--yes", "--change-id", "CHG-BACK",
        state_dir=state, inventory=inventory,
    )  # fmt: skip
    assert rolled.code == 0, rolled.out + rolled.err
    assert estate_checksums(layout) == before
    assert in_service(layout) >= BASELINE and not in_service(layout) & set(TARGETS)


def test_trunk(lab_factory: Callable[[str], LabLayout], tmp_path: Path) -> None:
    layout = lab_factory("untrusted-gateway")
    assert not in_service(layout) & set(TARGETS)
    _, report, inventory, state = _plan_and_apply(layout, tmp_path, "trunk")
    targets = [change["target"] for change in report["changes"]]
    assert targets == ["CfgDN/AsteriskTrunk_webRTC", str(layout.asterisk_etc / "extensions.conf")]
    assert report["changes"][0]["action"] == "create"
    trunk = control.status(layout).trunks
    assert any(str(layout.addresses.asterisk_host) in str(value) for value in trunk.values())
    _accepted_after_restart(layout)
    _rerun_changes_nothing(layout, inventory, state, "trunk", replan=False)


def test_dialplan_on_a_trunk_without_reverse_route(
    lab_factory: Callable[[str], LabLayout], tmp_path: Path
) -> None:
    layout = lab_factory("trunk-no-reverse-route")
    extensions = layout.asterisk_etc / "extensions.conf"
    original = extensions.read_bytes()
    plan, report, inventory, state = _plan_and_apply(layout, tmp_path, "auto")
    assert plan["fix"]["name"] == "dialplan" and report["restarted"] is False
    (change,) = report["changes"]
    assert change["target"] == str(extensions)
    assert "+[from-genesys]" in change["lines"]
    # every line the fix does not manage is kept byte for byte, the block is appended
    assert extensions.read_bytes().startswith(original)
    assert b"; BEGIN remediate managed: from-genesys" in extensions.read_bytes()
    _rerun_changes_nothing(layout, inventory, state, "auto")
