"""Trust by default, from the inventory down: WinRM over HTTPS with certificate validation, GAX
over HTTPS with validation, SSH host keys checked by every client (remediate's own and Ansible's).
A relaxation needs an explicit inventory setting, and every relaxation that is allowed leaves a
warning naming the host and the setting that allowed it; SSH host key checks cannot be relaxed.
(The lab-backed checks, through the CLI, are in tests/integration/test_trust_lab.py.)"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from remediate.errors import InputError
from remediate.genesys.gax import GaxClient
from remediate.inventory import load_site

GENESYS = os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81"
ASTERISK = os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54"


def _inventory(
    tmp_path: Path,
    genesys: dict[str, object] | None = None,
    asterisk: dict[str, object] | None = None,
    lab: bool = False,
) -> Path:
    genesys_vars: dict[str, object] = {
        "ansible_connection": "winrm",
        "ansible_host": GENESYS,
        "ansible_user": "remediate",
        "ansible_password": "pw",
        "ansible_winrm_ca_trust_path": "/etc/remediate/ca.pem",
        "genesys_log_dir": "D:\\gcti_logs\\SIP_P",
        "genesys_gax_url": f"https://{GENESYS}:8443/gax/api",
        "genesys_gax_user": "default",
        "genesys_gax_password": "gaxpw",
        **(genesys or {}),
    }
    asterisk_vars: dict[str, object] = {
        "ansible_connection": "ssh",
        "ansible_host": ASTERISK,
        "ansible_user": "remediate",
        "ansible_ssh_private_key_file": "/etc/remediate/id_ed25519",
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/etc/remediate/known_hosts",
        **(asterisk or {}),
    }
    document = {
        "all": {
            "children": {
                "site_x": {
                    "vars": {"remediate_lab": lab},
                    "children": {
                        "genesys": {"hosts": {"genesys-x": genesys_vars}},
                        "asterisk": {"hosts": {"asterisk-x": asterisk_vars}},
                    },
                }
            }
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_the_defaults_trust_nothing_unproven(tmp_path: Path) -> None:
    site = load_site(_inventory(tmp_path))
    winrm, gax, ssh = site.genesys.winrm, site.genesys.gax, site.asterisk.ssh
    assert (winrm.scheme, winrm.port, winrm.auth) == ("https", 5986, "ntlm")
    assert winrm.validate_certificate and winrm.ca_trust_path == "/etc/remediate/ca.pem"
    assert gax.url.startswith("https://") and gax.validate_certificate
    assert ssh.known_hosts_file == "/etc/remediate/known_hosts"
    assert not (winrm.allow_insecure or gax.allow_insecure or site.lab)


WINRM_RELAXATIONS = {
    "basic-over-http": {"ansible_port": 5985, "ansible_winrm_transport": "basic"},
    "no-certificate-validation": {"ansible_winrm_server_cert_validation": "ignore"},
}


@pytest.mark.parametrize("relaxation", WINRM_RELAXATIONS.keys())
def test_winrm_relaxations_are_refused_unless_set_and_then_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, relaxation: str
) -> None:
    values = WINRM_RELAXATIONS[relaxation]
    with pytest.raises(InputError) as caught:
        load_site(_inventory(tmp_path, values))
    assert caught.value.reference == "winrm-insecure"
    assert "remediate_allow_insecure_winrm" in caught.value.hint
    assert "pw" not in caught.value.message.split()
    for setting, lab in (("remediate_allow_insecure_winrm", False), ("remediate_lab", True)):
        caplog.clear()
        extra = {"remediate_allow_insecure_winrm": True} if not lab else {}
        with caplog.at_level(logging.WARNING):
            load_site(_inventory(tmp_path, {**values, **extra}, lab=lab))
        (record,) = [r for r in caplog.records if r.name == "remediate.transport.settings"]
        assert record.levelno == logging.WARNING
        assert "genesys-x" in record.getMessage() and setting in record.getMessage()


GAX_RELAXATIONS = {
    "plain-http": ({"genesys_gax_url": f"http://{GENESYS}:8080/gax/api"}, "plain HTTP"),
    "no-certificate-validation": (
        {"genesys_gax_cert_validation": "ignore"},
        "not validated",
    ),
}


@pytest.mark.parametrize("relaxation", GAX_RELAXATIONS.keys())
def test_gax_relaxations_are_refused_unless_set_and_then_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, relaxation: str
) -> None:
    values, words = GAX_RELAXATIONS[relaxation]
    site = load_site(_inventory(tmp_path, values))
    with pytest.raises(InputError) as caught:
        GaxClient(site.genesys.gax)
    assert caught.value.reference == "gax-insecure" and caught.value.hint
    for setting, lab in (("remediate_allow_insecure_gax", False), ("remediate_lab", True)):
        caplog.clear()
        extra = {"remediate_allow_insecure_gax": True} if not lab else {}
        site = load_site(_inventory(tmp_path, {**values, **extra}, lab=lab))
        with caplog.at_level(logging.WARNING):
            GaxClient(site.genesys.gax).close()
        (record,) = [r for r in caplog.records if r.name == "remediate.genesys.gax"]
        assert words in record.getMessage() and setting in record.getMessage()


def test_nothing_is_logged_when_nothing_is_relaxed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        site = load_site(_inventory(tmp_path))
        GaxClient(site.genesys.gax).close()
    assert not [r for r in caplog.records if r.name.startswith("remediate.")]


SSH_RELAXATIONS = {
    "common-args-no": {
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/k -o StrictHostKeyChecking=no"
    },
    "common-args-accept-new": {
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/k -oStrictHostKeyChecking=accept-new"
    },
    # OpenSSH takes the first value of an option given twice
    "common-args-first-wins": {
        "ansible_ssh_common_args": (
            "-o UserKnownHostsFile=/k -o StrictHostKeyChecking=no -o StrictHostKeyChecking=yes"
        )
    },
    "extra-args": {"ansible_ssh_extra_args": "-o StrictHostKeyChecking=no"},
    "ssh-args": {"ansible_ssh_args": "-o ControlMaster=auto -o 'StrictHostKeyChecking off'"},
    "ansible-host-key-checking": {"ansible_host_key_checking": False},
    "ansible-ssh-host-key-checking": {"ansible_ssh_host_key_checking": "no"},
    "unbalanced-quote": {"ansible_ssh_common_args": "-o UserKnownHostsFile='/k"},
    "no-known-hosts": {"ansible_ssh_common_args": "-o StrictHostKeyChecking=yes"},
}


@pytest.mark.parametrize("relaxation", SSH_RELAXATIONS.keys())
def test_ssh_host_key_checks_cannot_be_relaxed(tmp_path: Path, relaxation: str) -> None:
    values = SSH_RELAXATIONS[relaxation]
    for lab in (False, True):  # not even in the lab
        with pytest.raises(InputError) as caught:
            load_site(_inventory(tmp_path, asterisk=values, lab=lab))
        assert caught.value.reference in (
            "inventory-variable-invalid",
            "inventory-variable-missing",
        )
        assert "asterisk-x" in caught.value.message or "ssh" in caught.value.message
        assert caught.value.hint
