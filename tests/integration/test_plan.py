"""`remediate plan` on the shared lab (the seed's fault): it changes nothing, reports the diff, and
refuses a fix that the live evidence contradicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_apply_support import cli, estate_checksums

from remediate.lab.layout import LabLayout
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab


def test_plan_shows_the_diff_and_changes_nothing(lab: LabLayout, tmp_path: Path) -> None:
    inventory = lab.inventory_dir / "hosts.yml"
    before = estate_checksums(lab)
    plan = cli(
        "plan", "--dn", "5002", "--detailed-exitcode", state_dir=tmp_path, inventory=inventory
    )
    assert plan.code == ExitStatus.PLAN_HAS_CHANGES, plan.err
    assert "fix trusted-gateway" in plan.out
    assert f"+ [sip] trusted-gateways = {lab.addresses.asterisk_host}" in plan.out
    assert "restart SIP Server once" in plan.out
    assert estate_checksums(lab) == before
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_plan_refuses_a_contradicted_fix(lab: LabLayout, tmp_path: Path) -> None:
    inventory = lab.inventory_dir / "hosts.yml"
    refused = cli(
        "plan", "--dn", "5002", "--fix", "dialplan", state_dir=tmp_path, inventory=inventory
    )
    assert refused.code == ExitStatus.PRECONDITION_FAILED
    assert "fix-contradicted" in refused.err and "untrusted-gateway" in refused.err
    assert "--force" in refused.err
