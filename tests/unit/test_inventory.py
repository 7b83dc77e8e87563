"""Inventory loading: Ansible's machinery, site selection, templating, vault, validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remediate.errors import InputError
from remediate.inventory import load_site

REPO = Path(__file__).resolve().parents[2]
VAULT = REPO / ".venv" / "bin" / "ansible-vault"


def _genesys(**overrides: object) -> dict[str, object]:
    host: dict[str, object] = {
        "ansible_connection": "winrm",
        "ansible_host": "127.0.6.81",
        "ansible_port": 5986,
        "ansible_user": "remediate",
        "ansible_password": "pw",
        "ansible_winrm_transport": "ntlm",
        "ansible_winrm_ca_trust_path": "/tmp/ca.pem",
        "genesys_log_dir": "D:\\gcti_logs\\SIP_P",
        "genesys_gax_url": "https://127.0.6.81:8443/gax/api",
        "genesys_gax_user": "default",
        "genesys_gax_password": "gaxpw",
    }
    host.update(overrides)
    return {key: value for key, value in host.items() if value is not None}


def _asterisk(**overrides: object) -> dict[str, object]:
    host: dict[str, object] = {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.6.54",
        "ansible_port": 2222,
        "ansible_user": "remediate",
        "ansible_ssh_private_key_file": "/tmp/key",
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/tmp/known_hosts "
        "-o StrictHostKeyChecking=yes",
        "asterisk_dn_registrations": {"5001": "genesys_reg_5001"},
    }
    host.update(overrides)
    return {key: value for key, value in host.items() if value is not None}


def _write(
    tmp_path: Path,
    sites: dict[str, tuple[dict[str, object], dict[str, object]]],
    site_vars: dict[str, object] | None = None,
) -> Path:
    children: dict[str, object] = {}
    for name, (genesys, asterisk) in sites.items():
        children[f"site_{name}"] = {
            "vars": site_vars or {},
            "children": {
                f"genesys_{name}": {"hosts": {f"genesys-{name}": genesys}},
                f"asterisk_{name}": {"hosts": {f"asterisk-{name}": asterisk}},
            },
        }
    children["genesys"] = {"children": {f"genesys_{name}": {} for name in sites}}
    children["asterisk"] = {"children": {f"asterisk_{name}": {} for name in sites}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": children}}), encoding="utf-8")
    return path


def test_one_site_is_the_default_and_values_are_typed(tmp_path: Path) -> None:
    inventory = _write(tmp_path, {"uat": (_genesys(), _asterisk())})
    site = load_site(inventory)
    assert site.name == "uat"
    assert site.genesys.winrm.endpoint == "https://127.0.6.81:5986/wsman"
    assert site.genesys.winrm.auth == "ntlm"
    assert site.genesys.service_name == "TSrvSIP64"  # the role default
    assert site.genesys.log_dir == "D:\\gcti_logs\\SIP_P"
    assert site.asterisk.ssh.known_hosts_file == "/tmp/known_hosts"
    assert site.asterisk.ssh.port == 2222
    assert site.registration_for("5001") == "genesys_reg_5001"
    assert site.registration_for("5002") is None
    assert site.fixes.trusted_gateway.list_option == "trusted-gateways"
    assert site.lab is False


def test_several_sites_need_a_choice(tmp_path: Path) -> None:
    inventory = _write(
        tmp_path,
        {"uat": (_genesys(), _asterisk()), "prod": (_genesys(), _asterisk())},
    )
    with pytest.raises(InputError) as caught:
        load_site(inventory)
    assert caught.value.reference == "site-ambiguous"
    assert "--site" in caught.value.hint
    assert load_site(inventory, "prod").name == "prod"
    with pytest.raises(InputError) as unknown:
        load_site(inventory, "dev")
    assert unknown.value.reference == "site-unknown"


def test_missing_variable_names_variable_host_and_file(tmp_path: Path) -> None:
    inventory = _write(tmp_path, {"lab": (_genesys(genesys_log_dir=None), _asterisk())})
    with pytest.raises(InputError) as caught:
        load_site(inventory)
    message = str(caught.value)
    assert caught.value.reference == "inventory-variable-missing"
    assert "genesys_log_dir is not set for host genesys-lab" in message
    assert str(inventory) in message


@pytest.mark.parametrize(
    ("host", "variable", "value"),
    [
        ("genesys", "genesys_log_dir", "D:\\logs\r\nWrite-Host x"),
        ("genesys", "genesys_log_dir", "D:\\logs'; Remove-Item C:\\ -Recurse; '"),
        ("genesys", "genesys_service_name", "TSrvSIP64]"),
        ("genesys", "genesys_switch", "S" * 500),
        ("genesys", "ansible_host", "127.0.0.1\nVia: x"),
        ("asterisk", "asterisk_pjsip_conf", "/etc/asterisk/pjsip.conf; rm -rf /"),
        ("asterisk", "asterisk_dn_registrations", {"5001": "reg'x"}),
    ],
)
def test_values_that_would_break_out_are_refused(
    tmp_path: Path, host: str, variable: str, value: object
) -> None:
    genesys = _genesys(**({variable: value} if host == "genesys" else {}))
    asterisk = _asterisk(**({variable: value} if host == "asterisk" else {}))
    inventory = _write(tmp_path, {"lab": (genesys, asterisk)})
    with pytest.raises(InputError) as caught:
        load_site(inventory)
    assert variable in str(caught.value)
    assert caught.value.reference == "inventory-variable-invalid"
    assert f"{host}-lab" in str(caught.value)


def test_insecure_winrm_refused_outside_the_lab(tmp_path: Path) -> None:
    basic_http = _genesys(ansible_port=5985, ansible_winrm_transport="basic")
    with pytest.raises(InputError) as caught:
        load_site(_write(tmp_path, {"prod": (basic_http, _asterisk())}))
    assert caught.value.reference == "winrm-insecure"
    assert "remediate_lab" in caught.value.hint
    lab = load_site(_write(tmp_path, {"lab": (basic_http, _asterisk())}, {"remediate_lab": True}))
    assert lab.genesys.winrm.scheme == "http" and lab.lab


def test_relaxed_host_key_checking_refused(tmp_path: Path) -> None:
    relaxed = _asterisk(
        ansible_ssh_common_args="-o UserKnownHostsFile=/tmp/kh -o StrictHostKeyChecking=no"
    )
    with pytest.raises(InputError, match="StrictHostKeyChecking"):
        load_site(_write(tmp_path, {"lab": (_genesys(), relaxed)}))
    unnamed = _asterisk(ansible_ssh_common_args="")
    with pytest.raises(InputError, match="ansible_ssh_common_args"):
        load_site(_write(tmp_path, {"lab": (_genesys(), unnamed)}))


def test_env_lookup_is_rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("H6_TEST_GAX_PASSWORD", "from-the-env")
    genesys = _genesys(genesys_gax_password="{{ lookup('env', 'H6_TEST_GAX_PASSWORD') }}")
    site = load_site(_write(tmp_path, {"lab": (genesys, _asterisk())}))
    assert site.genesys.gax.password == "from-the-env"
    assert "from-the-env" not in repr(site)


def test_the_committed_lab_inventory_loads() -> None:
    site = load_site(REPO / "inventories" / "lab")
    assert site.name == "lab" and site.lab
    assert site.genesys.service_name == "TSrvSIP64"
    assert site.asterisk.dn_registrations == {
        "5001": "genesys_reg_5001",
        "5002": "genesys_reg_5002",
    }


@pytest.mark.skipif(not VAULT.exists(), reason="ansible-vault is not installed")
def test_vault_values_need_the_password(tmp_path: Path) -> None:
    """In a fresh process (Ansible's vault context is process-wide)."""
    password_file = tmp_path / "vault-pass"
    password_file.write_text("h6-vault\n", encoding="utf-8")
    encrypted = subprocess.run(
        [str(VAULT), "encrypt_string", "--vault-password-file", str(password_file), "vaulted-pw"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    inventory_dir = tmp_path / "inv"
    (inventory_dir / "host_vars").mkdir(parents=True)
    _write(inventory_dir, {"lab": (_genesys(ansible_password=None), _asterisk())})
    (inventory_dir / "host_vars" / "genesys-lab.yml").write_text(
        f"ansible_password: {encrypted}\n", encoding="utf-8"
    )
    script = (
        "import sys; from pathlib import Path; from remediate.inventory import load_site\n"
        "from remediate.errors import InputError\n"
        "vault = Path(sys.argv[2]) if len(sys.argv) > 2 else None\n"
        "try:\n"
        "    site = load_site(Path(sys.argv[1]), vault_password_file=vault)\n"
        "    print(site.genesys.winrm.password)\n"
        "except InputError as e:\n"
        "    print(e.reference, e.hint)\n"
    )

    def run(*args: str, env_file: str | None = None) -> str:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        if env_file:
            env["ANSIBLE_VAULT_PASSWORD_FILE"] = env_file
        return subprocess.run(
            [sys.executable, "-c", script, str(inventory_dir), *args],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
        ).stdout.strip()

    assert run(str(password_file)) == "vaulted-pw"
    assert run(env_file=str(password_file)) == "vaulted-pw"
    locked = run()
    assert locked.startswith("inventory-vault-locked")
    assert "--vault-password-file" in locked


def test_mlcmd_needs_the_configuration_server(tmp_path: Path) -> None:
    genesys = _genesys(genesys_service_control="mlcmd")
    with pytest.raises(InputError, match="genesys_config_server_host is not set"):
        load_site(_write(tmp_path, {"lab": (genesys, _asterisk())}))
    genesys["genesys_config_server_host"] = "cs.example"
    genesys["genesys_mlcmd_executable"] = "D:\\GCTI\\mlcmd.exe"
    site = load_site(_write(tmp_path, {"lab": (genesys, _asterisk())}))
    assert site.genesys.mlcmd is not None
    assert (site.genesys.mlcmd.cs_host, site.genesys.mlcmd.cs_port) == ("cs.example", 2020)
    assert site.genesys.mlcmd.executable == "D:\\GCTI\\mlcmd.exe"
