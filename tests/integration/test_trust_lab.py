"""Trust by default against the lab, through the commands an operator runs: a CA that did not
sign the server's certificate stops WinRM and GAX; an unknown or changed SSH host key stops
diagnose, verify and apply (before anything changes); Basic over plain HTTP is refused outside
the lab and, where the inventory allows it, the operator sees a warning on stderr.
(The private state directory and journal files are checked on every file of a whole run in
test_secrets.py.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remediate.cli import main
from remediate.env import Environment
from remediate.lab.layout import LabLayout

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def _inventory(lab: LabLayout, directory: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The lab's inventory with `change` applied to its site group (`vars`, `children`)."""
    document = yaml.safe_load((lab.inventory_dir / "hosts.yml").read_text(encoding="utf-8"))
    change(document["all"]["children"]["site_lab"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump(document, width=10000), encoding="utf-8")
    return directory


def _genesys(site: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = site["children"]["genesys"]["hosts"]["genesys-lab"]
    return variables


def _asterisk(site: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = site["children"]["asterisk"]["hosts"]["asterisk-lab"]
    return variables


def _cli(*args: str, state: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO(""),
        stdout=out,
        stderr=err,
        environ={"REMEDIATE_STATE_DIR": str(state)},
    )
    return main(list(args), env), out.getvalue(), err.getvalue()


def _estate(lab: LabLayout) -> tuple[bytes, bytes]:
    return lab.cme_file.read_bytes(), (lab.asterisk_etc / "extensions.conf").read_bytes()


@pytest.mark.parametrize(
    ("variable", "reference"),
    [
        ("ansible_winrm_ca_trust_path", "winrm-tls-failed"),
        ("genesys_gax_ca_path", "gax-tls-failed"),
    ],
)
def test_a_ca_that_did_not_sign_the_certificate_is_refused(
    lab: LabLayout, tmp_path: Path, variable: str, reference: str
) -> None:
    """The public CAs (certifi's bundle) did not sign the lab's certificate: validation is on."""

    def other_ca(site: dict[str, Any]) -> None:
        _genesys(site)[variable] = certifi.where()

    inventory = _inventory(lab, tmp_path / "inventory", other_ca)
    code, _, err = _cli("diagnose", "--dn", "5002", "-i", str(inventory), state=tmp_path)
    assert code == 7, err
    assert err.startswith(f"error: {reference}: ") and "\nhint: " in err


def _known_hosts(lab: LabLayout, path: Path, kind: str) -> Callable[[dict[str, Any]], None]:
    if kind == "unknown":
        path.write_text("", encoding="utf-8")
    else:
        other_key = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        entry = f"[{lab.addresses.asterisk_host}]:{lab.addresses.ssh_port}"
        path.write_text(f"{entry} {other_key.decode()}\n", encoding="utf-8")

    def point_at_it(site: dict[str, Any]) -> None:
        _asterisk(site)["ansible_ssh_common_args"] = (
            f"-o UserKnownHostsFile={path} -o StrictHostKeyChecking=yes"
        )

    return point_at_it


@pytest.mark.parametrize("kind", ["unknown", "changed"])
def test_an_unknown_or_changed_host_key_stops_every_command(
    lab: LabLayout, tmp_path: Path, kind: str
) -> None:
    change = _known_hosts(lab, tmp_path / "known_hosts", kind)
    inventory = str(_inventory(lab, tmp_path / "inventory", change))
    before = _estate(lab)
    state = tmp_path / "state"
    code, _, err = _cli("diagnose", "--dn", "5002", "-i", inventory, state=state)
    assert code == 7 and err.startswith(f"error: ssh-host-key-{kind}: "), err
    code, out, err = _cli(
        "verify", "--dn", "5002", "-i", inventory, "--output", "json", state=state
    )
    assert code == 7, out + err
    code, out, err = _cli(
        "apply", "--dn", "5002", "--yes", "--change-id", "CHG-TRUST", "-i", inventory,
        "--output", "json", state=state,
    )  # fmt: skip
    assert code == 7, out + err
    report = json.loads(out)
    assert report["changes"] == [] and f"ssh-host-key-{kind}" in json.dumps(report["error"])
    assert _estate(lab) == before


def _basic_over_http(lab: LabLayout, *, is_lab: bool) -> Callable[[dict[str, Any]], None]:
    def change(site: dict[str, Any]) -> None:
        site["vars"]["remediate_lab"] = is_lab
        genesys = _genesys(site)
        genesys.update(
            ansible_port=lab.addresses.winrm_http_port,
            ansible_winrm_scheme="http",
            ansible_winrm_transport="basic",
        )

    return change


def test_basic_over_http_is_refused_outside_the_lab(lab: LabLayout, tmp_path: Path) -> None:
    inventory = _inventory(lab, tmp_path / "inventory", _basic_over_http(lab, is_lab=False))
    before = _estate(lab)
    for command in (["diagnose"], ["plan"], ["apply", "--yes", "--change-id", "CHG-TRUST"]):
        code, out, err = _cli(*command, "--dn", "5002", "-i", str(inventory), state=tmp_path)
        assert code == 1 and out == "", err
        assert err.startswith("error: winrm-insecure: ") and "remediate_allow_insecure_winrm" in err
        assert lab.credentials.winrm_password not in err
    assert _estate(lab) == before


def test_an_allowed_relaxation_is_shown_to_the_operator(lab: LabLayout, tmp_path: Path) -> None:
    """The lab may use Basic over HTTP; the operator still reads that it is insecure."""
    inventory = _inventory(lab, tmp_path / "inventory", _basic_over_http(lab, is_lab=True))
    completed = subprocess.run(
        [sys.executable, "-m", "remediate", "diagnose", "--dn", "5002", "-i", str(inventory)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "REMEDIATE_STATE_DIR": str(tmp_path / "state")},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert (
        "WinRM to genesys-lab is insecure (Basic authentication over plain HTTP sends the "
        "password in clear): allowed by remediate_lab"
    ) in completed.stderr
    assert lab.credentials.winrm_password not in completed.stderr + completed.stdout
