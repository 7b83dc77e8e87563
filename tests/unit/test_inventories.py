"""The committed inventories, loaded with Ansible's own inventory machinery, as consumers do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import EncryptedString, VaultSecret, VaultSecretsContext
from ansible.template import Templar
from ansible.vars.manager import VariableManager

from remediate.lab.control import lab_inventory
from remediate.lab.layout import LabCredentials, LabLayout

REPOSITORY = Path(__file__).resolve().parents[2]
LAB_INVENTORY = REPOSITORY / "inventories" / "lab"
EXAMPLE_INVENTORY = REPOSITORY / "inventories" / "example"
EXAMPLE_VAULT_PASSWORD = b"example-only"
VARIABLE_PREFIXES = ("ansible_", "genesys_", "asterisk_", "remediate_")


class Inventory:
    def __init__(self, source: Path, vault_password: bytes | None = None) -> None:
        self.loader = DataLoader()
        if vault_password is not None:
            self.loader.set_vault_secrets([("default", VaultSecret(vault_password))])
        self.manager = InventoryManager(loader=self.loader, sources=[str(source)])
        self.variables = VariableManager(loader=self.loader, inventory=self.manager)

    def hosts(self, group: str) -> set[str]:
        return {host.name for host in self.manager.groups[group].get_hosts()}

    def host_vars(self, name: str) -> dict[str, Any]:
        """The host's variables, templated as a playbook would see them."""
        raw = self.variables.get_vars(host=self.manager.get_host(name), include_hostvars=False)
        templar = Templar(loader=self.loader, variables=raw)
        return {key: templar.template(value) for key, value in raw.items()}


def defined_names(source: Path) -> set[str]:
    """Every variable name the inventory's own files define (group_vars, host_vars)."""
    names: set[str] = set()
    for path in sorted(source.glob("*_vars/*.yml")):
        names |= set(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return names


@pytest.fixture
def lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REMEDIATE_LAB_DIR", str(tmp_path))
    monkeypatch.setenv("USER", "labuser")
    return tmp_path


def test_lab_inventory_groups_hold_one_genesys_and_one_asterisk_host() -> None:
    inventory = Inventory(LAB_INVENTORY)
    assert inventory.hosts("site_lab") == {"genesys-lab", "asterisk-lab"}
    assert inventory.hosts("genesys") == {"genesys-lab"}
    assert inventory.hosts("asterisk") == {"asterisk-lab"}


def test_lab_inventory_credentials_are_the_labs_own(lab_dir: Path) -> None:
    credentials = LabCredentials()
    genesys = Inventory(LAB_INVENTORY).host_vars("genesys-lab")
    assert genesys["ansible_user"] == credentials.winrm_user
    assert genesys["ansible_password"] == credentials.winrm_password
    assert genesys["genesys_gax_user"] == credentials.gax_user
    assert genesys["genesys_gax_password"] == credentials.gax_password


def test_lab_inventory_connection_settings(lab_dir: Path) -> None:
    inventory = Inventory(LAB_INVENTORY)
    genesys = inventory.host_vars("genesys-lab")
    assert genesys["ansible_connection"] == "winrm"
    assert (genesys["ansible_host"], genesys["ansible_port"]) == ("127.0.0.81", 5986)
    assert genesys["ansible_winrm_transport"] == "ntlm"
    assert genesys["ansible_winrm_server_cert_validation"] == "validate"
    assert genesys["ansible_winrm_ca_trust_path"] == str(lab_dir / "tls" / "ca.pem")
    assert genesys["genesys_gax_url"] == "https://127.0.0.81:8443/gax/api"
    assert genesys["genesys_log_dir"] == "D:\\gcti_logs\\SIP_P"
    assert genesys["remediate_lab"] is True

    asterisk = inventory.host_vars("asterisk-lab")
    assert asterisk["ansible_connection"] == "ssh"
    assert (asterisk["ansible_host"], asterisk["ansible_port"]) == ("127.0.0.54", 2222)
    assert asterisk["ansible_user"] == "labuser"
    assert asterisk["ansible_ssh_private_key_file"] == str(lab_dir / "ssh" / "id_ed25519")
    assert asterisk["ansible_ssh_common_args"] == (
        f"-o UserKnownHostsFile={lab_dir / 'ssh' / 'known_hosts'} -o StrictHostKeyChecking=yes"
    )
    assert asterisk["asterisk_pjsip_conf"] == str(lab_dir / "asterisk" / "etc" / "pjsip.conf")
    assert asterisk["asterisk_dn_registrations"] == {
        "5001": "genesys_reg_5001",
        "5002": "genesys_reg_5002",
    }


def test_lab_dir_defaults_to_dot_lab_at_the_repository_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REMEDIATE_LAB_DIR", raising=False)
    genesys = Inventory(LAB_INVENTORY).host_vars("genesys-lab")
    assert Path(genesys["remediate_lab_dir"]).resolve() == REPOSITORY / ".lab"


def test_inventory_written_by_lab_up_matches_the_committed_one(lab_dir: Path) -> None:
    """`lab up` writes literal values for testinfra; they must be what the committed one renders."""
    committed = Inventory(LAB_INVENTORY)
    written = lab_inventory(LabLayout(lab_dir), user="labuser")
    site = written["all"]["children"]["site_lab"]
    names = defined_names(LAB_INVENTORY)
    for group in ("genesys", "asterisk"):
        ((host, literal_vars),) = site["children"][group]["hosts"].items()
        literal_vars = {**site["vars"], **literal_vars}
        rendered = committed.host_vars(host)
        inventory_names = {name for name in rendered if name in names}
        assert set(literal_vars) == inventory_names, host
        assert {name: rendered[name] for name in inventory_names} == literal_vars, host


def test_example_inventory_has_two_sites_of_one_genesys_and_one_asterisk_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        VaultSecretsContext,
        "_current",
        VaultSecretsContext([("default", VaultSecret(EXAMPLE_VAULT_PASSWORD))]),
    )
    inventory = Inventory(EXAMPLE_INVENTORY, EXAMPLE_VAULT_PASSWORD)
    assert inventory.hosts("site_uat") == {"genuat02", "asterisk-uat"}
    assert inventory.hosts("site_prod") == {"genprd01", "asterisk-prd"}
    assert inventory.hosts("genesys") == {"genuat02", "genprd01"}
    assert inventory.hosts("asterisk") == {"asterisk-uat", "asterisk-prd"}
    # The seed's addresses, for documentation: nothing connects to them.
    assert inventory.host_vars("genuat02")["ansible_host"] == "192.168.210.81"
    assert inventory.host_vars("asterisk-uat")["ansible_host"] == "192.168.210.54"
    assert inventory.host_vars("genuat02")["remediate_lab"] is False


@pytest.mark.parametrize(
    ("host", "secrets"),
    [
        ("genuat02", ("ansible_password", "genesys_gax_password")),
        ("genprd01", ("ansible_password", "genesys_gax_password")),
        ("asterisk-uat", ("ansible_become_password",)),
        ("asterisk-prd", ("ansible_become_password",)),
    ],
)
def test_example_inventory_secrets_are_vaulted_and_decrypt(
    host: str, secrets: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        VaultSecretsContext,
        "_current",
        VaultSecretsContext([("default", VaultSecret(EXAMPLE_VAULT_PASSWORD))]),
    )
    inventory = Inventory(EXAMPLE_INVENTORY, EXAMPLE_VAULT_PASSWORD)
    raw = inventory.variables.get_vars(
        host=inventory.manager.get_host(host), include_hostvars=False
    )
    rendered = inventory.host_vars(host)
    for name in secrets:
        assert isinstance(raw[name], EncryptedString), f"{host}: {name} is not vault-encrypted"
        assert rendered[name].startswith("CHANGE-ME-"), (host, name)
        assert host in rendered[name]
    host_file = (EXAMPLE_INVENTORY / "host_vars" / f"{host}.yml").read_text(encoding="utf-8")
    assert "CHANGE-ME" not in host_file


def test_example_inventory_variables_are_all_documented() -> None:
    """Every variable of the example sits in a paragraph that opens with a comment."""
    for path in sorted(EXAMPLE_INVENTORY.glob("*_vars/*.yml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not line or line[0].isspace() or line.startswith("#"):
                continue
            paragraph = []
            for above in reversed(lines[:number]):
                if not above.strip():
                    break
                paragraph.append(above)
            assert any(above.startswith("#") for above in paragraph), (
                f"{path.name}:{number + 1}: {line.split(':')[0]} has no comment"
            )
