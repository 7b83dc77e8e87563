"""The playbooks as an operator or AWX runs them: plain `ansible-playbook -i <lab inventory>` from
the repository's root, against fresh labs. Each fix: `--check --diff` shows the change and changes
nothing; applying it changes the estate; a second run changes nothing; the rollback playbook puts
configuration objects and files back exactly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import lab_asterisk, ssh_control_dir

from remediate.lab import control
from remediate.lab.layout import LabLayout

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
WINRM_PASSWORD = "Lab-WinRM-7f3c9e!"
GAX_PASSWORD = "Lab-GAX-2b81d4!"
DNS = ["5001", "5002"]
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def control_dir() -> Iterator[Path]:
    with ssh_control_dir() as directory:
        yield directory


class Run:
    def __init__(self, completed: subprocess.CompletedProcess[str]) -> None:
        self.rc = completed.returncode
        self.output = completed.stdout + completed.stderr
        self.recap = {
            match["host"]: {key: int(match[key]) for key in ("ok", "changed", "failed")}
            for match in RECAP.finditer(completed.stdout)
        }

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]


Playbook = Callable[..., Run]


@pytest.fixture
def playbook(control_dir: Path) -> Playbook:
    def run(layout: LabLayout, name: str, extravars: dict[str, Any], *options: str) -> Run:
        environment = dict(
            os.environ,
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCAL_TEMP=str(control_dir / "tmp"),
        )
        environment.pop("ANSIBLE_CONFIG", None)  # the repository's ansible.cfg, as from a shell
        command = [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(layout.inventory_dir),
            f"playbooks/{name}",
            "--limit",
            "site_lab",
            "-e",
            json.dumps(extravars),
            *options,
        ]
        completed = subprocess.run(
            command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=180
        )
        return Run(completed)

    return run


def objects(layout: LabLayout) -> list[dict[str, Any]]:
    return list(json.loads(layout.cme_file.read_text())["objects"])


def named(layout: LabLayout, cfg_type: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objects(layout) if o["type"] == cfg_type and o["name"] == name), None)


def annex(obj: dict[str, Any] | None) -> dict[tuple[str, str], str]:
    assert obj is not None
    return {(p["section"], p["key"]): p["value"] for p in obj["userproperties"]["property"]}


def extensions(layout: LabLayout) -> Path:
    return layout.asterisk_etc / "extensions.conf"


def in_service(layout: LabLayout, dns: set[str], timeout: float = 15.0) -> set[str]:
    """The DNs of `dns` in service, waiting up to `timeout` for all of them."""
    deadline = time.monotonic() + timeout
    while True:
        now = set(control.status(layout).dns_in_service) & dns
        if now == dns or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def test_trusted_gateway_by_annex_then_restart_then_rollback(
    lab_factory: Callable[[str], LabLayout], playbook: Playbook, tmp_path: Path
) -> None:
    lab = lab_factory("untrusted-gateway")
    gateway = lab.addresses.asterisk_host
    cme_before = lab.cme_file.read_bytes()
    extensions_before = extensions(lab).read_bytes()
    switch_before = named(lab, "CfgSwitch", "SIP_P")
    assert in_service(lab, set(DNS), timeout=0) == set()  # the seed's fault
    extravars = {"remediate_dns": DNS, "remediate_run_id": "run-1", "remediate_change_id": "CHG1"}

    checked = playbook(lab, "trusted_gateway.yml", extravars, "--check", "--diff")
    assert checked.rc == 0, checked.output
    assert f"+trusted-gateways = {gateway}" in checked.output
    assert "+gateway-ip-auth-mode = enabled" in checked.output
    assert checked.changed("genesys-lab") == 1
    assert lab.cme_file.read_bytes() == cme_before
    assert extensions(lab).read_bytes() == extensions_before

    applied = playbook(lab, "trusted_gateway.yml", extravars, "-vvv")
    assert applied.rc == 0, applied.output
    assert applied.changed("genesys-lab") == 1
    assert "(run run-1)" in applied.output
    assert WINRM_PASSWORD not in applied.output and GAX_PASSWORD not in applied.output
    assert annex(named(lab, "CfgSwitch", "SIP_P")) == {
        ("TServer", "sip-port"): "5060",
        ("sip", "trusted-gateways"): gateway,
        ("sip", "gateway-ip-auth-mode"): "enabled",
    }
    again = playbook(lab, "trusted_gateway.yml", extravars)
    assert (again.rc, again.changed("genesys-lab")) == (0, 0), again.output
    assert in_service(lab, set(DNS), timeout=0) == set()  # SIP Server reads it at start

    restarted = playbook(lab, "restart.yml", extravars)
    assert restarted.rc == 0, restarted.output
    # The restart, then the REGISTERs sent through the gateway (delegated: counted on the site's
    # Genesys host).
    assert restarted.changed("genesys-lab") == 2
    assert control.status(lab).service_state == "Running"
    assert in_service(lab, {"1002", "1003", "5001", "5002"}) == {"1002", "1003", "5001", "5002"}

    rollback = {
        "remediate_rollback_objects": [
            {"cfg_type": "CfgSwitch", "name": "SIP_P", "before": switch_before}
        ],
        "remediate_run_id": "run-1",
    }
    rolled_back = playbook(lab, "rollback.yml", rollback)
    assert rolled_back.rc == 0, rolled_back.output
    assert rolled_back.changed("genesys-lab") == 1
    assert lab.cme_file.read_bytes() == cme_before  # an update keeps every byte
    assert extensions(lab).read_bytes() == extensions_before
    again = playbook(lab, "rollback.yml", rollback)
    assert (again.rc, again.changed("genesys-lab")) == (0, 0), again.output


def test_trusted_gateway_by_trunk_dn_through_site_yml_and_a_restart_that_fails(
    lab_factory: Callable[[str], LabLayout], playbook: Playbook
) -> None:
    lab = lab_factory("untrusted-gateway")
    contact = f"{lab.addresses.asterisk_host}:{lab.addresses.asterisk_sip_port}"
    objects_before = objects(lab)
    segments = sorted(lab.log_dir.glob("*.log"))
    extravars = {
        "remediate_fix": "trusted-gateway",
        "genesys_trusted_gateway_method": "trunk-dn",
        "remediate_dns": DNS,
    }

    checked = playbook(lab, "site.yml", extravars, "--check", "--diff")
    assert checked.rc == 0, checked.output
    assert f'"value": "{contact}"' in checked.output
    assert objects(lab) == objects_before
    assert sorted(lab.log_dir.glob("*.log")) == segments  # check mode restarted nothing

    applied = playbook(lab, "trusted_gateway.yml", extravars)
    assert applied.rc == 0, applied.output
    trunk = named(lab, "CfgDN", "AsteriskTrunk_webRTC")
    assert trunk is not None and trunk["dntype"] == "CFGTrunk"
    assert annex(trunk) == {("TServer", "contact"): contact}
    assert named(lab, "CfgSwitch", "SIP_P") == objects_before[0]  # the annex is not touched
    again = playbook(lab, "trusted_gateway.yml", extravars)
    assert (again.rc, again.changed("genesys-lab")) == (0, 0), again.output

    control.fault(lab, "service-1053", True)
    try:
        failed = playbook(
            lab, "restart.yml", {"remediate_dns": DNS, "genesys_service_start_timeout": 3}
        )
    finally:
        control.fault(lab, "service-1053", False)
    assert failed.rc != 0
    assert "service-control-failed" in failed.output
    assert "Send a REGISTER" not in failed.output  # the playbook stopped at the failed restart

    rollback = {
        "remediate_rollback_objects": [
            {"cfg_type": "CfgDN", "name": "AsteriskTrunk_webRTC", "before": None}
        ]
    }
    rolled_back = playbook(lab, "rollback.yml", rollback)
    assert rolled_back.rc == 0, rolled_back.output
    assert objects(lab) == objects_before

    refused = playbook(lab, "site.yml", {"remediate_fix": "reboot-everything"})
    assert refused.rc != 0
    assert "remediate_fix must be trusted-gateway, trunk or dialplan" in refused.output


def without_block(text: bytes) -> bytes:
    return re.sub(
        rb"; BEGIN remediate managed: from-genesys\n.*?; END remediate managed: from-genesys\n",
        b"",
        text,
        flags=re.DOTALL,
    )


def test_dialplan_adds_the_reverse_route_proves_it_and_rolls_back(
    lab_factory: Callable[[str], LabLayout], playbook: Playbook, tmp_path: Path
) -> None:
    lab = lab_factory("trunk-no-reverse-route")
    before = extensions(lab).read_bytes()
    saved = tmp_path / "extensions.conf.before"
    saved.write_bytes(before)
    included = (lab.asterisk_etc / "extensions-sip-endpoint.conf").read_bytes()
    assert b"[from-genesys]" in included  # a context of that name exists already, without 5XXX
    assert "There is no existence" in lab_asterisk(lab, "dialplan show 5001@from-genesys")
    extravars = {"remediate_dns": DNS}

    checked = playbook(lab, "dialplan.yml", extravars, "--check", "--diff")
    assert checked.rc == 0, checked.output
    assert "+; BEGIN remediate managed: from-genesys" in checked.output
    assert "+exten => _5XXX,1,NoOp(Call from Genesys to ${EXTEN})" in checked.output
    assert extensions(lab).read_bytes() == before
    assert "There is no existence" in lab_asterisk(lab, "dialplan show 5001@from-genesys")

    applied = playbook(lab, "dialplan.yml", extravars)
    assert applied.rc == 0, applied.output
    after = extensions(lab).read_bytes()
    assert after.startswith(before)
    assert after[len(before) :] == (
        b"; BEGIN remediate managed: from-genesys\n"
        b"[from-genesys]\n"
        b"exten => _5XXX,1,NoOp(Call from Genesys to ${EXTEN})\n"
        b"same => n,Dial(PJSIP/${EXTEN})\n"
        b"; END remediate managed: from-genesys\n"
    )
    assert (lab.asterisk_etc / "extensions-sip-endpoint.conf").read_bytes() == included
    backups = list(lab.asterisk_etc.glob("extensions.conf.*~"))
    assert [backup.read_bytes() for backup in backups] == [before]
    for dn in DNS:
        shown = lab_asterisk(lab, f"dialplan show {dn}@from-genesys")
        assert "'_5XXX' =>" in shown and "There is no existence" not in shown
    again = playbook(lab, "dialplan.yml", extravars)
    assert (again.rc, again.changed("asterisk-lab")) == (0, 0), again.output

    unroutable = playbook(lab, "dialplan.yml", {"remediate_dns": ["7001"]})
    assert unroutable.rc != 0
    assert "no pattern of [from-genesys] routes 7001" in unroutable.output
    assert extensions(lab).read_bytes() == after

    rollback = {"remediate_rollback_files": [{"path": str(extensions(lab)), "backup": str(saved)}]}
    rolled_back = playbook(lab, "rollback.yml", rollback)
    assert rolled_back.rc == 0, rolled_back.output
    assert extensions(lab).read_bytes() == before
    assert "There is no existence" in lab_asterisk(lab, "dialplan show 5001@from-genesys")


def test_trunk_creates_the_trunk_dn_and_the_route_back(
    lab_factory: Callable[[str], LabLayout], playbook: Playbook, tmp_path: Path
) -> None:
    lab = lab_factory("untrusted-gateway")
    objects_before = objects(lab)
    before = extensions(lab).read_bytes()
    saved = tmp_path / "extensions.conf.before"
    saved.write_bytes(before)
    extravars = {"remediate_dns": DNS, "genesys_trunk_oos_check": 45}

    applied = playbook(lab, "trunk.yml", extravars)
    assert applied.rc == 0, applied.output
    assert (applied.changed("genesys-lab"), applied.changed("asterisk-lab")) == (1, 2)
    assert annex(named(lab, "CfgDN", "AsteriskTrunk_webRTC")) == {
        ("TServer", "contact"): f"{lab.addresses.asterisk_host}:5060",
        ("TServer", "prefix"): "50",
        ("TServer", "oos-check"): "45",
    }
    assert "'_5XXX' =>" in lab_asterisk(lab, "dialplan show 5002@from-genesys")

    rollback = {
        "remediate_rollback_objects": [
            {"cfg_type": "CfgDN", "name": "AsteriskTrunk_webRTC", "before": None}
        ],
        "remediate_rollback_files": [{"path": str(extensions(lab)), "backup": str(saved)}],
    }
    rolled_back = playbook(lab, "rollback.yml", rollback)
    assert rolled_back.rc == 0, rolled_back.output
    assert objects(lab) == objects_before
    assert extensions(lab).read_bytes() == before
