"""The lab's inventories work with Ansible itself against the running lab: the one `lab up` writes
(literal values) and the committed inventories/lab (templated, pointed at this run's addresses)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from remediate.lab.layout import LabLayout

pytestmark = pytest.mark.lab

REPOSITORY = Path(__file__).resolve().parents[2]
ANSIBLE = Path(sys.executable).parent / "ansible"


def run_ansible(arguments: list[str], tmp_path: Path, lab: LabLayout) -> str:
    """Run `ansible` (ad hoc), check it succeeded, and return its standard output."""
    environment = {
        **os.environ,
        "REMEDIATE_LAB_DIR": str(lab.root),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"),
        "ANSIBLE_REMOTE_TMP": str(tmp_path / "remote"),
        # No ControlPersist master left running after the test.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_NOCOLOR": "1",
    }
    completed = subprocess.run(
        [str(ANSIBLE), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def ping_result(output: str, host: str) -> dict[str, object]:
    """The JSON of `<host> | SUCCESS => {...}`, as the default ad hoc output prints it."""
    match = re.search(rf"^{re.escape(host)} \| SUCCESS => (\{{.*?^\}})$", output, re.M | re.S)
    assert match is not None, output
    result: dict[str, object] = json.loads(match.group(1))
    return result


def test_ansible_pings_the_asterisk_host_through_the_inventory_lab_up_wrote(
    lab: LabLayout, tmp_path: Path
) -> None:
    inventory = lab.inventory_dir / "hosts.yml"
    output = run_ansible(["-i", str(inventory), "asterisk", "-m", "ping"], tmp_path, lab)
    assert ping_result(output, "asterisk-lab")["ping"] == "pong"


def test_ansible_pings_the_asterisk_host_through_the_committed_inventory(
    lab: LabLayout, tmp_path: Path
) -> None:
    """inventories/lab as committed; only the address is this run's (tests use their own)."""
    output = run_ansible(
        [
            "-i",
            str(REPOSITORY / "inventories" / "lab"),
            "asterisk",
            "-m",
            "ping",
            "-e",
            f"ansible_host={lab.addresses.asterisk_host}",
        ],
        tmp_path,
        lab,
    )
    assert ping_result(output, "asterisk-lab")["ping"] == "pong"


def test_ansible_raw_reaches_the_genesys_host_over_winrm_https_with_ntlm(
    lab: LabLayout, tmp_path: Path
) -> None:
    """The inventory's WinRM settings (HTTPS, NTLM, the lab CA validated, the lab's account)."""
    inventory = lab.inventory_dir / "hosts.yml"
    output = run_ansible(
        ["-i", str(inventory), "genesys", "-m", "raw", "-a", "(Get-Service TSrvSIP64).Status"],
        tmp_path,
        lab,
    )
    assert output.splitlines()[:2] == ["genesys-lab | CHANGED | rc=0 >>", "Running"], output
