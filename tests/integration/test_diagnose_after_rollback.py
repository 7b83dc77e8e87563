"""After a fix is applied and rolled back, the log shows the gateway's REGISTERs accepted, then
refused again: the diagnosis must name the cause (untrusted-gateway) and the fix again, so that
`apply --fix auto` needs no --force to put it back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_apply_support import cli, in_service

from remediate.lab.layout import LabLayout
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

DNS = ("--dn", "5001", "--dn", "5002")


def test_a_rolled_back_fix_is_diagnosed_and_applied_again_without_force(
    lab_factory: Callable[[str], LabLayout], tmp_path: Path
) -> None:
    layout = lab_factory("untrusted-gateway")
    inventory = layout.inventory_dir
    state = tmp_path / "state"
    apply = ("apply", *DNS, "--fix", "auto", "--yes", "--verify-timeout", "20s")

    first = cli(
        *apply, "--change-id", "CHG-1", "--output", "json", state_dir=state, inventory=inventory
    )
    assert first.code == ExitStatus.SUCCESS, first.err
    assert first.json()["fix"]["name"] == "trusted-gateway"  # type: ignore[index]
    run_id = str(first.json()["run_id"])
    back = cli(
        "rollback", run_id, "--yes", "--change-id", "CHG-2", state_dir=state, inventory=inventory
    )
    assert back.code == ExitStatus.SUCCESS, back.out + back.err
    assert not in_service(layout) & {"5001", "5002"}

    diagnosis = cli("diagnose", *DNS, "--output", "json", state_dir=state, inventory=inventory)
    assert diagnosis.code == ExitStatus.SUCCESS, diagnosis.err
    dns = diagnosis.json()["dns"]
    assert isinstance(dns, list)
    for item in dns:
        assert item["root_cause"]["code"] == "untrusted-gateway", item["root_cause"]
        assert item["root_cause"]["summary"].startswith("SIP Server no longer trusts ")
        assert item["recommendation"]["fix"] == "trusted-gateway"

    again = cli(
        *apply, "--change-id", "CHG-3", "--output", "json", state_dir=state, inventory=inventory
    )
    assert again.code == ExitStatus.SUCCESS, again.err
    assert again.json()["fix"]["name"] == "trusted-gateway"  # type: ignore[index]
    assert in_service(layout) >= {"1002", "1003", "5001", "5002"}
